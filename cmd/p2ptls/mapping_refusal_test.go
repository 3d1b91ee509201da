package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

func TestMappingAddRefusalsLeaveStateUnchanged(t *testing.T) {
	files := t.TempDir()
	goodCert, goodKey := writeSelfSigned(t, files, "good", "a.example.test")
	_, otherKey := writeSelfSigned(t, files, "other", "a.example.test")
	garbage := filepath.Join(files, "garbage.pem")
	writeRenamed(t, garbage, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o644)
	expired, err := pki.SelfSigned(pki.ParseNames([]string{"a.example.test"}), time.Now().Add(-72*time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expCert, expKey := filepath.Join(files, "exp.crt"), filepath.Join(files, "exp.key")
	writeRenamed(t, expCert, expired.CertPEM, 0o644)
	writeRenamed(t, expKey, expired.KeyPEM, 0o600)

	add := []string{"mapping", "add", "--listener", "web"}
	tests := []struct {
		desc string
		args []string
		code int
		want string
	}{
		{"key does not match", []string{"--host", "a.example.test", "--manual", "--cert-file", goodCert, "--key-file", otherKey}, 2, "does not match"},
		{"garbage PEM", []string{"--host", "a.example.test", "--manual", "--cert-file", garbage, "--key-file", goodKey}, 2, "certificate"},
		{"unreadable file", []string{"--host", "a.example.test", "--file", "--cert-file", filepath.Join(files, "missing.pem"), "--key-file", goodKey}, 2, "missing.pem"},
		{"expired certificate", []string{"--host", "a.example.test", "--manual", "--cert-file", expCert, "--key-file", expKey}, 2, "expired"},
		{"certificate does not cover the host", []string{"--host", "b.example.test", "--manual", "--cert-file", goodCert, "--key-file", goodKey}, 2, "b.example.test"},
		{"invalid hostname", []string{"--host", "bad_host.example.test", "--self-signed"}, 2, "bad_host.example.test"},
		{"double wildcard", []string{"--host", "*.*.example.test", "--self-signed"}, 2, "*.*.example.test"},
		{"wildcard with http-01", []string{"--host", "*.example.test", "--acme", "--challenge", "http-01"}, 2, "DNS-01"},
		{"wildcard with tls-alpn-01", []string{"--host", "*.example.test", "--acme", "--challenge", "tls-alpn-01"}, 2, "DNS-01"},
		{"unknown listener", []string{"--host", "c.example.test", "--self-signed", "--listener", "nope"}, 2, `listener "nope" does not exist`},
		{"duplicate host", []string{"--host", "Taken.Example.Test.", "--self-signed"}, 2, "already mapped"},
		{"no source", []string{"--host", "c.example.test"}, 2, "exactly one source"},
		{"two sources", []string{"--host", "c.example.test", "--self-signed", "--acme"}, 2, "exactly one source"},
		{"flag of another source", []string{"--host", "c.example.test", "--self-signed", "--challenge", "dns-01"}, 2, "--challenge does not apply to --self-signed"},
		{"days out of range", []string{"--host", "c.example.test", "--self-signed", "--days", "400"}, 2, "400 days"},
		{"no host", []string{"--self-signed"}, 2, "--host"},
		{"unknown DNS credential", []string{"--host", "c.example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf"}, 2, `DNS credential "cf" does not exist`},
		{"bad upstream", []string{"--host", "c.example.test", "--self-signed", "--upstream", "localhost:8080"}, 2, "upstream"},
		{"id in use", []string{"--host", "c.example.test", "--self-signed", "--id", "taken"}, 1, `mapping "taken" already exists`},
	}
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	if r := p2ptls(t, env, "mapping", "add", "--listener", "web", "--host", "taken.example.test", "--self-signed", "--id", "taken"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := snapshot(t, dir)
			args := append(append([]string{}, add...), tc.args...)
			r := p2ptls(t, env, args...)
			if r.code != tc.code || !strings.HasPrefix(r.stderr, "p2ptls: error: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", r.code, tc.code, r.stderr, tc.want)
			}
			if n := strings.Count(r.stderr, "\n"); n > 2 {
				t.Errorf("stderr has %d lines:\n%s", n, r.stderr)
			}
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}

	// --allow-expired accepts it with a warning.
	r := p2ptls(t, env, append(add, "--host", "a.example.test", "--manual", "--cert-file", expCert, "--key-file", expKey, "--allow-expired")...)
	if r.code != 0 || !strings.Contains(r.stderr, "warning") {
		t.Errorf("--allow-expired: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := p2ptls(t, env, "mapping", "list", "--output", "json").stdout; !strings.Contains(out, `"status": "expired"`) {
		t.Errorf("mapping list does not show the expired certificate: %s", out)
	}
}
