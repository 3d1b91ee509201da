package main

import (
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

func TestAgentAgainstRunningServe(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	url := "https://" + addr
	mgmtEnv := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr, "MANAGEMENT_PUBLIC_URL=" + url}
	startServe(t, mgmtEnv)
	caFile, _, _, _ := mgmtFiles(dir)
	certs, _ := pki.ParseCertChain(mustRead(t, caFile))
	fp := pki.Fingerprint(certs[0])

	// agent env prints exactly what an agent needs, and it works.
	r := p2ptls(t, mgmtEnv, "agent", "env")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 || lines[0] != "MANAGEMENT_PUBLIC_URL="+url || !strings.HasPrefix(lines[1], "MANAGEMENT_CA_PEM_BASE64=") {
		t.Fatalf("agent env: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := p2ptls(t, lines, "agent", "check"); r.code != 0 || !strings.Contains(r.stdout, fp) {
		t.Errorf("agent check with agent env's lines: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = p2ptls(t, []string{"MANAGEMENT_PUBLIC_URL=" + url, "MANAGEMENT_CA_FILE=" + caFile}, "agent", "check", "--output", "json")
	var res struct {
		CAFingerprint string   `json:"ca_fingerprint"`
		ServerNames   []string `json:"server_names"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.CAFingerprint != fp {
		t.Errorf("agent check --output json: exit %d %q %s", r.code, r.stdout, r.stderr)
	}

	// A CA from another state, as after a restore without certs/management.
	other := filepath.Join(t.TempDir(), "other")
	if r := p2ptls(t, []string{"CONFIG_DIR=" + other}, "ca", "init"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	otherCA, _, _, _ := mgmtFiles(other)
	r = p2ptls(t, nil, "agent", "check", "--url", url, "--ca-file", otherCA)
	if r.code != 1 || !strings.Contains(r.stderr, "did not sign") || !strings.Contains(r.stderr, "restored without certs/management") {
		t.Errorf("wrong CA: exit %d, %s", r.code, r.stderr)
	}

	// Unreachable URL.
	closed := freeAddr(t)
	r = p2ptls(t, nil, "agent", "check", "--url", "https://"+closed, "--ca-file", caFile)
	if r.code != 1 || !strings.Contains(r.stderr, "not reachable from here") {
		t.Errorf("unreachable: exit %d, %s", r.code, r.stderr)
	}

	// Bad input: no CA, both CAs, a URL that is not https.
	for _, args := range [][]string{
		{"agent", "check", "--url", url},
		{"agent", "check", "--url", url, "--ca-file", caFile, "--ca-pem-base64", "eA=="},
		{"agent", "check", "--url", "http://" + addr, "--ca-file", caFile},
		{"agent", "check", "--ca-file", caFile},
	} {
		if r := p2ptls(t, nil, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2; %s", args, r.code, r.stderr)
		}
	}

	// Bootstrap: the right fingerprint writes the CA, a wrong one writes nothing.
	out := filepath.Join(t.TempDir(), "ca.pem")
	if r := p2ptls(t, nil, "agent", "bootstrap", "--url", url, "--fingerprint", strings.ToLower(strings.ReplaceAll(fp, ":", "")), "--out", out); r.code != 0 {
		t.Fatalf("bootstrap: exit %d %s", r.code, r.stderr)
	}
	if string(mustRead(t, out)) != string(mustRead(t, caFile)) {
		t.Error("bootstrap wrote something else than the CA")
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	wrong := pki.Fingerprint(certsOf(t, otherCA)[0])
	if r := p2ptls(t, nil, "agent", "bootstrap", "--url", url, "--fingerprint", wrong, "--out", bad); r.code != 1 || !strings.Contains(r.stderr, "not the expected") {
		t.Errorf("bootstrap with a wrong fingerprint: exit %d %s", r.code, r.stderr)
	}
	if r := p2ptls(t, nil, "agent", "bootstrap", "--url", url, "--fingerprint", "zz", "--out", bad); r.code != 2 {
		t.Errorf("bootstrap with a malformed fingerprint: exit %d %s", r.code, r.stderr)
	}
	if r := p2ptls(t, nil, "agent", "bootstrap", "--url", url, "--out", bad); r.code != 2 || !strings.Contains(r.stderr, "--fingerprint") {
		t.Errorf("bootstrap without fingerprint: exit %d %s", r.code, r.stderr)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a refused bootstrap wrote %s", bad)
	}
}

func TestAgentCheckNamesTheHostTheCertificateLacks(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	root := writeProvided(t, cert, key, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)) // mgmt.example.test, localhost
	rootFile := filepath.Join(dir, "root.pem")
	os.WriteFile(rootFile, root.root.CertPEM, 0o644)
	addr := freeAddr(t)
	startServe(t, []string{"CONFIG_DIR=" + filepath.Join(dir, "state"), "MANAGEMENT_LISTEN=" + addr, "MANAGEMENT_TLS_MODE=provided",
		"MANAGEMENT_TLS_CERT_FILE=" + cert, "MANAGEMENT_TLS_KEY_FILE=" + key})
	r := p2ptls(t, nil, "agent", "check", "--url", "https://"+addr, "--ca-file", rootFile)
	if r.code != 1 || !strings.Contains(r.stderr, "does not cover 127.0.0.1") || !strings.Contains(r.stderr, "MANAGEMENT_TLS_EXTRA_HOSTS") {
		t.Errorf("exit %d, stderr %s", r.code, r.stderr)
	}
	_, port, _ := strings.Cut(addr, ":")
	if r := p2ptls(t, nil, "agent", "check", "--url", "https://localhost:"+port, "--ca-file", rootFile); r.code != 0 {
		t.Errorf("covered name: exit %d %s", r.code, r.stderr)
	}
}

func certsOf(t *testing.T, file string) []*x509.Certificate {
	t.Helper()
	c, err := pki.ParseCertChain(mustRead(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
