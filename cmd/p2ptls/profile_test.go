package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// TestACMEProfiles: --profile is checked against the directory (an
// unknown one is exit 2 and changes nothing; without a reachable server it
// is stored with a warning), shown in the JSON and by 'acme account show',
// and sent with the order (shortlived: 6 days, default: 90). A profile the
// CA dropped later is a recorded failure that names it and the fix, and
// the old certificate keeps serving.
func TestACMEProfiles(t *testing.T) {
	t.Parallel()
	web, plain := freeAddr(t), freeAddr(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: port(t, plain), TLSPort: port(t, web), Profiles: true})
	p := newPublicState(t)
	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain)
	add := func(id, profile string) []string {
		return []string{"mapping", "add", "--listener", "web", "--host", id + ".example.test", "--acme", "--challenge", "http-01", "--profile", profile, "--id", id}
	}

	// No account yet: stored, with a warning.
	if r := p2ptls(t, p.env, add("early", "anything")...); r.code != 0 || !strings.Contains(r.stderr, `profile "anything" was not checked against the ACME server (there is no ACME account yet)`) {
		t.Errorf("without an account: exit %d %s", r.code, r.stderr)
	}
	p.must(t, "mapping", "remove", "early")

	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	var shown struct {
		Directory string            `json:"directory"`
		Profiles  map[string]string `json:"profiles"`
	}
	if err := json.Unmarshal([]byte(p.must(t, "acme", "account", "show", "--output", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if len(shown.Profiles) != 2 || shown.Profiles["shortlived"] == "" || shown.Profiles["default"] == "" {
		t.Errorf("acme account show: profiles %v", shown.Profiles)
	}
	if out := p.must(t, "acme", "account", "show"); !strings.Contains(out, "shortlived (acmetest short-lived profile (6 days))") {
		t.Errorf("acme account show:\n%s", out)
	}

	// Unknown profile: exit 2, nothing changed; in an import too.
	before := snapshot(t, p.dir)
	if r := p2ptls(t, p.env, add("bad", "tlsserver")...); r.code != 2 ||
		!strings.Contains(r.stderr, `the ACME server at `+env.DirectoryURL+` offers no profile "tlsserver"; it offers default, shortlived`) {
		t.Errorf("unknown profile: exit %d %s", r.code, r.stderr)
	}
	lines := `{"id":"i1","listener":"web","hosts":["i1.example.test"],"source":"acme","challenge":"http-01","profile":"shortlived"}
{"id":"i2","listener":"web","hosts":["i2.example.test"],"source":"acme","challenge":"http-01","profile":"classic"}
`
	file := filepath.Join(t.TempDir(), "m.jsonl")
	os.WriteFile(file, []byte(lines), 0o600)
	if r := p2ptls(t, p.env, "mapping", "import", file); r.code != 2 || !strings.Contains(r.stderr, `line 2: the ACME server at `+env.DirectoryURL+` offers no profile "classic"`) {
		t.Errorf("import with an unknown profile: exit %d %s", r.code, r.stderr)
	}
	assertSameSnapshot(t, before, snapshot(t, p.dir))
	// A profile on another source stays refused.
	if r := p2ptls(t, p.env, "mapping", "add", "--listener", "web", "--host", "ss.example.test", "--self-signed", "--profile", "shortlived"); r.code != 2 {
		t.Errorf("--profile with --self-signed: exit %d %s", r.code, r.stderr)
	}

	// Sent with the order: shortlived is 6 days, default 90.
	var added struct {
		Profile  string   `json:"profile"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(p.must(t, append(add("short", "shortlived"), "--output", "json")...)), &added); err != nil || added.Profile != "shortlived" || len(added.Warnings) != 0 {
		t.Errorf("mapping add --output json: %+v %v", added, err)
	}
	p.must(t, add("long", "default")...)
	p.must(t, "cert", "issue", "short")
	p.must(t, "cert", "issue", "long")
	life := func(id string) time.Duration {
		chain, err := pki.ParseCertChain(mustRead(t, filepath.Join(p.dir, "certs", "public", id, "cert.pem")))
		if err != nil {
			t.Fatal(err)
		}
		return chain[0].NotAfter.Sub(chain[0].NotBefore)
	}
	if l := life("short"); l > 6*24*time.Hour+time.Hour || l < 5*24*time.Hour {
		t.Errorf("shortlived gave a %v certificate", l)
	}
	if l := life("long"); l < 89*24*time.Hour {
		t.Errorf("default gave a %v certificate", l)
	}
	var list []struct {
		ID, Profile string
	}
	if err := json.Unmarshal([]byte(p.must(t, "cert", "list", "--output", "json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if want := map[string]string{"short": "shortlived", "long": "default"}[m.ID]; m.Profile != want {
			t.Errorf("cert list: mapping %s profile %q, want %q", m.ID, m.Profile, want)
		}
	}
	if out := p.must(t, "mapping", "show", "short"); !strings.Contains(out, "shortlived") {
		t.Errorf("mapping show lacks the profile:\n%s", out)
	}

	// The CA drops shortlived; the account is registered again there.
	p.serve = startServe(t, p.env)
	serial := fileSerial(t, filepath.Join(p.dir, "certs", "public", "short", "cert.pem"))
	eventually(t, 30*time.Second, func() error { return serves(web, "short.example.test", serial) })
	env.RestartPebble(t, acmetest.Options{})
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	r := p2ptls(t, p.env, "cert", "issue", "short")
	if r.code != 1 {
		t.Errorf("issue with a dropped profile: exit %d %s", r.code, r.stderr)
	}
	var after []struct {
		ID        string `json:"id"`
		Status    string `json:"status"`
		LastError string `json:"last_error"`
		Attempts  int    `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(p.must(t, "mapping", "list", "--output", "json")), &after); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range after {
		if m.ID != "short" {
			continue
		}
		found = true
		if m.Status != "valid" || m.Attempts != 1 || !strings.Contains(m.LastError, `the ACME server refused the profile "shortlived" of mapping short (it offers default)`) ||
			!strings.Contains(m.LastError, "p2ptls mapping add") {
			t.Errorf("after the dropped profile: %+v", m)
		}
	}
	if !found {
		t.Errorf("mapping short is not listed")
	}
	if err := serves(web, "short.example.test", serial); err != nil {
		t.Errorf("the old certificate no longer serves: %v", err)
	}
	// Unreachable server: stored with a warning.
	env.StopPebble()
	if r := p2ptls(t, p.env, add("later", "shortlived")...); r.code != 0 || !strings.Contains(r.stderr, `profile "shortlived" was not checked against the ACME server (read the ACME directory`) {
		t.Errorf("with the server gone: exit %d %s", r.code, r.stderr)
	}
}
