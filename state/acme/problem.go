package acme

import (
	"errors"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	legoacme "github.com/go-acme/lego/v4/acme"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/text"
)

// Bounds of what a failed order records: the one line an operator reads
// in a table, and the full text kept beside it (meta.toml, JSON, the UI).
const (
	summaryMax = 300
	detailMax  = 8 << 10
)

// Back-off of the answers that are not an ordinary failure.
const (
	// pausedBackoff: a paused account fails every order until an operator
	// unpauses it, so asking more often only adds failures; a day, not
	// doubled (the operator's unpause, then "cert issue ID", is the way
	// out).
	pausedBackoff = 24 * time.Hour
	// retryAfterMax bounds a server's Retry-After: a week, so that a wrong
	// header cannot stop a mapping for years.
	retryAfterMax = 7 * 24 * time.Hour
)

// Problem is a failed order told for people.
type Problem struct {
	// Summary is one short line, the same problem of several identifiers
	// said once ("cloudflare: no DNS zone found for dns.example.com").
	Summary string
	// Detail is the full text, one identifier's problem a line (bounded).
	Detail string
	// Reason is the back-off it calls for: mappings.BackoffRateLimited,
	// BackoffAccountPaused or BackoffFailed.
	Reason string
	// RetryAfter is the rateLimited answer's Retry-After; zero without one.
	RetryAfter time.Time
	// UnpauseURL is the link a paused account is unpaused at.
	UnpauseURL string
}

// recordFailure records the failed order err of meta's mapping (attempted
// at meta.LastAttemptAt) and returns the error to report, whose text is
// the one-line summary: the full text goes to LastErrorDetail, and the
// back-off the answer calls for to RetryAt and BackoffReason.
func recordFailure(meta *mappings.Meta, err error) error {
	at := meta.LastAttemptAt
	p := Summarize(err, at)
	var pe *profileError
	if errors.As(err, &pe) {
		p.Summary = bound(pe.line, summaryMax) // says what to do, where the server's text does not
	}
	meta.Attempts++
	meta.LastError, meta.LastErrorDetail, meta.BackoffReason = p.Summary, p.Detail, p.Reason
	meta.RetryAt = at.Add(backoff(meta.Attempts))
	switch {
	case p.Reason == mappings.BackoffAccountPaused:
		meta.RetryAt = at.Add(pausedBackoff)
		err = &fault.Error{Kind: fault.Failure, Err: err,
			Hint: "open the unpause link, then run 'p2ptls cert issue' for the mapping; until then it retries once a day"}
	case p.Reason == mappings.BackoffRateLimited:
		if p.RetryAfter.After(at) {
			// The server said when: that, not the exponential back-off
			// (which stays the floor when it did not say).
			meta.RetryAt = p.RetryAfter.UTC()
			if lim := at.Add(retryAfterMax); meta.RetryAt.After(lim) {
				meta.RetryAt = lim
			}
		}
		err = &fault.Error{Kind: fault.Failure, Err: err,
			Hint: "p2ptls tries again from " + text.Stamp(meta.RetryAt) + " on its own; see https://letsencrypt.org/docs/rate-limits/"}
	}
	return &summarized{p.Summary, err}
}

// summarized is a failed order's error told in one line; it unwraps to the
// error itself, whose types (fault kinds, lego's) callers may look for.
type summarized struct {
	line string
	err  error
}

func (e *summarized) Error() string { return e.line }
func (e *summarized) Unwrap() error { return e.err }

// Summarize tells the failed order err for people, at now (the time a
// Retry-After in seconds counts from).
func Summarize(err error, now time.Time) Problem {
	if err == nil {
		return Problem{Reason: mappings.BackoffFailed}
	}
	var leaves []leaf
	walk(err, "", &leaves, 0)
	p := Problem{Reason: mappings.BackoffFailed}
	type said struct {
		line    string
		domains []string
	}
	var lines []said
	var detail []string
	for _, l := range leaves {
		line, kind := l.tell(now)
		switch kind.reason {
		case mappings.BackoffAccountPaused:
			p.Reason, p.UnpauseURL = kind.reason, kind.url
		case mappings.BackoffRateLimited:
			if p.Reason != mappings.BackoffAccountPaused {
				p.Reason = kind.reason
			}
			if kind.retry.After(p.RetryAfter) { // the latest: every limit has passed then
				p.RetryAfter = kind.retry
			}
		}
		i := slices.IndexFunc(lines, func(s said) bool { return s.line == line })
		if i < 0 {
			lines = append(lines, said{line: line})
			i = len(lines) - 1
		}
		if l.domain != "" && !slices.Contains(lines[i].domains, l.domain) {
			lines[i].domains = append(lines[i].domains, l.domain)
		}
		full := text.OneLine(l.text())
		if l.domain != "" {
			full = l.domain + ": " + full
		}
		if !slices.Contains(detail, full) {
			detail = append(detail, full)
		}
	}
	// lego joins the identifiers' errors in map order: sorted, the same
	// failure reads the same every time.
	slices.Sort(detail)
	slices.SortFunc(lines, func(a, b said) int { return strings.Compare(a.line, b.line) })
	parts := make([]string, len(lines))
	for i, s := range lines {
		parts[i] = s.line
		// Several different problems: each says which identifiers it is
		// about, unless its line names them already.
		if len(lines) > 1 && len(s.domains) > 0 && !mentionsAll(s.line, s.domains) {
			slices.Sort(s.domains)
			parts[i] = strings.Join(s.domains, ", ") + ": " + s.line
		}
	}
	// A server's bytes that are not UTF-8 become U+FFFD: the texts go into
	// TOML and JSON.
	p.Summary = bound(strings.ToValidUTF8(text.OneLine(strings.Join(parts, "; ")), "\uFFFD"), summaryMax)
	if p.Summary == "" { // an empty last_error would read as no failure
		p.Summary = "the ACME order failed without saying why"
	}
	p.Detail = bound(strings.ToValidUTF8(strings.Join(detail, "\n"), "\uFFFD"), detailMax)
	return p
}

// mentionsAll reports whether line names every one of domains.
func mentionsAll(line string, domains []string) bool {
	for _, d := range domains {
		if !strings.Contains(line, strings.TrimPrefix(d, "*.")) {
			return false
		}
	}
	return true
}

// bound cuts s to at most n bytes at a rune boundary, marking the cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " …"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimRight(s[:cut], " ") + mark
}

// leaf is one problem of a failed order, about one identifier (domain)
// when lego said which.
type leaf struct {
	domain string
	rl     *legoacme.RateLimitedError
	pd     *legoacme.ProblemDetails
	err    error
}

func (l leaf) text() string {
	if l.pd != nil {
		s := l.pd.Detail
		if l.pd.Type != "" {
			s = l.pd.Type + " :: " + s
		}
		for _, sub := range l.pd.SubProblems {
			s += "; " + sub.Identifier.Value + ": " + sub.Type + " :: " + sub.Detail
		}
		return s
	}
	return l.err.Error()
}

// walkDepth bounds the walk of an error tree that wraps itself deeply.
const walkDepth = 32

// walk collects the problems of err: lego's joined per-identifier errors
// ("error: one or more domains had a problem:" and "DOMAIN: err" for each)
// are walked into; an ACME problem document anywhere else in a chain is
// the problem of that branch; any other error is one by its text.
func walk(err error, domain string, out *[]leaf, depth int) {
	if depth > walkDepth {
		*out = append(*out, leaf{domain: domain, err: err})
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all := err.Error()
		for _, e := range j.Unwrap() {
			if e != nil {
				d := joinedDomain(all, e.Error())
				if d == "" {
					d = domain
				}
				walk(e, d, out, depth+1)
			}
		}
		return
	}
	if inner := errors.Unwrap(err); inner != nil {
		if d, ok := domainPrefix(err.Error(), inner.Error()); ok {
			walk(inner, d, out, depth+1)
			return
		}
		if _, ok := inner.(interface{ Unwrap() []error }); ok {
			walk(inner, domain, out, depth+1) // the joined identifiers' errors
			return
		}
		if s, ok := inner.(*summarized); ok {
			walk(s.err, domain, out, depth+1)
			return
		}
	}
	if s, ok := err.(*summarized); ok {
		walk(s.err, domain, out, depth+1)
		return
	}
	var rl *legoacme.RateLimitedError
	if errors.As(err, &rl) && rl.ProblemDetails != nil {
		*out = append(*out, leaf{domain: domain, rl: rl, pd: rl.ProblemDetails})
		return
	}
	var pd *legoacme.ProblemDetails
	if errors.As(err, &pd) && pd != nil {
		*out = append(*out, leaf{domain: domain, pd: pd})
		return
	}
	*out = append(*out, leaf{domain: domain, err: err})
}

// domainPrefix reports the identifier of lego's "DOMAIN: err" wrapping
// (certificate.obtainError), where msg is the wrapper's text and inner the
// wrapped error's.
func domainPrefix(msg, inner string) (string, bool) {
	if !strings.HasSuffix(msg, ": "+inner) {
		return "", false
	}
	d := msg[:len(msg)-len(inner)-2]
	if net.ParseIP(d) != nil {
		return d, true
	}
	if d == "" || !strings.Contains(d, ".") || strings.ContainsAny(d, " \t\n\"'[]()") || strings.HasSuffix(d, ".") {
		return "", false
	}
	return d, true
}

// joinedDomain is the identifier of one of lego's per-identifier errors
// in their joined text all: the challenge resolver's errors unwrap
// without their domain and name it only there, "[DOMAIN] " + inner.
func joinedDomain(all, inner string) string {
	i := strings.Index(all, "] "+inner)
	if i < 0 {
		return ""
	}
	j := strings.LastIndexByte(all[:i], '[')
	if j < 0 {
		return ""
	}
	d := all[j+1 : i]
	if strings.ContainsAny(d, " \t\n[]") {
		return ""
	}
	return d
}

// kind is what a leaf says about the back-off.
type kind struct {
	reason string
	retry  time.Time
	url    string
}

// Texts of the answers recognized: pausedDetail and unpauseLink are
// Let's Encrypt's paused account (see pausedURL); the others are the
// validation authority's and lego's.
var (
	unpauseLink    = regexp.MustCompile(`https://\S+/unpause\S*`)
	visitLink      = regexp.MustCompile(`(?i)please visit:?\s+(https://\S+)`)
	fetchAddr      = regexp.MustCompile(`(?i)^(\S+): Fetching (https?://\S+?):? `)
	goFetch        = regexp.MustCompile(`Get "(https?://[^"]*)": dial tcp (\S+): `)
	dialAddr       = regexp.MustCompile(`dial tcp (\S+): `)
	legoProblem    = regexp.MustCompile(`acme: error: \d+ :: (?:\S+ :: \S+ :: )?(\S+) :: `)
	bracketDomain  = regexp.MustCompile(`^\[[^\]]*\] `)
	cloudflareZone = regexp.MustCompile(`cloudflare: (?:could not find zone for domain "([^"]+)"|failed to find zone ([^ :]+))`)
)

// pausedURL finds the unpause link of a paused account's answer, "" when
// detail is not one. Let's Encrypt pauses an account that keeps failing
// validation for some hostnames; boulder's wfe2 NewOrder (behind its
// CheckIdentifiersPaused feature) answers it with probs.Paused: HTTP 429,
// type urn:ietf:params:acme:error:rateLimited, no Retry-After, and the
// detail "Your account is temporarily prevented from requesting
// certificates for HOST, HOST and possibly others. Please visit:
// https://portal.letsencrypt.org/sfe/v1/unpause?jwt=…" (letsencrypt/boulder
// wfe2/wfe.go; web/send_error_test.go logs it as "429 :: rateLimited ::
// account/ident pair is paused"). The type is that of any rate limit, so
// the detail decides.
func pausedURL(detail string) string {
	if !strings.Contains(detail, "temporarily prevented from requesting certificates") && !unpauseLink.MatchString(detail) {
		return ""
	}
	if m := unpauseLink.FindString(detail); m != "" {
		return strings.TrimRight(m, ".,;)")
	}
	if m := visitLink.FindStringSubmatch(detail); m != nil {
		return strings.TrimRight(m[1], ".,;)")
	}
	return "the link in the ACME server's answer (last_error_detail)"
}

// retryAfter reads a Retry-After header (seconds, or an HTTP date) at now.
func retryAfter(h string, now time.Time) time.Time {
	h = strings.TrimSpace(h)
	if h == "" {
		return time.Time{}
	}
	if n, err := strconv.ParseInt(h, 10, 64); err == nil {
		if n < 0 || n > int64(retryAfterMax/time.Second) {
			n = int64(retryAfterMax / time.Second)
		}
		return now.Add(time.Duration(n) * time.Second).UTC()
	}
	if t, err := http.ParseTime(h); err == nil {
		return t.UTC()
	}
	return time.Time{}
}

// tell is the leaf's one line and what it says about the back-off.
func (l leaf) tell(now time.Time) (string, kind) {
	if l.pd != nil {
		return l.tellProblem(l.pd.Type, l.pd.Detail, now)
	}
	s := text.OneLine(l.err.Error())
	// An ACME problem that reached us as text only (lego's format).
	if m := legoProblem.FindStringSubmatchIndex(s); m != nil {
		return l.tellProblem(s[m[2]:m[3]], s[m[1]:], now)
	}
	return tellText(s, l.domain), kind{reason: mappings.BackoffFailed}
}

// tellProblem is tell for an ACME problem document.
func (l leaf) tellProblem(typ, detail string, now time.Time) (string, kind) {
	detail = text.OneLine(detail)
	if u := pausedURL(detail); u != "" {
		return "the ACME account is paused: unpause at " + u, kind{reason: mappings.BackoffAccountPaused, url: u}
	}
	short := strings.TrimPrefix(typ, "urn:ietf:params:acme:error:")
	if short == "rateLimited" {
		var at time.Time
		if l.rl != nil {
			at = retryAfter(l.rl.RetryAfter, now)
		}
		if !at.IsZero() {
			return "rate limited by the ACME server until " + text.Stamp(at), kind{reason: mappings.BackoffRateLimited, retry: at}
		}
		return "rate limited by the ACME server: " + firstSentence(detail), kind{reason: mappings.BackoffRateLimited}
	}
	if line, ok := tellValidation(short, detail); ok {
		return line, kind{reason: mappings.BackoffFailed}
	}
	if short == "" || short == "about:blank" {
		return firstSentence(detail), kind{reason: mappings.BackoffFailed}
	}
	return short + ": " + firstSentence(detail), kind{reason: mappings.BackoffFailed}
}

// tellValidation names a validation that could not reach the listener:
// "connection refused from 127.0.0.1:80 during HTTP-01". The detail is the
// validation authority's: pebble and boulder say "ADDR: Fetching URL:
// REASON" for HTTP-01 and "ADDR: REASON" for TLS-ALPN-01.
func tellValidation(typ, detail string) (string, bool) {
	lower := strings.ToLower(detail)
	var what string
	switch {
	case strings.Contains(lower, "connection refused"):
		what = "connection refused"
	case strings.Contains(lower, "timeout") || strings.Contains(lower, "timed out"):
		what = "timeout"
	case strings.Contains(lower, "connection reset"):
		what = "connection reset"
	case strings.Contains(lower, "acme-tls/1") || strings.Contains(lower, "no application protocol"):
		return "TLS-ALPN-01: the listener's address answered TLS without acme-tls/1 (is another TLS server on that port?)", true
	default:
		return "", false
	}
	if typ != "connection" && typ != "tls" && typ != "unauthorized" && typ != "" {
		return "", false
	}
	challenge, addr := "TLS-ALPN-01", ""
	if m := goFetch.FindStringSubmatch(detail); m != nil {
		// pebble: Get "URL": dial tcp ADDR: connect: REASON
		challenge, addr = "HTTP-01", m[2]
		if strings.HasPrefix(m[1], "https://") {
			challenge = "HTTP-01 (redirected to https)"
		}
	} else if m := dialAddr.FindStringSubmatch(detail); m != nil {
		addr = m[1]
	} else if m := fetchAddr.FindStringSubmatch(detail); m != nil {
		challenge = "HTTP-01"
		addr = m[1]
		if u := m[2]; strings.HasPrefix(u, "https://") {
			addr = hostPort(addr, u, "443")
		} else {
			addr = hostPort(addr, u, "80")
		}
	} else if i := strings.Index(detail, ": "); i > 0 && !strings.Contains(detail[:i], " ") {
		addr = detail[:i]
	}
	if addr == "" {
		return what + " during validation", true
	}
	return what + " from " + addr + " during " + challenge, true
}

// hostPort is the address the validation connected to: ip with the port
// of url, or def.
func hostPort(ip, rawURL, def string) string {
	rest := rawURL[strings.Index(rawURL, "://")+3:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	port := def
	if _, p, err := net.SplitHostPort(rest); err == nil {
		port = p
	}
	if _, _, err := net.SplitHostPort(ip); err == nil {
		return ip
	}
	return net.JoinHostPort(strings.Trim(ip, "[]"), port)
}

// tellText is the line of an error that is no ACME problem: a DNS
// provider's, a connection's, p2ptls's own.
func tellText(s, domain string) string {
	s = bracketDomain.ReplaceAllString(s, "")
	s = strings.TrimPrefix(s, "acme: error presenting token: ")
	s = strings.TrimPrefix(s, "acme: error cleaning up: ")
	if m := cloudflareZone.FindStringSubmatch(s); m != nil {
		name := m[1] + m[2]
		name = strings.TrimSuffix(strings.TrimPrefix(name, "_acme-challenge."), ".")
		if name == "" {
			name = domain
		}
		return "cloudflare: no DNS zone found for " + name
	}
	if strings.HasPrefix(s, "propagation: ") || strings.Contains(s, "time limit exceeded") {
		return "DNS-01: the TXT record was not visible in time: " + firstSentence(s)
	}
	return s
}

// firstSentence is detail up to its first ". " (bounded by Summarize).
func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i > 0 {
		return s[:i]
	}
	return strings.TrimSuffix(s, ".")
}
