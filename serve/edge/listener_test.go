package edge

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
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

// Handshake workers are reused but bounded: after a burst of concurrent
// handshakes larger than maxIdleWorkers, at most that many wait for the
// next connection, each handshake still completes, and Close ends them all.
func TestListenWorkersBoundedAndEndWithClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"worker.example.com"}), time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := TLSConfig()
	cfg.Certificates = []tls.Certificate{cert}
	ln := Listen(inner, cfg, Limits{HandshakeTimeout: 30 * time.Second}, slog.New(slog.DiscardHandler))
	tl := ln.(*tlsListener)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	burst := int(2 * maxIdleWorkers)
	errs := make(chan error, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			c, err := tls.Dial("tcp", inner.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "worker.example.com"})
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handshake in a burst: %v", err)
	}
	// The last workers finish their handshake just after the client's.
	deadline := time.Now().Add(10 * time.Second)
	for tl.idle.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := tl.idle.Load(); n < 1 || n > maxIdleWorkers {
		t.Errorf("%d idle workers after a burst of %d; want 1..%d", n, burst, maxIdleWorkers)
	}
	// Sequential handshakes reuse an idle worker rather than pile up.
	before := tl.idle.Load()
	for range 5 {
		c, err := tls.Dial("tcp", inner.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "worker.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	time.Sleep(50 * time.Millisecond)
	if n := tl.idle.Load(); n > before {
		t.Errorf("%d idle workers after 5 sequential handshakes, %d before: workers are not reused", n, before)
	}
	ln.Close()
	for tl.idle.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := tl.idle.Load(); n != 0 {
		t.Errorf("%d workers still wait after Close", n)
	}
}
