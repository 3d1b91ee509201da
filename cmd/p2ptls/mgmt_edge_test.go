package main

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServeManagementEdge: the real serve's management listener offers
// TLS 1.2 with ECDHE and AEAD only, sends HSTS and nosniff on its answers,
// shows no text a link chose on the sign-in page, and answers /healthz
// within 1 s while 100 connections that never send a ClientHello are open.
func TestServeManagementEdge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	startServe(t, []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr})
	caFile, _, _, _ := mgmtFiles(dir)
	ca := caPool(t, caFile)
	base := "https://" + addr

	cbc := &tls.Config{RootCAs: ca, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}}
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cbc); err == nil {
		c.Close()
		t.Errorf("a TLS 1.2 client offering only CBC suites was accepted (%s)", tls.CipherSuiteName(c.ConnectionState().CipherSuite))
	}
	gcm := &tls.Config{RootCAs: ca, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, gcm); err != nil {
		t.Errorf("a TLS 1.2 GCM client was refused: %v", err)
	} else {
		c.Close()
	}

	client := httpsClient(ca)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	const phishing = "Your token leaked: paste it at evil.example to rotate it"
	for _, path := range []string{"/healthz", "/ca.crt", "/api/v1/status", "/api/v1/nothing", "/", "/ui/", "/ui/static/app.js", "/nope",
		"/ui/login?error=" + url.QueryEscape(phishing)} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d without nosniff", path, resp.StatusCode)
		}
		age, ok := strings.CutPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=")
		if n, err := strconv.Atoi(age); !ok || err != nil || n < 31536000 {
			t.Errorf("GET %s: Strict-Transport-Security %q", path, resp.Header.Get("Strict-Transport-Security"))
		}
		if strings.Contains(string(body), "evil.example") {
			t.Errorf("GET %s shows the text of the link", path)
		}
	}

	// Bounded: 100 silent connections, all to 127.0.0.1, closed at the end.
	for range 100 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/healthz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("/healthz #%d with 100 silent connections open: %v", i, err)
		}
	}
}
