package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// TestCertIssueOutput: what "cert issue" prints and exits with (DESIGN.md:
// JSON issued, failed, errors; exit 0, 1 when a mapping failed, 2 for bad
// usage), for a self-signed mapping "ss" with a valid certificate and an
// uploaded one "up" that p2ptls cannot renew.
func TestCertIssueOutput(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	dir := filepath.Join(t.TempDir(), "state")
	s := state.OpenDir(dir, time.Second)
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: ":8443"}); err != nil {
		t.Fatal(err)
	}
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"up.example.com"}), now.Add(-time.Hour), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []mappings.Input{
		{Mapping: state.Mapping{ID: "ss", Listener: "web", Hosts: []string{"ss.example.com"}, Source: state.SourceSelfSigned}},
		{Mapping: state.Mapping{ID: "up", Listener: "web", Hosts: []string{"up.example.com"}, Source: state.SourceManual}, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM},
	} {
		if _, _, err := mappings.Add(ctx, s, in, now); err != nil {
			t.Fatal(err)
		}
	}
	type report struct {
		Issued, Failed []string
		Errors         map[string]string
	}
	tests := []struct {
		args   []string
		code   int
		json   *report  // the document with --output json
		stdout string   // a part of stdout, without JSON
		stderr []string // parts of stderr
	}{
		{args: []string{"ss"}, json: &report{Issued: []string{"ss"}, Failed: []string{}}},
		{args: []string{"ss"}, stdout: "issued a new certificate for mapping ss"},
		{args: []string{"up"}, code: 1, json: &report{Issued: []string{}, Failed: []string{"up"}},
			stderr: []string{"uploaded certificate, which p2ptls cannot renew", "hint: upload a new certificate"}},
		{args: []string{"up", "ss"}, code: 1, stdout: "issued a new certificate for mapping ss",
			stderr: []string{"cannot renew", "1 of 2 mappings failed: up", "'p2ptls cert list'"}},
		{args: []string{"nope"}, code: 1, stderr: []string{`mapping "nope" does not exist`}},
		// ss is valid and up is not p2ptls's to issue: --all has nothing to do.
		{args: []string{"--all"}, json: &report{Issued: []string{}, Failed: []string{}}},
		{args: []string{"--all", "--force"}, json: &report{Issued: []string{"ss"}, Failed: []string{}}},
		{args: []string{"--all", "ss"}, code: 2, stderr: []string{"needs mapping ids or --all, not both"}},
		{args: []string{"--force", "ss"}, code: 2, stderr: []string{"--force only applies to --all"}},
	}
	for _, tc := range tests {
		name := strings.Join(tc.args, " ")
		if tc.json != nil {
			name += " (json)"
		}
		t.Run(name, func(t *testing.T) {
			args := append([]string{"p2ptls", "--config-dir", dir, "cert", "issue"}, tc.args...)
			if tc.json != nil {
				args = append(args, "--output", "json")
			}
			var stdout, stderr bytes.Buffer
			if code := Main(ctx, args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if tc.json == nil {
				if !strings.Contains(stdout.String(), tc.stdout) {
					t.Errorf("stdout lacks %q:\n%s", tc.stdout, stdout.String())
				}
				return
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(stdout.Bytes(), &fields); err != nil {
				t.Fatalf("stdout is no JSON object: %v\n%s", err, stdout.String())
			}
			if keys := slices.Sorted(maps.Keys(fields)); !slices.Equal(keys, []string{"errors", "failed", "issued", "skipped"}) {
				t.Errorf("JSON keys %q", keys)
			}
			var got report
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Issued, tc.json.Issued) || !slices.Equal(got.Failed, tc.json.Failed) ||
				!slices.Equal(slices.Sorted(maps.Keys(got.Errors)), got.Failed) || got.Issued == nil || got.Failed == nil {
				t.Errorf("JSON %s, want issued %q, failed %q", stdout.String(), tc.json.Issued, tc.json.Failed)
			}
		})
	}
}

// TestCertIssueOnABrokenConfig: a p2ptls.toml that does not load is the
// error of the command (exit 2), before any mapping is tried.
func TestCertIssueOnABrokenConfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, state.ConfigFile), []byte("schema_version = [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"a"}, {"a", "b"}, {"--all"}} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append([]string{"p2ptls", "--config-dir", dir, "cert", "issue"}, args...), &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), state.ConfigFile) || strings.Contains(stderr.String(), "mappings failed") {
			t.Errorf("cert issue %q: exit %d, stderr:\n%s", args, code, stderr.String())
		}
	}
}

// TestRenewRandomSleep: cert renew sleeps its random delay only when run
// from cron (stdin not a terminal) without --no-random-sleep, and then only
// when a certificate is due and it is not a dry run; a pass with nothing
// due, which cron and monitoring run all the time, ends at once.
func TestRenewRandomSleep(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	tests := []struct {
		desc          string
		due           bool
		dryRun        bool
		noRandomSleep bool
		terminal      bool
		sleeps        int
	}{
		{desc: "due, from cron", due: true, sleeps: 1},
		{desc: "nothing due, from cron", due: false},
		{desc: "due, dry run", due: true, dryRun: true},
		{desc: "due, --no-random-sleep", due: true, noRandomSleep: true},
		{desc: "due, from a terminal", due: true, terminal: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
			if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: ":8443", HTTPAddr: ":8080"}); err != nil {
				t.Fatal(err)
			}
			m := state.Mapping{ID: "m", Listener: "web", Hosts: []string{"m.example.com"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01, KeyType: "ec256"}
			if _, _, err := mappings.Add(ctx, s, mappings.Input{Mapping: m}, now); err != nil {
				t.Fatal(err)
			}
			if !tc.due { // a fresh certificate; without one the mapping is due
				kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), now, 90*24*time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				if err := mappings.WriteCertificate(ctx, s, "m", kp, mappings.Meta{Source: state.SourceACME}); err != nil {
					t.Fatal(err)
				}
			}
			var sleeps []time.Duration
			sleep := func(_ context.Context, d time.Duration) error {
				sleeps = append(sleeps, d)
				return nil
			}
			r, err := acme.Renew(ctx, s, time.Now, acme.RenewOptions{
				Options: acme.Options{Log: slog.New(slog.DiscardHandler)}, DryRun: tc.dryRun,
				BeforeRenewal: randomSleep(tc.noRandomSleep, tc.terminal, sleep),
			})
			if err != nil {
				t.Fatal(err)
			}
			// Due and not a dry run: the renewal is attempted (and fails:
			// there is no ACME account), after the sleep.
			if got := len(r.Renewed) + len(r.Failed); got != map[bool]int{true: 1}[tc.due] {
				t.Errorf("report %+v", r)
			}
			if len(sleeps) != tc.sleeps {
				t.Fatalf("slept %d times, want %d", len(sleeps), tc.sleeps)
			}
			for _, d := range sleeps {
				if d < 0 || d >= maxRandomSleep {
					t.Errorf("slept %s, outside [0, %s)", d, maxRandomSleep)
				}
			}
		})
	}
}

// TestRenewSleepEndsWithTheContext: a signal during the random delay ends
// the run before any renewal.
func TestRenewSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- sleepRandom(ctx, time.Hour) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("sleepRandom ended without the context's error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sleepRandom did not end with its context")
	}
}
