package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// backoffJSON is what "mapping show --output json" says of a back-off.
type backoffJSON struct {
	Status          string     `json:"status"`
	LastError       string     `json:"last_error"`
	LastErrorDetail string     `json:"last_error_detail"`
	BackoffReason   string     `json:"backoff_reason"`
	LastAttemptAt   *time.Time `json:"last_attempt_at"`
	RetryAt         *time.Time `json:"retry_at"`
}

func showBackoff(t *testing.T, p *publicServe, id string) backoffJSON {
	t.Helper()
	var m backoffJSON
	s := p.must(t, "mapping", "show", id, "--output", "json")
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("mapping show: %v: %s", err, s)
	}
	return m
}

// renewReport is "cert renew --output json" with its reasons.
type renewReport struct {
	Renewed, Failed, Skipped []string
	Errors, Reasons          map[string]string
}

// TestACMERateLimitedAndPaused: an ACME server that answers rateLimited
// (through a fault proxy in front of pebble) makes the mapping back off
// until the answer's Retry-After: "cert renew" and a running serve do not
// order before then, status, doctor and "mapping show" say so in one
// line, the old certificate keeps serving, and once the time has passed
// both are issued. A paused account backs off a day and shows the
// unpause link.
func TestACMERateLimitedAndPaused(t *testing.T) {
	t.Parallel()
	web, plain := freeAddr(t), freeAddr(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: port(t, plain), TLSPort: port(t, web)})
	proxy := env.StartFaultProxy(t)
	p := newPublicState(t)
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", proxy.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain)
	p.serve = startServe(t, p.env)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "old.example.test", "--acme", "--challenge", "http-01", "--id", "old")
	eventually(t, 60*time.Second, func() error {
		if m := showBackoff(t, p, "old"); m.Status != "valid" {
			return fmt.Errorf("old: %+v", m)
		}
		return nil
	})
	first, err := pki.ParseCertChain(mustRead(t, p.dir+"/certs/public/old/cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	serial := first[0].SerialNumber

	// Long enough that every check below runs inside it on a slow machine,
	// short enough to wait out.
	const retryAfter = 20 * time.Second
	proxy.Set("new-order", acmetest.RateLimited(retryAfter))
	// --days 1000: every certificate is due, unless it backs off.
	renew := func(t *testing.T) (renewReport, result) {
		t.Helper()
		r := p2ptls(t, p.env, "cert", "renew", "--no-random-sleep", "--days", "1000", "--output", "json")
		var rep renewReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("cert renew: %v: %q %s", err, r.stdout, r.stderr)
		}
		return rep, r
	}
	rep, r := renew(t)
	if r.code != 1 || len(rep.Failed) != 1 || !strings.HasPrefix(rep.Errors["old"], `mapping "old": rate limited by the ACME server until `) {
		t.Fatalf("renew while rate limited: exit %d %+v %s", r.code, rep, r.stderr)
	}
	m := showBackoff(t, p, "old")
	if m.BackoffReason != "rate_limited" || m.RetryAt == nil || m.LastAttemptAt == nil || m.Status != "valid" {
		t.Fatalf("the rate limit is not recorded: %+v", m)
	}
	retryAt := *m.RetryAt
	// The Retry-After, not the 5-minute back-off (the header is whole seconds).
	if d := retryAt.Sub(*m.LastAttemptAt); d < retryAfter-time.Second || d > retryAfter+time.Second {
		t.Errorf("retry_at %s is %s after the attempt, want the Retry-After %s", retryAt, d, retryAfter)
	}
	if m.LastError != "rate limited by the ACME server until "+retryAt.UTC().Format(time.RFC3339) ||
		!strings.Contains(m.LastErrorDetail, "urn:ietf:params:acme:error:rateLimited") {
		t.Errorf("last_error %q, last_error_detail %q", m.LastError, m.LastErrorDetail)
	}
	// A new mapping serve orders at once is refused too, and backs off.
	p.must(t, "mapping", "add", "--listener", "web", "--host", "new.example.test", "--acme", "--challenge", "http-01", "--id", "new")
	eventually(t, 30*time.Second, func() error {
		if m := showBackoff(t, p, "new"); m.BackoffReason != "rate_limited" {
			return fmt.Errorf("new: %+v", m)
		}
		return nil
	})
	faulted := proxy.Faulted()

	// Until retry_at: cron skips both, status and doctor count them, the
	// old certificate serves.
	if rep, r := renew(t); r.code != 0 || len(rep.Skipped) != 2 || !strings.Contains(rep.Reasons["old"], "backing off") {
		t.Errorf("renew during the back-off: exit %d %+v %s", r.code, rep, r.stderr)
	}
	var st struct {
		ACMEBackoff struct {
			RateLimited     int        `json:"rate_limited"`
			AccountPaused   int        `json:"account_paused"`
			EarliestRetryAt *time.Time `json:"earliest_retry_at"`
		} `json:"acme_backoff"`
	}
	if err := json.Unmarshal([]byte(p.must(t, "status", "--output", "json")), &st); err != nil {
		t.Fatal(err)
	}
	// While serve runs, status shows serve's count: "new", which serve's
	// pass refused; "old"'s back-off, recorded by cron, is counted by
	// serve's next full pass (doctor reads every meta and lists both).
	newRetry := *showBackoff(t, p, "new").RetryAt
	if st.ACMEBackoff.RateLimited != 1 || st.ACMEBackoff.EarliestRetryAt == nil || !st.ACMEBackoff.EarliestRetryAt.Equal(newRetry) {
		t.Errorf("status: %+v", st.ACMEBackoff)
	}
	if out := p.must(t, "status"); !strings.Contains(out, "acme back-off: 1 rate limited, 0 account paused, 0 failed; earliest retry "+newRetry.UTC().Format(time.RFC3339)) {
		t.Errorf("status table:\n%s", out)
	}
	doc := p2ptls(t, p.env, "doctor", "--output", "json")
	if !strings.Contains(doc.stdout, `mapping old: rate limited by the ACME server until`) || !strings.Contains(doc.stdout, `mapping new: rate limited by the ACME server until`) {
		t.Errorf("doctor does not list the rate-limited mappings:\n%s", doc.stdout)
	}
	if err := serves(web, "old.example.test", serial); err != nil {
		t.Errorf("the old certificate does not serve during the back-off: %v", err)
	}
	if time.Now().Before(retryAt) && proxy.Faulted() != faulted {
		t.Errorf("%d orders reached the server during the back-off", proxy.Faulted()-faulted)
	}

	// The limit lifts; once retry_at has passed, serve issues the new
	// mapping by itself and cron renews the old one.
	proxy.Clear()
	time.Sleep(time.Until(retryAt) + time.Second)
	eventually(t, 60*time.Second, func() error {
		if m := showBackoff(t, p, "new"); m.Status != "valid" || m.BackoffReason != "" || m.LastError != "" {
			return fmt.Errorf("new: %+v", m)
		}
		return nil
	})
	if rep, r := renew(t); r.code != 0 || len(rep.Renewed) != 2 {
		t.Errorf("renew after the back-off: exit %d %+v %s", r.code, rep, r.stderr)
	}

	// A paused account: a day's back-off and the unpause link.
	proxy.Set("new-order", acmetest.Paused("old.example.test"))
	r = p2ptls(t, p.env, "cert", "issue", "old")
	want := "the ACME account is paused: unpause at " + acmetest.PausedURL
	if r.code != 1 || !strings.Contains(r.stderr, "\np2ptls: error: mapping \"old\": "+want+"\n") {
		t.Errorf("cert issue while paused: exit %d, stderr %s (want one line with %q)", r.code, r.stderr, want)
	}
	m = showBackoff(t, p, "old")
	if m.BackoffReason != "account_paused" || m.RetryAt == nil || m.RetryAt.Sub(*m.LastAttemptAt) != 24*time.Hour || m.LastError != want {
		t.Errorf("the pause is not recorded: %+v", m)
	}
	// Named again: issued anyway, with a warning.
	if r := p2ptls(t, p.env, "cert", "issue", "old"); r.code != 1 || !strings.Contains(r.stderr, "account is paused for this mapping") {
		t.Errorf("cert issue of a paused mapping: exit %d %s", r.code, r.stderr)
	}
	// cron skips it; "new", not paused yet, is refused in its turn.
	faulted = proxy.Faulted()
	if rep, _ := renew(t); len(rep.Skipped) != 1 || rep.Skipped[0] != "old" || !strings.Contains(rep.Reasons["old"], "backing off") ||
		len(rep.Failed) != 1 || proxy.Faulted() != faulted+1 {
		t.Errorf("renew while paused: %+v, %d orders", rep, proxy.Faulted()-faulted)
	}
	if out := p.must(t, "mapping", "show", "old"); !strings.Contains(out, "account_paused until") {
		t.Errorf("mapping show does not say it backs off:\n%s", out)
	}
}

// TestUIShowsBackoff: the mappings table shows a rate-limited mapping's
// one-line error and "rate limited until …"; its Details dialog shows the
// full error text, the reason and the retry time.
func TestUIShowsBackoff(t *testing.T) {
	ctx := newBrowser(t)
	p := newPublicState(t)
	p.must(t, "listener", "add", "web", "--addr", freeAddr(t), "--http-addr", freeAddr(t))
	p.must(t, "mapping", "add", "--listener", "web", "--host", "rl.example.test", "--acme", "--challenge", "http-01", "--id", "rl", "--profile", "shortlived")
	// An ACME certificate in place with a renewal window and the CA's
	// explanation page, as renew.go records them: a self-signed one made on
	// another listener, moved into an ACME mapping with its meta.
	p.must(t, "listener", "add", "gen", "--addr", freeAddr(t))
	p.must(t, "mapping", "add", "--listener", "gen", "--host", "ari.example.test", "--self-signed", "--id", "gen")
	gen := filepath.Join(p.dir, "certs", "public", "gen")
	b, err := os.ReadFile(filepath.Join(gen, "meta.toml"))
	if err != nil {
		t.Fatal(err)
	}
	fp := regexp.MustCompile(`(?m)^fingerprint_sha256 = ['"]([^'"]+)['"]`).FindSubmatch(b)
	if fp == nil {
		t.Fatalf("no fingerprint in %s", b)
	}
	p.must(t, "mapping", "add", "--listener", "web", "--host", "ari.example.test", "--acme", "--challenge", "http-01", "--id", "ari")
	ariDir := filepath.Join(p.dir, "certs", "public", "ari")
	if err := os.MkdirAll(ariDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cert.pem", "key.pem"} {
		if err := os.Rename(filepath.Join(gen, name), filepath.Join(ariDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	p.must(t, "mapping", "remove", "gen")
	ariMeta := fmt.Sprintf("source = \"acme\"\nfingerprint_sha256 = %q\nnext_renewal_at = 2026-12-21T00:00:00Z\nari_window_start = 2026-12-20T00:00:00Z\nari_window_end = 2026-12-22T00:00:00Z\nari_check_at = 2099-01-01T00:00:00Z\nari_fingerprint_sha256 = %q\nari_explanation_url = \"https://ca.example/why\"\n", fp[1], fp[1])
	if err := os.WriteFile(filepath.Join(ariDir, "meta.toml"), []byte(ariMeta), 0o600); err != nil {
		t.Fatal(err)
	}
	// As a rate-limited order leaves it (see TestACMERateLimitedAndPaused);
	// retry_at is an hour away, so serve does not order meanwhile.
	at := time.Now().UTC().Truncate(time.Second)
	retry := at.Add(time.Hour)
	detail := "rl.example.test: urn:ietf:params:acme:error:rateLimited :: too many new orders (300) from this account in the last 3h0m0s"
	md := filepath.Join(p.dir, "certs", "public", "rl")
	if err := os.MkdirAll(md, 0o700); err != nil {
		t.Fatal(err)
	}
	meta := fmt.Sprintf("source = \"acme\"\nlast_attempt_at = %s\nlast_error = \"rate limited by the ACME server until %s\"\nlast_error_detail = %q\nattempts = 1\nretry_at = %s\nbackoff_reason = \"rate_limited\"\n",
		at.Format(time.RFC3339), retry.Format(time.RFC3339), detail, retry.Format(time.RFC3339))
	if err := os.WriteFile(filepath.Join(md, "meta.toml"), []byte(meta), 0o600); err != nil {
		t.Fatal(err)
	}
	startServe(t, p.env)
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(p.must(t, "admin", "token", "create", "browser", "--output", "json")), &created); err != nil || created.Token == "" {
		t.Fatalf("admin token create: %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	row := `tr[data-id="rl"]`
	fail := func(err error) {
		t.Helper()
		page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%v:\n%s", err, page)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(sctx, chromedp.TextContent(chromedp.CSS(sel)))
		if err != nil {
			fail(err)
		}
		return s
	}
	if err := chromedp.Do(sctx,
		chromedp.Navigate("https://"+p.mgmt+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), created.Token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS(row+" .backoff")),
	); err != nil {
		fail(err)
	}
	backoff, lastError := text(row+" .backoff"), text(row+" td.error")
	if err := chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS(row+" td.actions button.secondary")),
		chromedp.WaitVisible(chromedp.CSS(`#cert-details dd[data-field="Error detail"]`)),
	); err != nil {
		fail(err)
	}
	details := text("#cert-details")
	if !strings.HasPrefix(backoff, "rate limited until ") || !strings.HasPrefix(lastError, "rate limited by the ACME server until "+retry.Format(time.RFC3339)) {
		t.Errorf("table: error %q, back-off %q", lastError, backoff)
	}
	for _, want := range []string{detail, "Backing off", "rate limited until", "Profile", "shortlived"} {
		if !strings.Contains(details, want) {
			t.Errorf("details dialog lacks %q: %s", want, details)
		}
	}
	ariRow := `tr[data-id="ari"]`
	if err := chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS("#cert-dialog button[data-close]")),
		chromedp.Click(chromedp.CSS(ariRow+" td.actions button.secondary")),
		chromedp.WaitVisible(chromedp.CSS(`#cert-details dd[data-field="Renewal window"]`)),
	); err != nil {
		fail(err)
	}
	details = text("#cert-details")
	href, err := chromedp.Run(sctx, chromedp.AttributeValue(chromedp.CSS(`#cert-details dd[data-field="CA's explanation"] a`), "href"))
	if err != nil {
		fail(err)
	}
	if !strings.Contains(details, "Renewal window") || href.Value != "https://ca.example/why" {
		t.Errorf("details dialog of a certificate with a renewal window: href %q, %s", href.Value, details)
	}
}
