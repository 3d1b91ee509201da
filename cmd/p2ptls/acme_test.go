package main

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

// acmeState is a state directory with an account at a fresh pebble and one
// listener whose ports pebble validates against.
type acmeState struct {
	*publicServe
	env             *acmetest.Env
	web, plain      string
	mappingCertFile func(id string) string
}

func newACMEState(t *testing.T) *acmeState {
	t.Helper()
	web, plain := freeAddr(t), freeAddr(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: port(t, plain), TLSPort: port(t, web),
		CFTokens: map[string]cftest.Perms{"good-token-123456": {ZoneRead: true, DNSEdit: true}}})
	p := newPublicState(t)
	a := &acmeState{publicServe: p, env: env, web: web, plain: plain}
	p.env = append(p.env, "P2PTLS_DNS_RESOLVERS="+env.DNSResolver, "CF_TOKEN=good-token-123456")
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain)
	p.must(t, "dns-credential", "add", "cf", "--api-token-env", "CF_TOKEN", "--api-base-url", env.Cloudflare.URL)
	a.mappingCertFile = func(id string) string { return filepath.Join(p.dir, "certs", "public", id, "cert.pem") }
	return a
}

func port(t *testing.T, addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// verifyIssued checks that mapping id holds a chain from pebble for hosts.
func (a *acmeState) verifyIssued(t *testing.T, id string, hosts ...string) *x509.Certificate {
	t.Helper()
	chain, err := pki.ParseCertChain(mustRead(t, a.mappingCertFile(id)))
	if err != nil {
		t.Fatalf("mapping %s: %v", id, err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, h := range hosts {
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: a.env.Roots(t), Intermediates: inter, DNSName: strings.Replace(h, "*", "x", 1)}); err != nil {
			t.Errorf("mapping %s for %s: %v", id, h, err)
		}
	}
	if info, err := os.Stat(filepath.Join(filepath.Dir(a.mappingCertFile(id)), "key.pem")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("mapping %s key mode %v %v", id, info.Mode().Perm(), err)
	}
	return chain[0]
}

type mappingJSON struct {
	ID            string     `json:"id"`
	Status        string     `json:"status"`
	LastError     string     `json:"last_error"`
	Attempts      int        `json:"attempts"`
	NotAfter      *time.Time `json:"not_after"`
	NextRenewalAt *time.Time `json:"next_renewal_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	IssuedAt      *time.Time `json:"issued_at"`
	RetryAt       *time.Time `json:"retry_at"`
}

func (a *acmeState) mapping(t *testing.T, id string) mappingJSON {
	t.Helper()
	var list []mappingJSON
	if err := json.Unmarshal([]byte(a.must(t, "mapping", "list", "--output", "json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no mapping %s", id)
	return mappingJSON{}
}

type renewJSON struct {
	Renewed, Failed, Skipped []string
	Errors                   map[string]string
}

func (a *acmeState) renew(t *testing.T, args ...string) (renewJSON, result) {
	t.Helper()
	r := p2ptls(t, a.env2(), append([]string{"cert", "renew", "--no-random-sleep", "--output", "json"}, args...)...)
	var rep renewJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("cert renew output: %v: %q %s", err, r.stdout, r.stderr)
	}
	return rep, r
}

func (a *acmeState) env2() []string { return a.publicServe.env }

// TestACMEWithoutServe issues with each challenge while no serve runs: the
// command binds the listener's addresses itself.
func TestACMEWithoutServe(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	a.must(t, "mapping", "add", "--listener", "web", "--host", "http.example.test", "--acme", "--challenge", "http-01", "--id", "http")
	a.must(t, "mapping", "add", "--listener", "web", "--host", "alpn.example.test", "--acme", "--challenge", "tls-alpn-01", "--id", "alpn", "--key-type", "rsa2048")
	a.must(t, "mapping", "add", "--listener", "web", "--host", "*.example.test", "--host", "example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf", "--id", "wild")
	if m := a.mapping(t, "http"); m.Status != "pending" {
		t.Errorf("before issuance: %+v", m)
	}
	a.must(t, "cert", "issue", "http", "alpn", "wild")
	a.verifyIssued(t, "http", "http.example.test")
	if leaf := a.verifyIssued(t, "alpn", "alpn.example.test"); pki.KeyType(leaf.PublicKey) != "RSA 2048" {
		t.Errorf("key type %s, want RSA 2048", pki.KeyType(leaf.PublicKey))
	}
	a.verifyIssued(t, "wild", "*.example.test", "example.test")
	if txt := a.env.Cloudflare.TXT("_acme-challenge.example.test"); len(txt) != 0 {
		t.Errorf("TXT records left behind: %v", txt)
	}
	m := a.mapping(t, "wild")
	if m.Status != "valid" || m.IssuedAt == nil || m.NotAfter == nil || m.NextRenewalAt == nil || m.LastAttemptAt == nil || m.LastError != "" {
		t.Errorf("recorded attempt: %+v", m)
	}
	if entries, _ := os.ReadDir(filepath.Join(a.dir, "acme", "challenges", "http-01")); len(entries) != 0 {
		t.Errorf("HTTP-01 challenges left behind: %v", entries)
	}

	// Not due yet: cron does nothing; --days and --force renew.
	rep, r := a.renew(t)
	if r.code != 0 || len(rep.Skipped) != 3 || len(rep.Renewed) != 0 {
		t.Errorf("cert renew of fresh certificates: exit %d %+v", r.code, rep)
	}
	hookOut := filepath.Join(t.TempDir(), "hook.log")
	before := a.verifyIssued(t, "http", "http.example.test")
	rep, r = a.renew(t, "--days", "100000", "--deploy-hook", "echo \"$P2PTLS_MAPPING_ID $P2PTLS_CERT_FILE\" >> "+hookOut)
	if r.code != 0 || len(rep.Renewed) != 3 {
		t.Fatalf("cert renew --days: exit %d %+v %s", r.code, rep, r.stderr)
	}
	if after := a.verifyIssued(t, "http", "http.example.test"); after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Error("renewal kept the old certificate")
	}
	hook := string(mustRead(t, hookOut))
	for _, id := range []string{"http", "alpn", "wild"} {
		if !strings.Contains(hook, id+" "+a.mappingCertFile(id)) {
			t.Errorf("deploy hook did not run for %s:\n%s", id, hook)
		}
	}
	rep, r = a.renew(t, "--dry-run", "--force")
	if r.code != 0 || len(rep.Renewed) != 3 {
		t.Errorf("dry run: %+v", rep)
	}
}

// TestACMEWithServe: serve issues a new mapping by itself and answers the
// challenges; renewals are served live; a CA that goes away fails renewals
// while the old certificates keep serving.
func TestACMEWithServe(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	a.serve = startServe(t, a.env2())
	a.must(t, "mapping", "add", "--listener", "web", "--host", "auto.example.test", "--acme", "--challenge", "http-01", "--id", "auto")
	a.must(t, "mapping", "add", "--listener", "web", "--host", "alpn.example.test", "--acme", "--challenge", "tls-alpn-01", "--id", "alpn")
	eventually(t, 60*time.Second, func() error {
		for _, id := range []string{"auto", "alpn"} {
			if m := a.mapping(t, id); m.Status != "valid" {
				return fmt.Errorf("mapping %s: %+v", id, m)
			}
		}
		return nil
	})
	first := a.verifyIssued(t, "auto", "auto.example.test")
	eventually(t, 10*time.Second, func() error { return serves(a.web, "auto.example.test", first.SerialNumber) })

	// Forced renewal from the CLI while serve runs: serve answers the
	// challenge and serves the new certificate.
	if rep, r := a.renew(t, "--force"); r.code != 0 || len(rep.Renewed) != 2 {
		t.Fatalf("renew --force: exit %d %+v %s", r.code, rep, r.stderr)
	}
	second := a.verifyIssued(t, "auto", "auto.example.test")
	eventually(t, 10*time.Second, func() error { return serves(a.web, "auto.example.test", second.SerialNumber) })

	// The CA goes away: renewals fail, are recorded, and the old certificate serves on.
	a.env.StopPebble()
	rep, r := a.renew(t, "--force")
	if r.code != 1 || len(rep.Failed) != 2 || !strings.Contains(r.stderr, "failed to renew") {
		t.Errorf("renew with the CA gone: exit %d %+v %s", r.code, rep, r.stderr)
	}
	m := a.mapping(t, "auto")
	if m.LastError == "" || m.Attempts != 1 || m.RetryAt == nil || m.Status != "valid" {
		t.Errorf("failed attempt not recorded: %+v", m)
	}
	if err := serves(a.web, "auto.example.test", second.SerialNumber); err != nil {
		t.Errorf("after a failed renewal: %v", err)
	}
	// Backing off: cron skips it until retry_at.
	if rep, _ := a.renew(t); len(rep.Skipped) != 2 {
		t.Errorf("during back-off: %+v", rep)
	}
}

// TestACMEConcurrentRenewals: two renewals at once issue a pending mapping
// once; the second sees the first's certificate and skips it.
func TestACMEConcurrentRenewals(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	a.must(t, "mapping", "add", "--listener", "web", "--host", "once.example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf", "--id", "once")
	var wg sync.WaitGroup
	reps := make([]renewJSON, 2)
	codes := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r result
			reps[i], r = a.renew(t)
			codes[i] = r.code
		}()
	}
	wg.Wait()
	renewed := len(reps[0].Renewed) + len(reps[1].Renewed)
	skipped := len(reps[0].Skipped) + len(reps[1].Skipped)
	if codes[0] != 0 || codes[1] != 0 || renewed != 1 || skipped != 1 {
		t.Errorf("two renewals at once: exit %v, %+v", codes, reps)
	}
	a.verifyIssued(t, "once", "once.example.test")
}

func TestACMEFailures(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	a.must(t, "listener", "add", "nohttp", "--addr", freeAddr(t))
	a.must(t, "mapping", "add", "--listener", "nohttp", "--host", "nohttp.example.test", "--acme", "--challenge", "http-01", "--id", "nohttp")
	a.must(t, "mapping", "add", "--listener", "web", "--host", "rejected.example.test", "--acme", "--challenge", "http-01", "--id", "rejected")
	a.must(t, "mapping", "add", "--listener", "web", "--host", "off.example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf", "--id", "off")
	a.must(t, "dns-credential", "disable", "cf")
	a.env.SetRejectChallenges(t, "rejected.example.test", true)

	tests := []struct {
		id, want string
		code     int
	}{
		{"nohttp", "has no HTTP address", 1},
		{"rejected", "rejected", 1},
		{"off", "disabled", 1},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			r := p2ptls(t, a.env2(), "cert", "issue", tc.id)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr %s (want %q)", r.code, tc.code, r.stderr, tc.want)
			}
			m := a.mapping(t, tc.id)
			if m.Status != "failed" || m.LastError == "" || m.Attempts != 1 {
				t.Errorf("attempt not recorded: %+v", m)
			}
			if _, err := os.Stat(a.mappingCertFile(tc.id)); !os.IsNotExist(err) {
				t.Errorf("a failed issuance wrote a certificate: %v", err)
			}
		})
	}

	// No account at all.
	other := newPublicState(t)
	other.must(t, "listener", "add", "web", "--addr", freeAddr(t), "--http-addr", freeAddr(t))
	other.must(t, "mapping", "add", "--listener", "web", "--host", "x.example.test", "--acme", "--challenge", "http-01", "--id", "x")
	if r := p2ptls(t, other.env, "cert", "issue", "x"); r.code != 1 || !strings.Contains(r.stderr, "no ACME account") || !strings.Contains(r.stderr, "acme account register") {
		t.Errorf("without an account: exit %d %s", r.code, r.stderr)
	}
	// Bad input to register.
	for _, args := range [][]string{
		{"acme", "account", "register", "--email", "ops@example.test", "--directory", a.env.DirectoryURL},
		{"acme", "account", "register", "--email", "not an email", "--agree-tos"},
		{"acme", "account", "register", "--email", "ops@example.test", "--directory", "http://insecure/dir", "--agree-tos"},
		{"acme", "account", "register", "--email", "ops@example.test", "--ca-file", "/nonexistent", "--agree-tos"},
	} {
		before := snapshot(t, other.dir)
		if r := p2ptls(t, other.env, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2: %s", args, r.code, r.stderr)
		}
		assertSameSnapshot(t, before, snapshot(t, other.dir))
	}
}

// TestACMEExternalAccountBindingAndProfile: a server that requires EAB
// refuses an account without it and takes one with it; --profile reaches
// the server (pebble's "shortlived" profile issues 6-day certificates).
func TestACMEExternalAccountBindingAndProfile(t *testing.T) {
	t.Parallel()
	web, plain := freeAddr(t), freeAddr(t)
	hmac := "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	env := acmetest.Start(t, acmetest.Options{HTTPPort: port(t, plain), TLSPort: port(t, web), Profiles: true,
		EABKeys: map[string]string{"kid-1": hmac}})
	p := newPublicState(t)
	register := []string{"acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos"}
	if r := p2ptls(t, p.env, register...); r.code != 1 || !strings.Contains(r.stderr, "--eab-kid") {
		t.Errorf("register without EAB at a server that requires it: exit %d %s", r.code, r.stderr)
	}
	hmacFile := filepath.Join(t.TempDir(), "eab.hmac")
	os.WriteFile(hmacFile, []byte(hmac+"\n"), 0o600)
	p.must(t, append(register, "--eab-kid", "kid-1", "--eab-hmac-file", hmacFile)...)

	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "short.example.test", "--acme", "--challenge", "http-01", "--profile", "shortlived", "--id", "short")
	p.must(t, "cert", "issue", "short")
	chain, err := pki.ParseCertChain(mustRead(t, filepath.Join(p.dir, "certs", "public", "short", "cert.pem")))
	if err != nil {
		t.Fatal(err)
	}
	if life := chain[0].NotAfter.Sub(chain[0].NotBefore); life > 7*24*time.Hour {
		t.Errorf("--profile shortlived gave a %v certificate", life)
	}
}
