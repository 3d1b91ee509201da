package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
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
	oneSentence(t, "agent check with another installation's CA", r, 1, "that the given CA "+pki.Fingerprint(certsOf(t, otherCA)[0])+" did not issue")
	if !strings.Contains(r.stderr, "p2ptls management server whose CA is "+fp) || !strings.Contains(r.stderr, "--fingerprint "+fp) {
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

// Pointed at a public listener of the same serve (its fallback certificate
// covers no 127.0.0.1), agent check says the certificate is not from the
// management CA at all, instead of suggesting MANAGEMENT_TLS_EXTRA_HOSTS.
func TestAgentCheckAtAPublicListener(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	startServe(t, p.env)
	caFile, _, _, _ := mgmtFiles(p.dir)
	r := p2ptls(t, nil, "agent", "check", "--url", "https://"+web, "--ca-file", caFile)
	oneSentence(t, "agent check at a public listener", r, 1, "that the given CA "+pki.Fingerprint(certsOf(t, caFile)[0])+" did not issue")
	if !strings.Contains(r.stderr, "publishes no CA at /ca.crt") || strings.Contains(r.stderr, "MANAGEMENT_TLS_EXTRA_HOSTS") {
		t.Errorf("agent check at a public listener: %s", r.stderr)
	}
	if r := p2ptls(t, nil, "agent", "check", "--url", "https://"+p.mgmt, "--ca-file", caFile); r.code != 0 {
		t.Errorf("agent check at management: exit %d %s", r.code, r.stderr)
	}
}

// rotatingManagement serves what management serves after 'ca rotate start'
// (real TLS on 127.0.0.1): a certificate from the current CA, and at
// /ca.crt the bundle of the current CA and the next. It returns the URL
// and the two CAs.
func rotatingManagement(t *testing.T) (url string, cur, next *pki.KeyPair) {
	t.Helper()
	now := time.Now()
	var err error
	if cur, err = pki.NewCA("p2ptls management CA", now, pki.CAValidity); err != nil {
		t.Fatal(err)
	}
	if next, err = pki.NewCA("p2ptls management CA", now, pki.CAValidity); err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.IssueServer(cur, pki.ParseNames([]string{"127.0.0.1"}), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(append([]byte{}, cur.CertPEM...), next.CertPEM...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /ca.crt", func(w http.ResponseWriter, _ *http.Request) { w.Write(bundle) })
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, cur, next
}

// During a rotation, agent check tells an agent with only the current CA
// that it will not survive the finish and what to run (exit 0: it works
// now); bootstrap keeps the bundle, with which the agent survives; the next
// CA's fingerprint before the switch is refused and writes nothing.
func TestAgentDuringARotation(t *testing.T) {
	t.Parallel()
	url, cur, next := rotatingManagement(t)
	dir := t.TempDir()
	oldFile := filepath.Join(dir, "old.pem")
	if err := os.WriteFile(oldFile, cur.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	curFP, nextFP := pki.Fingerprint(cur.Cert), pki.Fingerprint(next.Cert)

	r := p2ptls(t, nil, "agent", "check", "--url", url, "--ca-file", oldFile)
	if r.code != 0 || !strings.Contains(r.stderr, "p2ptls: warning: management is rotating its CA from "+curFP+" to "+nextFP) ||
		!strings.Contains(r.stderr, "p2ptls agent bootstrap --url "+url+" --fingerprint "+nextFP+" --out "+oldFile) {
		t.Errorf("agent check with the old CA: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = p2ptls(t, []string{"MANAGEMENT_CA_PEM_BASE64=" + base64.StdEncoding.EncodeToString(cur.CertPEM)}, "agent", "check", "--url", url, "--quiet")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "p2ptls agent env") || !strings.Contains(r.stderr, "MANAGEMENT_CA_PEM_BASE64") {
		t.Errorf("agent check --quiet with the old CA as base64: exit %d %q %s", r.code, r.stdout, r.stderr)
	}

	bundleFile := filepath.Join(dir, "bundle.pem")
	r = p2ptls(t, nil, "agent", "bootstrap", "--url", url, "--fingerprint", curFP, "--out", bundleFile)
	if r.code != 0 || len(certsOf(t, bundleFile)) != 2 {
		t.Fatalf("bootstrap during the rotation: exit %d %s", r.code, r.stderr)
	}
	r = p2ptls(t, nil, "agent", "check", "--url", url, "--ca-file", bundleFile, "--output", "json")
	var res struct {
		Rotation *struct {
			Current  string `json:"current_ca_fingerprint"`
			Next     string `json:"next_ca_fingerprint"`
			Survives bool   `json:"survives_finish"`
		} `json:"rotation"`
	}
	if r.code != 0 || r.stderr != "" || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Rotation == nil ||
		!res.Rotation.Survives || res.Rotation.Current != curFP || res.Rotation.Next != nextFP {
		t.Errorf("agent check with the bundle: exit %d %s %s", r.code, r.stdout, r.stderr)
	}

	early := filepath.Join(dir, "early.pem")
	r = p2ptls(t, nil, "agent", "bootstrap", "--url", url, "--fingerprint", nextFP, "--out", early)
	oneSentence(t, "bootstrap with the next CA before the switch", r, 1, "management has not switched to that CA yet")
	if _, err := os.Stat(early); !os.IsNotExist(err) {
		t.Errorf("a refused bootstrap wrote %s", early)
	}
}
