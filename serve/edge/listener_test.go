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
	addr, tl := workerListener(t)
	burst := int(2 * maxIdleWorkers)
	errs := make(chan error, burst)
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() { errs <- dialOnce(addr) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("handshake in a burst: %v", err)
		}
	}
	// The last workers finish their handshake just after their client.
	if !eventually(func() bool { n := tl.idle.Load(); return tl.inHandshake() == 0 && n >= 1 && n <= maxIdleWorkers }) {
		t.Errorf("%d idle workers after a burst of %d; want 1..%d", tl.idle.Load(), burst, maxIdleWorkers)
	}
	tl.Close()
	if !eventually(func() bool { return tl.idle.Load() == 0 }) {
		t.Errorf("%d workers still wait after Close", tl.idle.Load())
	}
}

// Sequential connections are served by the worker the first one started,
// not by a new goroutine each: without reuse, ten sequential handshakes
// leave ten idle workers. (A connection that arrives in the instant
// between a worker counting itself idle and waiting starts one more, so
// the bound has room for a few.)
func TestListenWorkersReused(t *testing.T) {
	addr, tl := workerListener(t)
	defer tl.Close()
	const conns = 10
	for i := range conns {
		if err := dialOnce(addr); err != nil {
			t.Fatal(err)
		}
		if !eventually(func() bool { return tl.inHandshake() == 0 && tl.idle.Load() >= 1 }) {
			t.Fatalf("handshake %d: no worker became idle", i)
		}
	}
	if n := tl.idle.Load(); n >= conns/2 {
		t.Errorf("%d idle workers after %d sequential handshakes; want them reused", n, conns)
	}
}

// workerListener is a TLS listener on 127.0.0.1 whose accepted
// connections are closed at once.
func workerListener(t *testing.T) (string, *tlsListener) {
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
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return inner.Addr().String(), ln.(*tlsListener)
}

func dialOnce(addr string) error {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "worker.example.com"})
	if err != nil {
		return err
	}
	return c.Close()
}

// inHandshake is how many connections are in their handshake.
func (l *tlsListener) inHandshake() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// eventually polls cond for up to 10 s.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
