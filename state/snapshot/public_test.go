package snapshot_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/public"
	"github.com/p2pstream/p2ptls/state"
)

// serve runs the public listeners on s until the test ends or stop is
// called.
func serve(t *testing.T, s state.Store) (stop func()) {
	t.Helper()
	srv := public.New(public.Options{Store: s, Log: slog.New(slog.DiscardHandler)})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatalf("start the public listeners: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			stop()
		}
	})
	return stop
}

// handshake is a real TLS handshake with addr for SNI host; it returns the
// names of the certificate served.
func handshake(t *testing.T, addr, host string) []string {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake with %s for %s: %v", addr, host, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].DNSNames
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serve's public listeners on the snapshot store: they keep serving when
// the primary is cut, and a serve started while it is down serves the copy.
func TestPublicServesFromSnapshot(t *testing.T) {
	p := newPrimary(t)
	addr := freeAddr(t)
	seed(t, p, addr, "a")
	dir := filepath.Join(t.TempDir(), "snapshot")
	s := open(t, p, dir)
	stop := serve(t, s)
	if names := handshake(t, addr, "a.example.com"); !slices.Contains(names, "a.example.com") {
		t.Fatalf("served %v for a.example.com", names)
	}

	p.cut.Store(true)
	eventually(t, "the cut is noticed", func() bool { return !s.Health().Connected })
	if names := handshake(t, addr, "a.example.com"); !slices.Contains(names, "a.example.com") {
		t.Errorf("with the primary cut, served %v for a.example.com", names)
	}
	stop()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart while the primary is down: serve loads the copy.
	s = open(t, p, dir)
	serve(t, s)
	if names := handshake(t, addr, "a.example.com"); !slices.Contains(names, "a.example.com") {
		t.Errorf("after a restart with the primary down, served %v for a.example.com", names)
	}
	// Back: a mapping another replica added meanwhile is served.
	addMapping(t, p.Dir, "b")
	p.cut.Store(false)
	eventually(t, "b is served once the primary is back", func() bool {
		return slices.Contains(handshake(t, addr, "b.example.com"), "b.example.com")
	})
}
