package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A refused command creates nothing, not even the state directory or its
// missing parents: the lock it took on a directory that did not exist is
// given back with the directory.
func TestRefusedCommandCreatesNothing(t *testing.T) {
	tests := []struct {
		desc   string
		args   []string
		code   int
		stderr string
	}{
		{"mapping add for a missing listener", []string{"mapping", "add", "--listener", "web", "--host", "a.example.com", "--self-signed"}, 2, `listener "web" does not exist`},
		{"mapping add ACME for a missing listener", []string{"mapping", "add", "--listener", "web", "--host", "a.example.com", "--acme", "--challenge", "http-01"}, 2, `listener "web" does not exist`},
		{"mapping add with an invisible host", []string{"mapping", "add", "--listener", "web", "--host", "a\u200bb.example.com", "--self-signed"}, 2, "U+200B"},
		{"mapping remove of a missing mapping", []string{"mapping", "remove", "nope"}, 1, `mapping "nope" does not exist`},
		{"listener remove of a missing listener", []string{"listener", "remove", "nope"}, 1, `listener "nope" does not exist`},
		{"listener add with credentials in the upstream", []string{"listener", "add", "web", "--addr", ":9443", "--upstream", "http://u:pw@127.0.0.1:1"}, 2, "carries a user name or password"},
		{"dns-credential remove of a missing one", []string{"dns-credential", "remove", "nope"}, 1, "nope"},
		{"admin token revoke of a missing one", []string{"admin", "token", "revoke", "nope"}, 1, "nope"},
		{"cert issue of a missing mapping", []string{"cert", "issue", "nope"}, 1, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "share", "p2ptls") // parents missing too
			r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to contain %q", r.code, tc.code, r.stderr, tc.stderr)
			}
			if entries, err := os.ReadDir(base); err != nil || len(entries) != 0 {
				t.Errorf("the refused command left %v (%v) in %s", entries, err, base)
			}
		})
	}
	// The same command that succeeds creates the directory, 0700.
	dir := filepath.Join(t.TempDir(), "p2ptls")
	if r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "listener", "add", "web", "--addr", ":9443"); r.code != 0 {
		t.Fatalf("listener add: exit %d: %s", r.code, r.stderr)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("state directory after a change: %v, %v", info, err)
	}
}

// Credentials in an upstream URL are refused wherever an upstream is
// accepted (exit 2), and no message shows the password.
func TestUpstreamUserinfoRefusedCLI(t *testing.T) {
	const pw = "hunter2-pw"
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	for _, args := range [][]string{
		{"listener", "add", "api", "--addr", ":9443", "--upstream", "http://admin:" + pw + "@127.0.0.1:9000"},
		{"listener", "add", "api", "--addr", ":9443", "--upstream", "https://" + pw + "@backend.internal"},
		{"mapping", "add", "--listener", "web", "--host", "a.example.com", "--self-signed", "--upstream", "http://admin:" + pw + "@127.0.0.1:9000"},
	} {
		before := snapshot(t, dir)
		r := p2ptls(t, env, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "***@") || !strings.Contains(r.stderr, "carries a user name or password") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		if strings.Contains(r.stderr+r.stdout, pw) {
			t.Errorf("%v: output shows the password: %s", args, r.stderr)
		}
		assertSameSnapshot(t, before, snapshot(t, dir))
	}

	// A hand-written record: every command refuses the file, naming line
	// and field.
	cfg := filepath.Join(dir, "mappings", "m.toml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}
	edited := "id = \"m\"\nlistener = \"web\"\nhosts = [\"a.example.com\"]\nsource = \"self-signed\"\nupstream = \"http://admin:" + pw + "@127.0.0.1:9000\"\n"
	if err := os.WriteFile(cfg, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(edited[:strings.Index(edited, "upstream = \"http://admin")], "\n") + 1
	r := p2ptls(t, env, "mapping", "list")
	want := cfg + `: line ` + strconv.Itoa(line) + `, field "upstream": mapping "m": upstream "http://***@127.0.0.1:9000" carries a user name or password`
	if r.code != 2 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, pw) {
		t.Errorf("mapping list on the edited file: exit %d, stderr %q\nwant it to contain %q", r.code, r.stderr, want)
	}
}

// writePair writes a self-signed certificate for host and its key to dir,
// valid from an hour ago for life; isCA sets basic constraints CA:TRUE.
func writePair(t *testing.T, dir, name string, key crypto.Signer, isCA bool, life time.Duration, host string) (certFile, keyFile string) {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(life), BasicConstraintsValid: true, IsCA: isCA}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// RSA under 2048 bits is refused (exit 2); a CA certificate as the leaf and
// a 200-year lifetime are accepted with warnings on stderr and in the JSON.
func TestMappingAddKeyStrengthAndWarningsCLI(t *testing.T) {
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	files := t.TempDir()
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	crt, key := writePair(t, files, "weak", rsa1024, false, 90*24*time.Hour, "weak.example.com")
	for _, src := range []string{"--manual", "--file"} {
		before := snapshot(t, dir)
		r := p2ptls(t, env, "mapping", "add", "--listener", "web", "--host", "weak.example.com", src, "--cert-file", crt, "--key-file", key)
		if r.code != 2 || !strings.Contains(r.stderr, "RSA key has 1024 bits, fewer than the 2048 p2ptls accepts") {
			t.Errorf("%s RSA 1024: exit %d, stderr %q", src, r.code, r.stderr)
		}
		assertSameSnapshot(t, before, snapshot(t, dir))
	}

	crt, key = writePair(t, files, "ca", ec, true, 200*365*24*time.Hour, "ca.example.com")
	r := p2ptls(t, env, "mapping", "add", "--output", "json", "--quiet", "--listener", "web", "--host", "ca.example.com", "--manual", "--cert-file", crt, "--key-file", key)
	if r.code != 0 {
		t.Fatalf("CA as leaf: exit %d: %s", r.code, r.stderr)
	}
	var out struct {
		ID       string   `json:"id"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("JSON: %v\n%s", err, r.stdout)
	}
	if out.ID != "ca-example-com" || len(out.Warnings) != 2 ||
		!strings.Contains(out.Warnings[0], "is a CA certificate (basic constraints CA:TRUE)") || !strings.Contains(out.Warnings[1], "is valid for 73000 days") {
		t.Errorf("JSON %+v", out)
	}
	// Warnings reach stderr even with --quiet: each is a problem to know of.
	if strings.Count(r.stderr, "p2ptls: warning: the uploaded certificate ") != 2 {
		t.Errorf("stderr %q, want both warnings", r.stderr)
	}
	// Without warnings the JSON has no warnings key.
	r = p2ptls(t, env, "mapping", "add", "--output", "json", "--listener", "web", "--host", "ok.example.com", "--self-signed")
	if r.code != 0 || strings.Contains(r.stdout, "warnings") || r.stderr != "" {
		t.Errorf("self-signed: exit %d, stdout %s, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// What a writer killed mid-change leaves — an orphan mapping directory with
// its key, temporary files, its lock record — is reported by doctor with
// the fix, and removed under the lock by the next change.
func TestLeftoversReportedAndRemovedCLI(t *testing.T) {
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	if r := p2ptls(t, env, "mapping", "add", "--listener", "web", "--host", "keep.example.com", "--self-signed"); r.code != 0 {
		t.Fatalf("mapping add: %s", r.stderr)
	}
	for name, body := range map[string]string{
		"certs/public/ghost/key.pem":              "-----BEGIN PRIVATE KEY-----\n",
		"certs/public/ghost/.cert.pem.tmp-4711":   "half",
		".p2ptls.toml.tmp-815":                    "half",
		"certs/public/keep-example-com/.x.tmp-99": "half",
		"p2ptls.lock":                             "pid = 4194399\nhost = 'h'\npurpose = 'mapping add ghost'\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	doc, _ := runDoctor(t, env)
	status, msg, hint := doc.check(t, "state.orphans")
	if status != "warn" || !strings.Contains(msg, "3 leftovers") || !strings.Contains(msg, "certs/public/ghost (with a private key)") ||
		!strings.Contains(hint, "rm -rf "+filepath.Join(dir, "certs/public/ghost")) || !strings.Contains(hint, "takes over the stale lock") {
		t.Errorf("doctor state.orphans: %s: %s (hint: %s)", status, msg, hint)
	}

	if r := p2ptls(t, env, "listener", "add", "api", "--addr", ":9444"); r.code != 0 {
		t.Fatalf("listener add: %s", r.stderr)
	}
	for _, gone := range []string{"certs/public/ghost", ".p2ptls.toml.tmp-815", "certs/public/keep-example-com/.x.tmp-99"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); err == nil {
			t.Errorf("%s is still there after the next change", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "certs/public/keep-example-com/cert.pem")); err != nil {
		t.Errorf("the live mapping's certificate went: %v", err)
	}
	doc, _ = runDoctor(t, env)
	if status, msg, _ := doc.check(t, "state.orphans"); status != "ok" {
		t.Errorf("doctor after the change: %s: %s", status, msg)
	}
}

// A certificate-less mapping under a wildcard with a certificate shows which
// mapping serves its name meanwhile: served_by in the JSON of mapping list,
// cert list and mapping show, and in the table.
func TestServedByCLI(t *testing.T) {
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	for _, args := range [][]string{
		{"mapping", "add", "--listener", "web", "--host", "*.example.com", "--self-signed"},
		{"mapping", "add", "--listener", "web", "--host", "app.example.com", "--id", "app", "--acme", "--challenge", "tls-alpn-01"},
		{"mapping", "add", "--listener", "web", "--host", "app.example.org", "--id", "org", "--acme", "--challenge", "tls-alpn-01"},
	} {
		if r := p2ptls(t, env, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{{"mapping", "list"}, {"cert", "list"}} {
		r := p2ptls(t, env, append(args, "--output", "json")...)
		var list []struct {
			ID       string  `json:"id"`
			Status   string  `json:"status"`
			ServedBy *string `json:"served_by"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 3 {
			t.Fatalf("%v: %v\n%s", args, err, r.stdout)
		}
		got := map[string]string{}
		for _, m := range list {
			if m.ServedBy == nil {
				t.Fatalf("%v: %s has no served_by field", args, m.ID)
			}
			got[m.ID] = m.Status + " " + *m.ServedBy
		}
		if got["app"] != "pending wildcard-example-com" || got["org"] != "pending " || got["wildcard-example-com"] != "valid " {
			t.Errorf("%v: %v", args, got)
		}
	}
	r := p2ptls(t, env, "mapping", "show", "app", "--output", "json")
	if !strings.Contains(r.stdout, `"served_by": "wildcard-example-com"`) {
		t.Errorf("mapping show: %s", r.stdout)
	}
	r = p2ptls(t, env, "mapping", "list")
	if !strings.Contains(r.stdout, "pending (served by wildcard-example-com)") {
		t.Errorf("table:\n%s", r.stdout)
	}
	r = p2ptls(t, env, "mapping", "show", "app")
	if !strings.Contains(r.stdout, "served by") || !strings.Contains(r.stdout, "wildcard-example-com (meanwhile") {
		t.Errorf("mapping show table:\n%s", r.stdout)
	}
}
