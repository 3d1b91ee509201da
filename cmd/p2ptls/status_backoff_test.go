package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

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
