package management

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// liveServer is a real management listener (Listen, then Serve) over the
// state of a testAPI, on 127.0.0.1.
type liveServer struct {
	t      *testing.T
	m      *Server
	addr   string
	base   string         // https://… or http://… (mode off)
	roots  *x509.CertPool // the management CA, in mode auto
	client *http.Client   // trusts roots, follows no redirect
}

// startLive serves ta's state in mode (auto or off) with limits lim.
func startLive(t *testing.T, ta *testAPI, mode string, lim edge.Limits, opts ...func(*Options)) *liveServer {
	t.Helper()
	o := ta.o
	o.Settings = statemgmt.Settings{Mode: mode, Listen: "127.0.0.1:0", AllowInsecureHTTP: mode == statemgmt.ModeOff}
	o.Limits = lim
	for _, opt := range opts {
		opt(&o)
	}
	m, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("the management server did not shut down")
		}
	})
	ls := &liveServer{t: t, m: m, addr: m.Addr().String()}
	tr := &http.Transport{}
	if mode == statemgmt.ModeOff {
		ls.base = "http://" + ls.addr
	} else {
		ls.base = "https://" + ls.addr
		_, ca, err := statemgmt.CACertificate(ctx, ta.store)
		if err != nil {
			t.Fatal(err)
		}
		ls.roots = x509.NewCertPool()
		ls.roots.AddCert(ca)
		tr.TLSClientConfig = &tls.Config{RootCAs: ls.roots}
	}
	t.Cleanup(tr.CloseIdleConnections)
	ls.client = &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return ls
}

// do sends one request and returns the answer with its body read.
func (ls *liveServer) do(method, path string, hdr map[string]string, body string) (*http.Response, string) {
	ls.t.Helper()
	req, err := http.NewRequest(method, ls.base+path, strings.NewReader(body))
	if err != nil {
		ls.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ls.client.Do(req)
	if err != nil {
		ls.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		ls.t.Fatalf("%s %s: read the answer: %v", method, path, err)
	}
	return resp, string(b)
}

// dialTLS opens a TLS connection to the server, handshake done.
func (ls *liveServer) dialTLS() *tls.Conn {
	ls.t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ls.addr, &tls.Config{RootCAs: ls.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		ls.t.Fatal(err)
	}
	ls.t.Cleanup(func() { c.Close() })
	return c
}

// dialRaw opens a TCP connection that sends nothing.
func (ls *liveServer) dialRaw() net.Conn {
	ls.t.Helper()
	c, err := net.DialTimeout("tcp", ls.addr, 5*time.Second)
	if err != nil {
		ls.t.Fatal(err)
	}
	ls.t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads c until the server closes it, and returns how long that
// took; it fails the test when c is still open after within.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(within)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server did not close the connection within %v", within)
	}
	return time.Since(start)
}

// healthzWithin is nil when GET /healthz answers ok within d.
func (ls *liveServer) healthzWithin(d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ls.base+"/healthz", nil)
	resp, err := ls.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		return &unexpected{resp.StatusCode, string(b)}
	}
	return nil
}

type unexpected struct {
	code int
	body string
}

func (u *unexpected) Error() string {
	return "unexpected answer " + http.StatusText(u.code) + ": " + u.body
}
