package edge

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// A connection still in its handshake when the listener closes is closed
// with it (no goroutine waits out the handshake timeout), and Accept then
// reports net.ErrClosed.
func TestListenCloseEndsPendingHandshakes(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := TLSConfig()
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate in this test")
	}
	ln := Listen(inner, cfg, Limits{HandshakeTimeout: time.Hour}, slog.New(slog.DiscardHandler))
	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(100 * time.Millisecond) // accepted, waiting for a ClientHello
	accepted := make(chan error, 1)
	go func() { _, err := ln.Accept(); accepted <- err }()
	ln.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Errorf("silent connection after Close: %v, want closed by the server", err)
	}
	select {
	case err := <-accepted:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Accept blocks after Close")
	}
}

// A client that speaks plain HTTP to a TLS listener is told so, as
// http.Server would; garbage gets no word.
func TestListenAnswersPlainHTTP(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listen(inner, TLSConfig(), Limits{HandshakeTimeout: 5 * time.Second}, slog.New(slog.DiscardHandler))
	defer ln.Close()
	for _, tc := range []struct {
		desc, send, want string
	}{
		{"plain HTTP", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.0 400 Bad Request"},
		{"garbage", "\x00\x01garbage bytes\r\n\r\n", ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(c)
			if tc.want == "" && len(got) != 0 || tc.want != "" && !strings.HasPrefix(string(got), tc.want) {
				t.Errorf("answer %q; want it to start with %q", got, tc.want)
			}
		})
	}
}
