package main

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

func mgmtFiles(dir string) (ca, caKey, srv, srvKey string) {
	m := filepath.Join(dir, "certs", "management")
	return filepath.Join(m, "ca.crt"), filepath.Join(m, "ca.key"), filepath.Join(m, "server.crt"), filepath.Join(m, "server.key")
}

func TestServeAutoModeOnEmptyState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr,
		"MANAGEMENT_PUBLIC_URL=https://mgmt.example.test:" + port,
		"MANAGEMENT_TLS_EXTRA_HOSTS=10.1.2.3, Alt.Example.Test"}
	p := startServe(t, env)

	caFile, caKey, _, srvKey := mgmtFiles(dir)
	ca := caPool(t, caFile)
	caCert, err := pki.ParseCertChain(mustRead(t, caFile))
	if err != nil {
		t.Fatal(err)
	}
	fp := pki.Fingerprint(caCert[0])
	if logs := p.output(); !strings.Contains(logs, caFile) || !strings.Contains(logs, fp) {
		t.Errorf("serve did not say where the CA is and its fingerprint %s:\n%s", fp, logs)
	}
	for _, f := range []string{caKey, srvKey} {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, info.Mode().Perm(), err)
		}
	}

	// Every wanted name verifies against the CA in a real handshake.
	for _, name := range []string{"mgmt.example.test", "alt.example.test", "10.1.2.3", "localhost", "127.0.0.1"} {
		if _, err := handshake(addr, name, ca); err != nil {
			t.Errorf("handshake as %s: %v", name, err)
		}
	}
	if _, err := handshake(addr, "other.example.test", ca); err == nil {
		t.Error("handshake for a name the certificate does not carry succeeded")
	}
	old, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
	if err == nil {
		old.Close()
		t.Error("TLS 1.1 handshake accepted; the minimum is TLS 1.2")
	}

	client := httpsClient(ca)
	base := "https://" + addr
	if code, body := get(t, client, base+"/healthz", ""); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, client, base+"/ca.crt", ""); code != 200 || body != string(mustRead(t, caFile)) {
		t.Errorf("/ca.crt: %d, not the CA file", code)
	}

	// ca show reads the same state.
	r := p2ptls(t, env, "ca", "show", "--output", "json")
	var show struct {
		Mode string `json:"mode"`
		CA   struct {
			Subject     string    `json:"subject"`
			Fingerprint string    `json:"fingerprint_sha256"`
			NotAfter    time.Time `json:"not_after"`
		} `json:"ca"`
		Server struct {
			DNSNames    []string  `json:"dns_names"`
			IPAddresses []string  `json:"ip_addresses"`
			NotAfter    time.Time `json:"not_after"`
		} `json:"server"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &show) != nil {
		t.Fatalf("ca show: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if show.Mode != "auto" || show.CA.Fingerprint != fp || !strings.Contains(show.CA.Subject, "p2ptls management CA") ||
		!slices.Contains(show.Server.DNSNames, "mgmt.example.test") || !slices.Contains(show.Server.IPAddresses, "::1") ||
		show.CA.NotAfter.Before(time.Now().AddDate(9, 11, 0)) || show.Server.NotAfter.After(time.Now().Add(398*24*time.Hour)) {
		t.Errorf("ca show: %+v", show)
	}

	// ca export in both formats gives the CA agents need.
	if r := p2ptls(t, env, "ca", "export"); r.code != 0 || r.stdout != string(mustRead(t, caFile)) {
		t.Errorf("ca export: exit %d", r.code)
	}
	r = p2ptls(t, env, "ca", "export", "--format", "base64")
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.stdout)); r.code != 0 || err != nil || string(b) != string(mustRead(t, caFile)) {
		t.Errorf("ca export --format base64: exit %d, %v", r.code, err)
	}
	out := filepath.Join(t.TempDir(), "agent-ca.pem")
	if r := p2ptls(t, env, "ca", "export", "--out", out); r.code != 0 || string(mustRead(t, out)) != string(mustRead(t, caFile)) {
		t.Errorf("ca export --out: exit %d %s", r.code, r.stderr)
	}

	// ca init never replaces the CA serve created.
	before := snapshot(t, dir)
	if r := p2ptls(t, env, "ca", "init"); r.code != 1 || !strings.Contains(r.stderr, "never replaced") {
		t.Errorf("ca init over an existing CA: exit %d, %s", r.code, r.stderr)
	}
	assertSameSnapshot(t, before, snapshot(t, dir))
}

func TestServeKeepsCAAndFollowsNames(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr}
	p := startServe(t, env)
	caFile, caKey, _, _ := mgmtFiles(dir)
	ca := caPool(t, caFile)
	caBefore, keyBefore := mustRead(t, caFile), mustRead(t, caKey)
	if _, err := handshake(addr, "new.example.test", ca); err == nil {
		t.Fatal("name not yet wanted verified")
	}

	// ca renew-server while serve runs: the new certificate is served live.
	first, err := handshake(addr, "localhost", ca)
	if err != nil {
		t.Fatal(err)
	}
	if r := p2ptls(t, env, "ca", "renew-server", "--extra-hosts", "new.example.test"); r.code != 0 {
		t.Fatalf("ca renew-server: exit %d %s", r.code, r.stderr)
	}
	eventually(t, 5*time.Second, func() error {
		_, err := handshake(addr, "new.example.test", ca)
		return err
	})
	second, _ := handshake(addr, "localhost", ca)
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("renew-server did not change the served certificate")
	}
	p.stop(t)

	// A restart with other names re-issues from the same CA.
	startServe(t, append(env, "MANAGEMENT_TLS_EXTRA_HOSTS=later.example.test"))
	if _, err := handshake(addr, "later.example.test", ca); err != nil {
		t.Errorf("after restart with new names: %v", err)
	}
	if string(mustRead(t, caFile)) != string(caBefore) || string(mustRead(t, caKey)) != string(keyBefore) {
		t.Error("the CA changed across restarts")
	}
}

func TestAdminTokenGuardsAPI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr}
	startServe(t, env)
	caFile, _, _, _ := mgmtFiles(dir)
	client := httpsClient(caPool(t, caFile))
	status := "https://" + addr + "/api/v1/status"

	r := p2ptls(t, env, "admin", "token", "create", "ops", "--output", "json")
	var created struct{ Name, Token string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &created) != nil || !strings.HasPrefix(created.Token, "p2ptls_") {
		t.Fatalf("admin token create: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	tokenFile := filepath.Join(dir, "secrets", "admin-tokens.toml")
	if info, err := os.Stat(tokenFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("token file mode: %v %v", info.Mode().Perm(), err)
	}
	if strings.Contains(string(mustRead(t, tokenFile)), created.Token) {
		t.Error("the token itself is stored")
	}
	if r := p2ptls(t, env, "admin", "token", "list"); r.code != 0 || !strings.Contains(r.stdout, "ops") || strings.Contains(r.stdout, created.Token) {
		t.Errorf("admin token list: exit %d %q", r.code, r.stdout)
	}
	if r := p2ptls(t, env, "admin", "token", "create", "ops"); r.code != 1 {
		t.Errorf("duplicate token name: exit %d", r.code)
	}

	tests := []struct {
		desc, auth string
		code       int
	}{
		{"missing token", "", 401},
		{"not a bearer token", "Basic b3BzOng=", 401},
		{"wrong token", "Bearer p2ptls_wrong", 401},
		{"right token", "Bearer " + created.Token, 200},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			code, body := get(t, client, status, tc.auth)
			if code != tc.code {
				t.Errorf("status %d, want %d: %s", code, tc.code, body)
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Fatalf("answer is not JSON: %q", body)
			}
			if tc.code == 200 && (v["serve_running"] != true || v["pid"] == nil) {
				t.Errorf("status: %v", v)
			}
			if tc.code != 200 && v["error"] == nil {
				t.Errorf("error answer without error field: %v", v)
			}
		})
	}

	if r := p2ptls(t, env, "admin", "token", "revoke", "ops"); r.code != 0 {
		t.Fatalf("revoke: exit %d %s", r.code, r.stderr)
	}
	if code, _ := get(t, client, status, "Bearer "+created.Token); code != 401 {
		t.Errorf("revoked token: status %d, want 401", code)
	}
	if r := p2ptls(t, env, "admin", "token", "revoke", "ops"); r.code != 1 {
		t.Errorf("revoking twice: exit %d", r.code)
	}
}

func get(t *testing.T, c *http.Client, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServeRefusesBadManagementSettings(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeProvided(t, cert, key, time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)) // expired
	tests := []struct {
		desc string
		env  []string
		want string
	}{
		{"unknown mode", []string{"MANAGEMENT_TLS_MODE=maybe"}, `unknown MANAGEMENT_TLS_MODE "maybe"`},
		{"off without allowance", []string{"MANAGEMENT_TLS_MODE=off"}, "MANAGEMENT_ALLOW_INSECURE_HTTP=true"},
		{"off with allowance not true", []string{"MANAGEMENT_TLS_MODE=off", "MANAGEMENT_ALLOW_INSECURE_HTTP=false"}, "MANAGEMENT_ALLOW_INSECURE_HTTP=true"},
		{"provided without files", []string{"MANAGEMENT_TLS_MODE=provided"}, "MANAGEMENT_TLS_CERT_FILE and MANAGEMENT_TLS_KEY_FILE"},
		{"provided missing file", []string{"MANAGEMENT_TLS_MODE=provided", "MANAGEMENT_TLS_CERT_FILE=/nonexistent.pem", "MANAGEMENT_TLS_KEY_FILE=" + key}, "MANAGEMENT_TLS_CERT_FILE: cannot read /nonexistent.pem: no such file or directory"},
		{"provided expired", []string{"MANAGEMENT_TLS_MODE=provided", "MANAGEMENT_TLS_CERT_FILE=" + cert, "MANAGEMENT_TLS_KEY_FILE=" + key}, "expired"},
		{"provided mismatched key", []string{"MANAGEMENT_TLS_MODE=provided", "MANAGEMENT_TLS_CERT_FILE=" + cert, "MANAGEMENT_TLS_KEY_FILE=" + otherKey(t)}, "does not match"},
		{"bad listen address", []string{"MANAGEMENT_LISTEN=127.0.0.1"}, "MANAGEMENT_LISTEN"},
		{"bad public URL", []string{"MANAGEMENT_PUBLIC_URL=mgmt.example.com"}, "MANAGEMENT_PUBLIC_URL"},
		{"bad extra host", []string{"MANAGEMENT_TLS_EXTRA_HOSTS=ok.example.com,bad_host"}, "MANAGEMENT_TLS_EXTRA_HOSTS"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state")
			r := runServeExpectFailure(t, append([]string{"CONFIG_DIR=" + state, "MANAGEMENT_LISTEN=" + freeAddr(t)}, tc.env...))
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || !strings.HasPrefix(r.stderr, "p2ptls: error: ") {
				t.Errorf("exit %d, want 2 with %q; stderr:\n%s", r.code, tc.want, r.stderr)
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("a refused serve created the state directory: %v", err)
			}
		})
	}
}

func TestServeOffModeWithAllowance(t *testing.T) {
	addr := freeAddr(t)
	p := startServe(t, []string{"CONFIG_DIR=" + t.TempDir(), "MANAGEMENT_LISTEN=" + addr,
		"MANAGEMENT_TLS_MODE=off", "MANAGEMENT_ALLOW_INSECURE_HTTP=true"})
	if !strings.Contains(p.output(), "level=WARN") || !strings.Contains(p.output(), "plain HTTP") {
		t.Errorf("no warning about plain HTTP:\n%s", p.output())
	}
	if code, body := get(t, http.DefaultClient, "http://"+addr+"/healthz", ""); code != 200 || body != "ok\n" {
		t.Errorf("/healthz over HTTP: %d %q", code, body)
	}
	if _, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
		t.Error("TLS handshake succeeded in mode off")
	}
}

func TestServeProvidedModeWithChainAndRotation(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	root := writeProvided(t, cert, key, time.Now().Add(-time.Hour), time.Now().Add(30*24*time.Hour))
	addr := freeAddr(t)
	state := filepath.Join(t.TempDir(), "state")
	env := []string{"CONFIG_DIR=" + state, "MANAGEMENT_LISTEN=" + addr, "MANAGEMENT_TLS_MODE=provided",
		"MANAGEMENT_TLS_CERT_FILE=" + cert, "MANAGEMENT_TLS_KEY_FILE=" + key}
	p := startServe(t, env)
	roots := root.pool()

	// Only the root is trusted: the handshake verifies because serve sends the intermediate.
	first, err := handshake(addr, "mgmt.example.test", roots)
	if err != nil {
		t.Fatalf("handshake through the chain: %v", err)
	}
	if _, err := os.Stat(filepath.Join(state, "certs", "management", "ca.key")); !os.IsNotExist(err) {
		t.Errorf("mode provided generated a CA: %v", err)
	}
	named := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "mgmt.example.test"}}}
	if code, body := get(t, named, "https://"+addr+"/ca.crt", ""); code != 200 || !strings.Contains(body, "BEGIN CERTIFICATE") {
		t.Errorf("/ca.crt in mode provided: %d %q", code, body)
	}

	// A broken rotation is logged and the previous certificate keeps serving.
	os.WriteFile(cert, []byte("garbage"), 0o644)
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(p.output(), "does not load") {
			return fmt.Errorf("no warning yet")
		}
		return nil
	})
	if c, err := handshake(addr, "mgmt.example.test", roots); err != nil || c.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("after a broken rotation: %v", err)
	}

	// A good rotation is served without a restart.
	root.issueInto(t, cert, key, time.Now().Add(-time.Hour), time.Now().Add(60*24*time.Hour))
	eventually(t, 5*time.Second, func() error {
		c, err := handshake(addr, "mgmt.example.test", roots)
		if err != nil {
			return err
		}
		if c.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return fmt.Errorf("still the old certificate")
		}
		return nil
	})
}
