package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// publicServe is a state with listeners and a running serve.
type publicServe struct {
	dir, mgmt string
	env       []string
	serve     *serveProc
}

func newPublicState(t *testing.T) *publicServe {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	mgmt := freeAddr(t)
	return &publicServe{dir: dir, mgmt: mgmt, env: []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + mgmt}}
}

// must runs p2ptls and fails the test unless it exits 0.
func (p *publicServe) must(t *testing.T, args ...string) string {
	t.Helper()
	r := p2ptls(t, p.env, args...)
	if r.code != 0 {
		t.Fatalf("p2ptls %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// servedSerial is the serial of the certificate served for sni (no
// verification: the point is which certificate was chosen).
func servedSerial(addr, sni string) (*big.Int, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// fileSerial is the serial of the leaf in a PEM file.
func fileSerial(t *testing.T, file string) *big.Int {
	t.Helper()
	chain, err := pki.ParseCertChain(mustRead(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return chain[0].SerialNumber
}

// writeSelfSigned writes a self-signed pair for hosts into dir.
func writeSelfSigned(t *testing.T, dir, name string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	kp, err := pki.SelfSigned(pki.ParseNames(hosts), time.Now(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeRenamed(t, certFile, kp.CertPEM, 0o644)
	writeRenamed(t, keyFile, kp.KeyPEM, 0o600)
	return certFile, keyFile
}

type statusJSON struct {
	ServeRunning    bool   `json:"serve_running"`
	PID             int    `json:"pid"`
	LastReloadError string `json:"last_reload_error"`
	Listeners       []struct {
		Name         string           `json:"name"`
		Addr         string           `json:"addr"`
		Listening    bool             `json:"listening"`
		FallbackHits map[string]int64 `json:"fallback_hits"`
	} `json:"listeners"`
}

func (p *publicServe) status(t *testing.T) statusJSON {
	t.Helper()
	var st statusJSON
	if err := json.Unmarshal([]byte(p.must(t, "status", "--output", "json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPublicSNISelectionFallbackAndReload(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	files := t.TempDir()
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "a.example.test", "--self-signed", "--id", "exact")
	wc, wk := writeSelfSigned(t, files, "wild", "*.example.test")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "*.example.test", "--manual", "--cert-file", wc, "--key-file", wk, "--id", "wild")
	fc, fk := writeSelfSigned(t, files, "file", "files.example.org")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "Files.Example.Org.", "--file", "--cert-file", fc, "--key-file", fk, "--id", "byfile")
	p.serve = startServe(t, p.env)

	exact := fileSerial(t, filepath.Join(p.dir, "certs", "public", "exact", "cert.pem"))
	wild := fileSerial(t, wc)
	tests := []struct {
		sni  string
		want *big.Int // nil: the fallback
	}{
		{"a.example.test", exact}, // exact beats the wildcard
		{"A.EXAMPLE.TEST", exact}, // case-insensitive
		{"b.example.test", wild},  // wildcard on the leftmost label
		{"files.example.org", fileSerial(t, fc)},
		{"x.b.example.test", nil}, // a wildcard covers one label only
		{"example.test", nil},     // nor the apex
		{"unmapped.example.net", nil},
		{"", nil}, // no SNI
	}
	for _, tc := range tests {
		got, err := servedSerial(web, tc.sni)
		if err != nil {
			t.Fatalf("handshake %q: %v", tc.sni, err)
		}
		if tc.want != nil && got.Cmp(tc.want) != 0 {
			t.Errorf("SNI %q: served serial %x, want %x", tc.sni, got, tc.want)
		}
		if tc.want == nil && (got.Cmp(exact) == 0 || got.Cmp(wild) == 0) {
			t.Errorf("SNI %q: served a mapped certificate, want the fallback", tc.sni)
		}
	}

	// Every fallback handshake is counted per SNI name and shown by status.
	eventually(t, 10*time.Second, func() error {
		st := p.status(t)
		if !st.ServeRunning || len(st.Listeners) != 1 {
			return fmt.Errorf("status: %+v", st)
		}
		hits := st.Listeners[0].FallbackHits
		for _, name := range []string{"x.b.example.test", "example.test", "unmapped.example.net", ""} {
			if hits[name] != 1 {
				return fmt.Errorf("fallback_hits = %v", hits)
			}
		}
		return nil
	})
	if !strings.Contains(p.serve.output(), "level=WARN") || !strings.Contains(p.serve.output(), "sni=unmapped.example.net") {
		t.Errorf("fallback not logged at WARN:\n%s", p.serve.output())
	}

	// A mapping added while serving is served without a restart.
	p.must(t, "mapping", "add", "--listener", "web", "--host", "new.example.net", "--self-signed", "--id", "new")
	newSerial := fileSerial(t, filepath.Join(p.dir, "certs", "public", "new", "cert.pem"))
	eventually(t, 10*time.Second, func() error { return serves(web, "new.example.net", newSerial) })

	// cert issue regenerates a self-signed certificate; served live.
	p.must(t, "cert", "issue", "new")
	regenerated := fileSerial(t, filepath.Join(p.dir, "certs", "public", "new", "cert.pem"))
	eventually(t, 10*time.Second, func() error { return serves(web, "new.example.net", regenerated) })

	// A file certificate rotated on disk is served; a broken rotation is not.
	rc, rk := writeSelfSigned(t, t.TempDir(), "rotated", "files.example.org")
	writeRenamed(t, fk, mustRead(t, rk), 0o600)
	writeRenamed(t, fc, mustRead(t, rc), 0o644)
	rotated := fileSerial(t, fc)
	eventually(t, 10*time.Second, func() error { return serves(web, "files.example.org", rotated) })
	writeRenamed(t, fc, []byte("not a certificate"), 0o644)
	eventually(t, 10*time.Second, func() error {
		if st := p.status(t); !strings.Contains(st.LastReloadError, "byfile") {
			return fmt.Errorf("last_reload_error = %q", st.LastReloadError)
		}
		return nil
	})
	if err := serves(web, "files.example.org", rotated); err != nil {
		t.Errorf("after a broken rotation: %v", err)
	}

	// A hand edit that does not load keeps the last good state serving.
	cfgFile := filepath.Join(p.dir, "p2ptls.toml")
	good := mustRead(t, cfgFile)
	writeRenamed(t, cfgFile, append(append([]byte{}, good...), []byte("\n[[listeners]]\nname = 5\n")...), 0o600)
	eventually(t, 10*time.Second, func() error {
		if st := p.status(t); !strings.Contains(st.LastReloadError, "p2ptls.toml") {
			return fmt.Errorf("last_reload_error = %q", st.LastReloadError)
		}
		return nil
	})
	if err := serves(web, "a.example.test", exact); err != nil {
		t.Errorf("after a bad hand edit: %v", err)
	}
	writeRenamed(t, cfgFile, good, 0o600)

	// Removing a mapping takes its hosts back to the fallback.
	p.must(t, "mapping", "remove", "new")
	eventually(t, 10*time.Second, func() error {
		if serves(web, "new.example.net", regenerated) == nil {
			return errors.New("still served")
		}
		return nil
	})

	// Listeners open and close as they are added and removed.
	api := freeAddr(t)
	p.must(t, "listener", "add", "api", "--addr", api)
	eventually(t, 10*time.Second, func() error { _, err := servedSerial(api, "x.example.net"); return err })
	p.must(t, "listener", "remove", "api")
	eventually(t, 10*time.Second, func() error {
		if c, err := net.DialTimeout("tcp", api, time.Second); err == nil {
			c.Close()
			return errors.New("still listening")
		}
		return nil
	})
}

// serves checks that the listener serves the certificate with serial for sni.
func serves(addr, sni string, serial *big.Int) error {
	got, err := servedSerial(addr, sni)
	if err != nil {
		return err
	}
	if got.Cmp(serial) != 0 {
		return fmt.Errorf("SNI %s: serial %x, want %x", sni, got, serial)
	}
	return nil
}

func TestPublicFallbackReject(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web, "--fallback", "reject")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "a.example.test", "--self-signed")
	p.serve = startServe(t, p.env)
	if _, err := servedSerial(web, "a.example.test"); err != nil {
		t.Errorf("mapped host: %v", err)
	}
	_, err := servedSerial(web, "other.example.test")
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("unmapped host with --fallback reject: %v, want an unrecognized_name alert", err)
	}
	eventually(t, 10*time.Second, func() error {
		if hits := p.status(t).Listeners[0].FallbackHits; hits["other.example.test"] != 1 {
			return fmt.Errorf("fallback_hits = %v", hits)
		}
		return nil
	})
}

func TestPublicProxyAndHTTPListener(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			echoUpgrade(w)
			return
		}
		fmt.Fprintf(w, "upstream A host=%s xff=%s proto=%s xhost=%s path=%s",
			r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.URL.Path)
	}))
	defer upstream.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream B") }))
	defer other.Close()

	p := newPublicState(t)
	web, plain := freeAddr(t), freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain, "--upstream", other.URL)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--upstream", upstream.URL)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "default.example.test", "--self-signed")
	bare := freeAddr(t)
	p.must(t, "listener", "add", "bare", "--addr", bare)
	p.must(t, "mapping", "add", "--listener", "bare", "--host", "page.example.test", "--self-signed", "--id", "page")
	p.serve = startServe(t, p.env)

	client := func(sni string) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			ForceAttemptHTTP2: true,
			TLSClientConfig:   &tls.Config{ServerName: sni, InsecureSkipVerify: true},
		}}
	}
	_, port, _ := net.SplitHostPort(web)
	get := func(sni, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+web+path, nil)
		req.Host = sni + ":" + port
		resp, err := client(sni).Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", sni, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	// The mapping's upstream, with the forwarding headers and h2 to the client.
	resp, body := get("app.example.test", "/hello")
	if resp.ProtoMajor != 2 {
		t.Errorf("ALPN: client got %s, want HTTP/2", resp.Proto)
	}
	for _, want := range []string{"upstream A", "host=app.example.test:" + port, "xff=127.0.0.1", "proto=https", "xhost=app.example.test:" + port, "path=/hello"} {
		if !strings.Contains(body, want) {
			t.Errorf("proxied answer %q lacks %q", body, want)
		}
	}
	// The listener's upstream when the mapping has none.
	if _, body := get("default.example.test", "/"); body != "upstream B" {
		t.Errorf("listener upstream: %q", body)
	}

	// WebSocket upgrades pass through (HTTP/1.1).
	conn, err := tls.Dial("tcp", web, &tls.Config{ServerName: "app.example.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(conn)
	up, err := http.ReadResponse(br, nil)
	if err != nil || up.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", up, err)
	}
	fmt.Fprint(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "echo: ping\n" {
		t.Errorf("through the upgraded connection: %q %v", line, err)
	}

	// The HTTP listener answers ACME HTTP-01 from the state and redirects the rest.
	token := "tok_EN-123"
	os.MkdirAll(filepath.Join(p.dir, "acme", "challenges", "http-01"), 0o700)
	os.WriteFile(filepath.Join(p.dir, "acme", "challenges", "http-01", token), []byte(token+".keyauth"), 0o600)
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if code, body := get2(t, noRedirect, "http://"+plain+"/.well-known/acme-challenge/"+token, "app.example.test"); code != 200 || body != token+".keyauth" {
		t.Errorf("HTTP-01 answer: %d %q", code, body)
	}
	if code, _ := get2(t, noRedirect, "http://"+plain+"/.well-known/acme-challenge/..%2fp2ptls.toml", "app.example.test"); code != 404 {
		t.Errorf("challenge path outside the challenges: %d", code)
	}
	req, _ := http.NewRequest("GET", "http://"+plain+"/some/path?q=1", nil)
	req.Host = "app.example.test"
	r, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusPermanentRedirect || r.Header.Get("Location") != "https://app.example.test:"+port+"/some/path?q=1" {
		t.Errorf("redirect: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	// Without any upstream: a neutral 503 page, 421 for an unmapped host;
	// neither names the listener, the mapping or the product.
	pageClient := func(sni string) (int, string) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}}
		return get2(t, c, "https://"+bare+"/", sni)
	}
	for sni, want := range map[string]int{"page.example.test": http.StatusServiceUnavailable, "nothing.example.test": http.StatusMisdirectedRequest} {
		code, body := pageClient(sni)
		if code != want || strings.Contains(body, "page") || strings.Contains(body, "bare") || strings.Contains(strings.ToLower(body), "p2ptls") {
			t.Errorf("page for %s: %d %q; want %d naming nothing", sni, code, body, want)
		}
	}

	// A mapping edited in place keeps its id and certificate but is served
	// as edited: here its upstream, changed by hand in its record.
	recFile := filepath.Join(p.dir, "mappings", "app-example-test.toml")
	before := string(mustRead(t, recFile))
	edited := strings.Replace(before, upstream.URL, other.URL+"/", 1)
	if edited == before {
		t.Fatalf("the record does not name the upstream %s:\n%s", upstream.URL, before)
	}
	writeRenamed(t, recFile, []byte(edited), 0o600)
	// serve notices hand edits by p2ptls.toml's size and time only, until
	// it watches the whole state: touch it too.
	cfgFile := filepath.Join(p.dir, "p2ptls.toml")
	writeRenamed(t, cfgFile, mustRead(t, cfgFile), 0o600)
	eventually(t, 10*time.Second, func() error {
		if _, body := get("app.example.test", "/"); body != "upstream B" {
			return fmt.Errorf("after the upstream was edited: %q", body)
		}
		return nil
	})
}

// echoUpgrade answers an upgrade and echoes one line, as a WebSocket peer would.
func echoUpgrade(w http.ResponseWriter) {
	conn, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	rw.Flush()
	line, err := rw.ReadString('\n')
	if err != nil {
		return
	}
	rw.WriteString("echo: " + line)
	rw.Flush()
}

func get2(t *testing.T, c *http.Client, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPublicReloadFailsNoHandshake(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "steady.example.test", "--self-signed", "--id", "steady")
	p.serve = startServe(t, p.env)
	steady := fileSerial(t, filepath.Join(p.dir, "certs", "public", "steady", "cert.pem"))

	stop := make(chan struct{})
	type tally struct{ ok, failed int }
	done := make(chan tally)
	go func() {
		var n tally
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			if err := serves(web, "steady.example.test", steady); err != nil {
				n.failed++
				t.Log(err)
			} else {
				n.ok++
			}
		}
	}()
	for i := range 4 {
		id := fmt.Sprintf("churn%d", i)
		p.must(t, "mapping", "add", "--listener", "web", "--host", id+".example.test", "--self-signed", "--id", id)
		serial := fileSerial(t, filepath.Join(p.dir, "certs", "public", id, "cert.pem"))
		eventually(t, 10*time.Second, func() error { return serves(web, id+".example.test", serial) })
		p.must(t, "mapping", "remove", id)
		eventually(t, 10*time.Second, func() error {
			if serves(web, id+".example.test", serial) == nil {
				return errors.New("still served after remove")
			}
			return nil
		})
	}
	close(stop)
	n := <-done
	t.Logf("handshakes during 8 reloads: %d ok, %d failed", n.ok, n.failed)
	if n.failed > 0 || n.ok == 0 {
		t.Errorf("handshakes during reloads: %d ok, %d failed", n.ok, n.failed)
	}
	if st := p.status(t); st.LastReloadError != "" {
		t.Errorf("reload error: %s", st.LastReloadError)
	}
}
