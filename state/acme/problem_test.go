package acme

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	legoacme "github.com/go-acme/lego/v4/acme"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// TestSummarize (-update rewrites the fixtures, with new ports and times:
// adjust the wants): every failure captured from pebble (testdata/problems,
// see TestProblemsFromPebble) and a few lego builds by hand read as one
// line an operator reads at a glance, the same problem of several
// identifiers said once, with the back-off it calls for.
func TestSummarize(t *testing.T) {
	now := time.Date(2026, 12, 1, 21, 47, 0, 0, time.UTC)
	rl := func(retryAfter, detail string) error {
		return &legoacme.RateLimitedError{RetryAfter: retryAfter, ProblemDetails: &legoacme.ProblemDetails{
			Type: legoacme.RateLimitedErr, HTTPStatus: 429, Detail: detail, Method: "POST", URL: "https://ca.example/new-order"}}
	}
	tests := []struct {
		name    string
		err     error
		want    string
		reason  string
		retry   time.Time
		detail  []string // the detail contains each
		unpause string
	}{
		{name: "http01-connection-refused", want: "connection refused from 127.0.0.1:43789 during HTTP-01", reason: mappings.BackoffFailed,
			detail: []string{"closed.example.test: urn:ietf:params:acme:error:connection :: Get"}},
		{name: "tlsalpn01-without-acme-tls", want: "TLS-ALPN-01: the listener's address answered TLS without acme-tls/1 (is another TLS server on that port?)", reason: mappings.BackoffFailed},
		{name: "dns01-no-zone", want: "cloudflare: no DNS zone found for dns.nozone.test", reason: mappings.BackoffFailed},
		{name: "dns01-wildcard-apex-no-zone", want: "cloudflare: no DNS zone found for dns.nozone.test", reason: mappings.BackoffFailed,
			detail: []string{"*.dns.nozone.test: [*.dns.nozone.test] acme: error presenting token", "\ndns.nozone.test: [dns.nozone.test] acme: error presenting token"}},
		{name: "dns01-wildcard-apex-cloudflare-refuses", want: "cloudflare: failed to create TXT record: [status code 403] 10000: Authentication error", reason: mappings.BackoffFailed},
		{name: "unknown-profile", want: `invalidProfile: Order includes unrecognized profile name "nonesuch"`, reason: mappings.BackoffFailed},
		{name: "rate-limited", want: "rate limited by the ACME server until 2026-12-01T21:47:03Z", reason: mappings.BackoffRateLimited, retry: now.Add(3 * time.Second)},
		{name: "account-paused", want: "the ACME account is paused: unpause at https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOiJIUzI1NiJ9.test.sig",
			reason: mappings.BackoffAccountPaused, unpause: "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOiJIUzI1NiJ9.test.sig"},

		{name: "retry-after as an HTTP date", err: rl("Wed, 02 Dec 2026 10:00:00 GMT", "too many certificates"),
			want: "rate limited by the ACME server until 2026-12-02T10:00:00Z", reason: mappings.BackoffRateLimited, retry: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)},
		{name: "rate limited without Retry-After", err: rl("", "too many failed authorizations (5) for \"a.example.com\" in the last 1h0m0s. Retry later"),
			want: `rate limited by the ACME server: too many failed authorizations (5) for "a.example.com" in the last 1h0m0s`, reason: mappings.BackoffRateLimited},
		{name: "a Retry-After of years is a week", err: rl("999999999", "slow down"),
			want: "rate limited by the ACME server until 2026-12-08T21:47:00Z", reason: mappings.BackoffRateLimited, retry: now.Add(retryAfterMax)},
		{name: "paused, whatever the type", err: &legoacme.ProblemDetails{Type: "urn:ietf:params:acme:error:unauthorized", HTTPStatus: 403,
			Detail: "Your account is temporarily prevented from requesting certificates for a.example.com and possibly others. Please visit: https://portal.letsencrypt.org/sfe/v1/unpause?jwt=x.y.z"},
			want: "the ACME account is paused: unpause at https://portal.letsencrypt.org/sfe/v1/unpause?jwt=x.y.z", reason: mappings.BackoffAccountPaused, unpause: "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=x.y.z"},
		{name: "finalize failed for every identifier (certificate.obtainError)",
			err: fmt.Errorf("error: one or more domains had a problem:\n%w", errors.Join(
				fmt.Errorf("b.example.com: %w", &legoacme.ProblemDetails{Type: "urn:ietf:params:acme:error:badCSR", Detail: "CSR contains a weak key"}),
				fmt.Errorf("a.example.com: %w", &legoacme.ProblemDetails{Type: "urn:ietf:params:acme:error:badCSR", Detail: "CSR contains a weak key"}))),
			want: "badCSR: CSR contains a weak key", reason: mappings.BackoffFailed,
			detail: []string{"a.example.com: urn:ietf:params:acme:error:badCSR :: CSR contains a weak key\nb.example.com: "}},
		{name: "different problems name their identifiers",
			err:  errors.Join(fmt.Errorf("b.example.com: %w", errors.New("boom")), fmt.Errorf("a.example.com: %w", errors.New("bang"))),
			want: "a.example.com: bang; b.example.com: boom", reason: mappings.BackoffFailed},
		{name: "subproblems stay in the detail", err: &legoacme.ProblemDetails{Type: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "Error creating new order :: Cannot issue for \"x.local\"",
			SubProblems: []legoacme.SubProblem{{Type: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "Domain name does not end with a valid public suffix", Identifier: legoacme.Identifier{Type: "dns", Value: "x.local"}}}},
			want: `rejectedIdentifier: Error creating new order :: Cannot issue for "x.local"`, reason: mappings.BackoffFailed,
			detail: []string{"x.local: urn:ietf:params:acme:error:rejectedIdentifier :: Domain name does not end with a valid public suffix"}},
		{name: "p2ptls's own error", err: fault.Failf("run 'p2ptls acme account register'", "there is no ACME account"),
			want: "there is no ACME account", reason: mappings.BackoffFailed},
		{name: "a connection to the ACME server", err: errors.New(`get directory at 'https://127.0.0.1:1/dir': Get "https://127.0.0.1:1/dir": dial tcp 127.0.0.1:1: connect: connection refused`),
			want: `get directory at 'https://127.0.0.1:1/dir': Get "https://127.0.0.1:1/dir": dial tcp 127.0.0.1:1: connect: connection refused`, reason: mappings.BackoffFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err
			if err == nil {
				f := loadProblemFixture(t, tc.name)
				err = f.Error.rebuild()
				if err.Error() != f.Text {
					t.Fatalf("fixture %s does not rebuild its text", tc.name)
				}
			}
			p := Summarize(err, now)
			if p.Summary != tc.want || p.Reason != tc.reason || !p.RetryAfter.Equal(tc.retry) || p.UnpauseURL != tc.unpause {
				t.Errorf("Summarize = %q (%s, retry %v, unpause %q)\nwant       %q (%s, retry %v, unpause %q)",
					p.Summary, p.Reason, p.RetryAfter, p.UnpauseURL, tc.want, tc.reason, tc.retry, tc.unpause)
			}
			for _, d := range tc.detail {
				if !strings.Contains(p.Detail, d) {
					t.Errorf("detail %q lacks %q", p.Detail, d)
				}
			}
			checkProblem(t, err, p)
		})
	}
}

// checkProblem holds for every summary: one line, bounded, a detail
// bounded too.
func checkProblem(t *testing.T, err error, p Problem) {
	t.Helper()
	if p.Summary == "" {
		t.Errorf("no summary of %q", err)
	}
	if strings.ContainsAny(p.Summary, "\n\r") || len(p.Summary) > summaryMax || !utf8.ValidString(p.Summary) || !utf8.ValidString(p.Detail) {
		t.Errorf("summary is not one bounded line (%d bytes): %q", len(p.Summary), p.Summary)
	}
	if len(p.Detail) > detailMax {
		t.Errorf("detail of %d bytes", len(p.Detail))
	}
	switch p.Reason {
	case mappings.BackoffFailed, mappings.BackoffRateLimited, mappings.BackoffAccountPaused:
	default:
		t.Errorf("reason %q", p.Reason)
	}
}

// TestSummaryIsBounded: a long answer, repeated for many identifiers,
// stays one line of at most summaryMax bytes, and its detail detailMax.
func TestSummaryIsBounded(t *testing.T) {
	var errs []error
	for i := range 200 {
		errs = append(errs, fmt.Errorf("h%d.example.com: %w", i, errors.New(strings.Repeat("é problem ", 40)+fmt.Sprint(i))))
	}
	p := Summarize(errors.Join(errs...), time.Now())
	checkProblem(t, errors.Join(errs...), p)
	if !strings.HasSuffix(p.Summary, " …") || !strings.HasSuffix(p.Detail, " …") {
		t.Errorf("a cut summary or detail is not marked: %q … %q", p.Summary[len(p.Summary)-10:], p.Detail[len(p.Detail)-10:])
	}
}

// TestRecordFailure: the back-off a failure calls for.
func TestRecordFailure(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	rl := func(h string) error {
		return &legoacme.RateLimitedError{RetryAfter: h, ProblemDetails: &legoacme.ProblemDetails{Type: legoacme.RateLimitedErr, HTTPStatus: 429, Detail: "slow down"}}
	}
	paused := &legoacme.RateLimitedError{ProblemDetails: &legoacme.ProblemDetails{Type: legoacme.RateLimitedErr, HTTPStatus: 429,
		Detail: "Your account is temporarily prevented from requesting certificates for a.example.com and possibly others. Please visit: https://portal.letsencrypt.org/sfe/v1/unpause?jwt=j"}}
	tests := []struct {
		name     string
		attempts int // before
		err      error
		reason   string
		retry    time.Time
		hint     string
	}{
		{"failed: exponential", 2, errors.New("boom"), mappings.BackoffFailed, at.Add(4 * backoffBase), ""},
		{"rate limited: the header, not the back-off", 5, rl("3"), mappings.BackoffRateLimited, at.Add(3 * time.Second), "tries again from 2026-12-01T10:00:03Z"},
		{"rate limited without a header: the back-off", 0, rl(""), mappings.BackoffRateLimited, at.Add(backoffBase), "tries again from 2026-12-01T10:05:00Z"},
		{"rate limited, a header in the past: the back-off", 0, rl("Mon, 30 Nov 2026 10:00:00 GMT"), mappings.BackoffRateLimited, at.Add(backoffBase), ""},
		{"paused: a day, never more", 9, paused, mappings.BackoffAccountPaused, at.Add(24 * time.Hour), "open the unpause link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			meta := mappings.Meta{LastAttemptAt: at, Attempts: tc.attempts}
			err := recordFailure(&meta, tc.err)
			if meta.BackoffReason != tc.reason || !meta.RetryAt.Equal(tc.retry) || meta.Attempts != tc.attempts+1 {
				t.Errorf("meta %+v; want reason %s, retry_at %v", meta, tc.reason, tc.retry)
			}
			if err.Error() != meta.LastError || meta.LastErrorDetail == "" || !errors.Is(err, tc.err) {
				t.Errorf("error %q, last_error %q, detail %q", err, meta.LastError, meta.LastErrorDetail)
			}
			if !strings.Contains(fault.HintOf(err), tc.hint) {
				t.Errorf("hint %q, want %q", fault.HintOf(err), tc.hint)
			}
		})
	}
}

// FuzzSummarize: whatever the server and the providers say, the summary
// is one bounded line and nothing panics.
func FuzzSummarize(f *testing.F) {
	for _, name := range []string{"http01-connection-refused", "dns01-wildcard-apex-no-zone", "rate-limited", "account-paused", "unknown-profile"} {
		fx := loadProblemFixture(f, name)
		f.Add(fx.Text, "", "", 0)
	}
	f.Add("Your account is temporarily prevented from requesting certificates. Please visit: https://x/unpause", legoacme.RateLimitedErr, "5", 1)
	f.Add("Get \"http://[::1\": dial tcp : connect: connection refused", "urn:ietf:params:acme:error:connection", "", 2)
	f.Add("[a] [b] cloudflare: could not find zone for domain \"\"", "", "Thu, 01 Jan 1970 00:00:00 GMT", 3)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, detail, typ, retryAfter string, shape int) {
		pd := &legoacme.ProblemDetails{Type: typ, Detail: detail, HTTPStatus: 400}
		var err error
		switch shape % 5 {
		case 0:
			err = errors.New(detail)
		case 1:
			err = &legoacme.RateLimitedError{ProblemDetails: pd, RetryAfter: retryAfter}
		case 2:
			err = fmt.Errorf("error: one or more domains had a problem:\n%w", errors.Join(fmt.Errorf("%s: %w", retryAfter, pd), errors.New(detail)))
		case 3:
			err = &fixedJoin{msg: "[" + retryAfter + "] " + detail, errs: []error{errors.New(detail), pd}}
		default:
			err = fmt.Errorf("%s: %w", detail, pd)
		}
		p := Summarize(err, now)
		checkProblem(t, err, p)
	})
}
