package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// statusBackoff is the acme_backoff of "status --output json" and of
// GET /api/v1/status.
type statusBackoff struct {
	ServeRunning bool `json:"serve_running"`
	ACMEBackoff  *struct {
		RateLimited     int        `json:"rate_limited"`
		AccountPaused   int        `json:"account_paused"`
		Failed          int        `json:"failed"`
		EarliestRetryAt *time.Time `json:"earliest_retry_at"`
		CountedAt       time.Time  `json:"counted_at"`
	} `json:"acme_backoff"`
}

// TestStatusBackoffFromServe: a mapping serve's pass finds rate limited
// shows in "status" and GET /api/v1/status from serve's own count (with
// counted_at, after the refused order); issuing it by the API warns, as
// "cert issue ID" does, and the count follows at once. Without serve,
// status counts from the files.
func TestStatusBackoffFromServe(t *testing.T) {
	t.Parallel()
	web, plain := freeAddr(t), freeAddr(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: port(t, plain), TLSPort: port(t, web)})
	proxy := env.StartFaultProxy(t)
	// An hour: nothing orders again during the test.
	proxy.Set("new-order", acmetest.RateLimited(time.Hour))
	p := newPublicState(t)
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", proxy.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain)
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(p.must(t, "admin", "token", "create", "ops", "--output", "json")), &created); err != nil || created.Token == "" {
		t.Fatalf("admin token create: %v", err)
	}
	srv := startServe(t, p.env)
	caFile, _, _, _ := mgmtFiles(p.dir)
	client := httpsClient(caPool(t, caFile))
	client.Timeout = 90 * time.Second // an ACME order by POST …/issue
	api := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+p.mgmt+path, nil)
		req.Header.Set("Authorization", "Bearer "+created.Token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cli := func() (statusBackoff, error) {
		var st statusBackoff
		out := p.must(t, "status", "--output", "json")
		return st, json.Unmarshal([]byte(out), &st)
	}
	fromAPI := func() (statusBackoff, error) {
		var st statusBackoff
		code, body := api("GET", "/api/v1/status")
		if code != http.StatusOK {
			return st, fmt.Errorf("GET /api/v1/status: %d %s", code, body)
		}
		return st, json.Unmarshal([]byte(body), &st)
	}
	// counted wants n rate-limited mappings, counted by a serve at or
	// after since, from both.
	counted := func(n int, since time.Time) func() error {
		return func() error {
			for _, src := range []struct {
				name string
				get  func() (statusBackoff, error)
			}{{"status", cli}, {"api", fromAPI}} {
				st, err := src.get()
				if err != nil {
					return err
				}
				if b := st.ACMEBackoff; !st.ServeRunning || b == nil || b.RateLimited != n || b.CountedAt.Before(since) {
					return fmt.Errorf("%s: running %v, acme_backoff %+v", src.name, st.ServeRunning, b)
				}
			}
			return nil
		}
	}

	p.must(t, "mapping", "add", "--listener", "web", "--host", "rl.example.test", "--acme", "--challenge", "http-01", "--id", "rl")
	eventually(t, 60*time.Second, func() error {
		if m := showBackoff(t, p, "rl"); m.BackoffReason != "rate_limited" {
			return fmt.Errorf("rl: %+v", m)
		}
		return nil
	})
	m := showBackoff(t, p, "rl")
	eventually(t, 30*time.Second, counted(1, m.LastAttemptAt.Truncate(time.Second)))
	if st, _ := fromAPI(); st.ACMEBackoff.EarliestRetryAt == nil || !st.ACMEBackoff.EarliestRetryAt.Equal(*m.RetryAt) {
		t.Errorf("api: earliest_retry_at %v, want %v", st.ACMEBackoff.EarliestRetryAt, m.RetryAt)
	}
	if out := p.must(t, "status"); !strings.Contains(out, "acme back-off: 1 rate limited, 0 account paused, 0 failed; earliest retry "+m.RetryAt.UTC().Format(time.RFC3339)+" (counted ") {
		t.Errorf("status table:\n%s", out)
	}

	// The limit lifts; the API issues the named mapping anyway, warning.
	proxy.Clear()
	issuedAt := time.Now().Truncate(time.Second)
	code, body := api("POST", "/api/v1/mappings/rl/issue")
	var issued struct {
		Status   string   `json:"status"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(body), &issued); err != nil || code != http.StatusOK || issued.Status != "valid" {
		t.Fatalf("POST issue: %d %v %s", code, err, body)
	}
	if len(issued.Warnings) != 1 || !strings.Contains(issued.Warnings[0], "rate-limited mapping rl until "+m.RetryAt.UTC().Format(time.RFC3339)) {
		t.Errorf("POST issue warnings: %q", issued.Warnings)
	}
	// The change it made ends the back-off in serve's count (a prompt
	// pass), not 10 minutes later.
	eventually(t, 30*time.Second, counted(0, issuedAt))
	// Not backing off any more: no warning.
	if code, body := api("POST", "/api/v1/mappings/rl/issue"); code != http.StatusOK || strings.Contains(body, "warnings") {
		t.Errorf("POST issue of a mapping not backing off: %d %s", code, body)
	}

	// Without serve, status counts from the files, now.
	srv.stop(t)
	proxy.Set("new-order", acmetest.RateLimited(time.Hour))
	if r := p2ptls(t, p.env, "cert", "issue", "rl"); r.code != 1 {
		t.Fatalf("cert issue while rate limited: exit %d %s", r.code, r.stderr)
	}
	before := time.Now()
	st, err := cli()
	if err != nil {
		t.Fatal(err)
	}
	if b := st.ACMEBackoff; st.ServeRunning || b == nil || b.RateLimited != 1 || b.CountedAt.Before(before.Add(-time.Second)) {
		t.Errorf("status without serve: running %v, acme_backoff %+v", st.ServeRunning, b)
	}
}

// TestUIShowsBackoffCount: the UI's serve line shows serve's back-off
// count from GET /api/v1/status.
func TestUIShowsBackoffCount(t *testing.T) {
	ctx := newBrowser(t)
	p := newPublicState(t)
	p.must(t, "listener", "add", "web", "--addr", freeAddr(t), "--http-addr", freeAddr(t))
	p.must(t, "mapping", "add", "--listener", "web", "--host", "rl.example.test", "--acme", "--challenge", "http-01", "--id", "rl")
	// As a rate-limited order leaves it; retry_at is an hour away, so
	// serve does not order meanwhile and its first pass counts it.
	at := time.Now().UTC().Truncate(time.Second)
	retry := at.Add(time.Hour)
	md := filepath.Join(p.dir, "certs", "public", "rl")
	if err := os.MkdirAll(md, 0o700); err != nil {
		t.Fatal(err)
	}
	meta := fmt.Sprintf("source = \"acme\"\nlast_attempt_at = %s\nlast_error = \"rate limited by the ACME server until %s\"\nattempts = 1\nretry_at = %s\nbackoff_reason = \"rate_limited\"\n",
		at.Format(time.RFC3339), retry.Format(time.RFC3339), retry.Format(time.RFC3339))
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
	want := "ACME back-off: 1 rate limited, 0 account paused, 0 failed, earliest retry " + strings.Replace(retry.Format("2006-01-02T15:04"), "T", " ", 1) + " UTC"
	var line string
	// The first load may come before serve's first pass counted: reload
	// until the line shows it.
	if err := chromedp.Do(sctx,
		chromedp.Navigate("https://"+p.mgmt+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), created.Token),
		chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="rl"]`)),
	); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		var err error
		if line, err = chromedp.Run(sctx, chromedp.TextContent(chromedp.CSS("#serve-state"))); err != nil {
			return err
		}
		if !strings.Contains(line, want) {
			_ = chromedp.Do(sctx, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`tr[data-id="rl"]`)))
			return fmt.Errorf("serve line %q, want %q", line, want)
		}
		return nil
	})
}
