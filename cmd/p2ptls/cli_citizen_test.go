package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/olekukonko/tablewriter/pkg/twwidth"
)

// oneJSONDocument fails unless s is exactly one JSON document.
func oneJSONDocument(t *testing.T, what, s string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Errorf("%s: stdout is not JSON (%v): %q", what, err, s)
		return
	}
	if err := dec.Decode(&v); !errors.Is(err, io.EOF) {
		t.Errorf("%s: stdout holds more than one JSON document: %q", what, s)
	}
}

// TestQuietPrintsNothingOnSuccess runs every command that changes or checks
// something with --quiet: it must print nothing at all, on stdout or stderr
// (ACME issuance logs at info, the clear-text backup notice, the tables
// shown after a change are all silenced); with --output json it still
// prints its one document and nothing on stderr. Each step's JSON run uses
// other names where the command is not idempotent.
func TestQuietPrintsNothingOnSuccess(t *testing.T) {
	a := newACMEState(t)
	files := t.TempDir()
	caOut := filepath.Join(files, "ca.pem")
	backupQ, backupJ := filepath.Join(files, "q.tar.gz"), filepath.Join(files, "j.tar.gz")
	pass := writeFile(t, files, "pass", "correct horse battery staple\n")
	url := "https://mgmt.example.test:8443"
	reg := func(email string) []string {
		return []string{"acme", "account", "register", "--email", email, "--directory", a.env.DirectoryURL, "--ca-file", a.env.CAFile, "--agree-tos"}
	}
	l2, l3 := freeAddr(t), freeAddr(t)
	steps := []struct {
		quiet, json []string // json nil: the command prints no document
	}{
		{[]string{"ca", "init", "--public-url", url}, nil},
		{[]string{"ca", "renew-server", "--public-url", url}, []string{"ca", "renew-server", "--public-url", url}},
		{[]string{"ca", "export", "--out", caOut}, []string{"ca", "export", "--out", filepath.Join(files, "ca.b64"), "--format", "base64"}},
		{[]string{"listener", "add", "web2", "--addr", l2}, []string{"listener", "add", "web3", "--addr", l3}},
		{[]string{"mapping", "add", "--listener", "web2", "--host", "a.example.test", "--self-signed", "--id", "a"},
			[]string{"mapping", "add", "--listener", "web3", "--host", "b.example.test", "--self-signed", "--id", "b"}},
		{[]string{"cert", "issue", "a"}, []string{"cert", "issue", "b"}},
		{[]string{"cert", "issue", "--all", "--force"}, []string{"cert", "issue", "--all", "--force"}},
		{[]string{"mapping", "add", "--listener", "web", "--host", "q.example.test", "--acme", "--challenge", "http-01", "--id", "q"},
			[]string{"mapping", "add", "--listener", "web", "--host", "j.example.test", "--acme", "--challenge", "http-01", "--id", "j"}},
		{[]string{"cert", "issue", "q"}, []string{"cert", "issue", "j"}},
		{[]string{"cert", "renew", "--no-random-sleep", "--force"}, []string{"cert", "renew", "--no-random-sleep", "--force"}},
		{[]string{"dns-credential", "add", "cf2", "--api-token-env", "CF_TOKEN", "--api-base-url", a.env.Cloudflare.URL},
			[]string{"dns-credential", "add", "cf3", "--api-token-env", "CF_TOKEN", "--api-base-url", a.env.Cloudflare.URL}},
		{[]string{"dns-credential", "add", "cf2", "--replace", "--api-token-env", "CF_TOKEN"},
			[]string{"dns-credential", "add", "cf3", "--replace", "--api-token-env", "CF_TOKEN"}},
		{[]string{"dns-credential", "disable", "cf2"}, []string{"dns-credential", "disable", "cf3"}},
		{[]string{"dns-credential", "enable", "cf2"}, []string{"dns-credential", "enable", "cf3"}},
		{[]string{"dns-credential", "test", "cf2"}, []string{"dns-credential", "test", "cf3"}},
		{[]string{"dns-credential", "remove", "cf2"}, []string{"dns-credential", "remove", "cf3"}},
		{[]string{"admin", "token", "revoke", "none-yet"}, nil}, // replaced below: revoke needs a token
		{[]string{"mapping", "remove", "a"}, []string{"mapping", "remove", "b"}},
		{[]string{"listener", "remove", "web2"}, []string{"listener", "remove", "web3"}},
		{[]string{"backup", "--out", backupQ}, []string{"backup", "--out", backupJ, "--passphrase-file", pass}},
		{[]string{"restore", backupQ, "--force"}, []string{"restore", backupJ, "--force", "--passphrase-file", pass}},
	}
	// Revoking needs tokens: create them first (create prints its token,
	// the data it is run for, even with --quiet).
	for _, name := range []string{"none-yet", "other"} {
		r := p2ptls(t, a.env2(), "admin", "token", "create", name, "--quiet")
		if r.code != 0 || strings.Count(r.stdout, "\n") != 1 || len(strings.TrimSpace(r.stdout)) < 20 || r.stderr != "" {
			t.Fatalf("admin token create --quiet must print the token alone: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
	}
	steps[16].json = []string{"admin", "token", "revoke", "other"}

	for _, st := range steps {
		r := p2ptls(t, a.env2(), append(st.quiet, "--quiet")...)
		if r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Errorf("%v --quiet: exit %d, stdout %q, stderr %q; want exit 0 and nothing", st.quiet, r.code, r.stdout, r.stderr)
		}
		if st.json == nil {
			continue
		}
		r = p2ptls(t, a.env2(), append(st.json, "--quiet", "--output", "json")...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%v --quiet --output json: exit %d, stderr %q", st.json, r.code, r.stderr)
		}
		oneJSONDocument(t, strings.Join(st.json, " "), r.stdout)
	}

	// One account per ACME directory: each registration in a state of its own.
	for i, args := range [][]string{{"--quiet"}, {"--quiet", "--output", "json"}} {
		env := []string{"CONFIG_DIR=" + filepath.Join(t.TempDir(), "state")}
		r := p2ptls(t, env, append(reg(fmt.Sprintf("ops%d@example.test", i)), args...)...)
		if r.code != 0 || r.stderr != "" || (i == 0 && r.stdout != "") {
			t.Errorf("acme account register %v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
		if i == 1 {
			oneJSONDocument(t, "acme account register", r.stdout)
		}
	}

	// Checks against a running serve: nothing on success either.
	env := append(a.env2(), "MANAGEMENT_PUBLIC_URL=https://"+a.mgmt)
	startServe(t, env)
	var ca struct {
		CA struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		} `json:"ca"`
	}
	if err := json.Unmarshal([]byte(a.must(t, "ca", "show", "--output", "json")), &ca); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"agent", "check", "--url", "https://" + a.mgmt, "--ca-file", caOut},
		{"agent", "bootstrap", "--url", "https://" + a.mgmt, "--fingerprint", ca.CA.FingerprintSHA256, "--out", filepath.Join(files, "boot.pem")},
	} {
		if r := p2ptls(t, env, append(args, "-q")...); r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Errorf("%v -q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
		r := p2ptls(t, env, append(args, "-q", "--output", "json")...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("%v -q --output json: exit %d, %q", args, r.code, r.stderr)
		}
		oneJSONDocument(t, strings.Join(args, " "), r.stdout)
	}

	// What a command is run to print is printed with --quiet too.
	for _, args := range [][]string{
		{"listener", "list"}, {"mapping", "list"}, {"mapping", "show", "q"}, {"cert", "list"}, {"dns-credential", "list"},
		{"acme", "account", "show"}, {"admin", "token", "list"}, {"ca", "show"}, {"ca", "export"}, {"agent", "env"},
		{"status"}, {"cert", "renew", "--dry-run", "--force", "--no-random-sleep"}, {"restore", backupQ, "--dry-run"}, {"version"},
	} {
		r := p2ptls(t, env, append(args, "--quiet")...)
		if r.code != 0 || strings.TrimSpace(r.stdout) == "" {
			t.Errorf("%v --quiet: exit %d, stdout %q (want the data), stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	// status's first line says whether serve runs, with --quiet too.
	if r := p2ptls(t, env, "status", "-q"); !strings.HasPrefix(r.stdout, "serve is running as pid") {
		t.Errorf("status -q: %q", r.stdout)
	}
}

// TestHTTPPublicURLRefusedWhileTLSIsOn: an http:// MANAGEMENT_PUBLIC_URL
// would send agents plain HTTP to a TLS port; every command that takes it
// refuses it (exit 2, the fix in the hint) and changes nothing, unless
// management TLS is off.
func TestHTTPPublicURLRefusedWhileTLSIsOn(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	env := []string{"CONFIG_DIR=" + dir}
	if r := p2ptls(t, env, "ca", "init", "-q"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	files := t.TempDir()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	crt, key := writePair(t, files, "mgmt", ecKey, false, 90*24*time.Hour, "mgmt.example.test")
	http := "http://mgmt.example.test:8443"
	tests := []struct {
		desc string
		env  []string
		args []string
		mode string
	}{
		{"ca init", nil, []string{"ca", "init", "--public-url", http}, "auto"},
		{"ca init, URL from the environment", []string{"MANAGEMENT_PUBLIC_URL=" + http}, []string{"ca", "init"}, "auto"},
		{"ca renew-server", nil, []string{"ca", "renew-server", "--public-url", "HTTP://mgmt.example.test"}, "auto"},
		{"ca renew-server, serve's mode provided", []string{"MANAGEMENT_TLS_MODE=provided"}, []string{"ca", "renew-server", "--public-url", http}, "provided"},
		{"serve", nil, []string{"serve", "--public-url", http, "--listen", freeAddr(t)}, "auto"},
		{"serve provided", nil, []string{"serve", "--public-url", http, "--listen", freeAddr(t), "--tls-mode", "provided", "--tls-cert-file", crt, "--tls-key-file", key}, "provided"},
		{"agent env", nil, []string{"agent", "env", "--public-url", http}, "auto"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := snapshot(t, dir)
			r := p2ptlsWithin(t, append(env, tc.env...), tc.args...)
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if r.code != 2 || len(lines) != 2 || r.stdout != "" ||
				!strings.Contains(lines[0], "is plain HTTP, but management TLS is on (mode "+tc.mode+")") ||
				!strings.Contains(lines[1], "https://mgmt.example.test") || !strings.Contains(lines[1], "MANAGEMENT_TLS_MODE=off") {
				t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}
	// Mode off: plain HTTP is what management serves, so the URL is right.
	off := append(env, "MANAGEMENT_TLS_MODE=off", "MANAGEMENT_ALLOW_INSECURE_HTTP=true")
	if r := p2ptls(t, off, "ca", "renew-server", "--public-url", http, "-q"); r.code != 0 {
		t.Errorf("renew-server for a serve in mode off: exit %d %s", r.code, r.stderr)
	}
	if r := p2ptls(t, off, "agent", "env", "--public-url", http); r.code != 0 || !strings.Contains(r.stdout, "MANAGEMENT_PUBLIC_URL="+http) {
		t.Errorf("agent env in mode off: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

// TestDoctorTableFitsATerminal: with a long state path in its messages and
// hints, every line doctor prints is at most 100 columns, each hint starts
// a line of its own, and the path is all there.
func TestDoctorTableFitsATerminal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("a-rather-long-directory-name/", 4), "state")
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_TLS_EXTRA_HOSTS=mgmt2.example.com"}
	for _, args := range [][]string{{"listener", "add", "web", "--addr", freeAddr(t)}, {"ca", "init", "-q"}} {
		if r := p2ptls(t, env, args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	key := filepath.Join(dir, "certs", "management", "server.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	r := p2ptls(t, env, "doctor")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL") {
		t.Fatalf("doctor: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	hints := 0
	for _, l := range strings.Split(strings.TrimRight(r.stdout, "\n"), "\n") {
		if w := twwidth.Width(l); w > 100 {
			t.Errorf("line of %d columns: %q", w, l)
		}
		if strings.HasPrefix(strings.TrimSpace(l), "hint: ") {
			hints++
		}
	}
	if hints < 2 || !strings.Contains(strings.Join(strings.Fields(r.stdout), ""), "chmod600"+key) {
		t.Errorf("%d hint lines, or the chmod hint lost the path:\n%s", hints, r.stdout)
	}
}

// TestHelpHasExamples: the help of a command that changes something shows
// its EXAMPLES before EXIT STATUS (commands/examples_test.go checks every
// command and every example's flags).
func TestHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{{"mapping", "add"}, {"listener", "remove"}, {"cert", "renew"}, {"backup"}, {"admin", "token", "create"}} {
		r := p2ptls(t, nil, append(args, "--help")...)
		ex, st := strings.Index(r.stdout, "\n   EXAMPLES:\n      p2ptls "+strings.Join(args, " ")), strings.Index(r.stdout, "EXIT STATUS:")
		if r.code != 0 || ex < 0 || st < ex {
			t.Errorf("%v --help: exit %d, no EXAMPLES before EXIT STATUS:\n%s", args, r.code, r.stdout)
		}
	}
}

// TestDoctorQuietOnAHealthyState: a check that finds nothing wrong says
// nothing with --quiet.
func TestDoctorQuietOnAHealthyState(t *testing.T) {
	_, env := healthyState(t)
	if r := p2ptls(t, env, "doctor", "--quiet"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("doctor --quiet: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := p2ptls(t, env, "doctor", "--quiet", "--output", "json"); r.code != 0 || r.stderr != "" {
		t.Errorf("doctor --quiet --output json: exit %d, stderr %q", r.code, r.stderr)
	} else {
		oneJSONDocument(t, "doctor", r.stdout)
	}
}
