package public

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// fixture is a state directory with one listener "web" and a running
// Server over it, for tests that talk to a real listener on 127.0.0.1.
type fixture struct {
	t     *testing.T
	dir   string
	store *state.Dir
	cfg   *state.Config
	s     *Server
}

// upstream is a test upstream that answers with its name.
func upstream(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

// newFixture writes cfg's mappings (each with a self-signed certificate for
// its hosts, unless its id is in noCert) and starts a Server with opts.
func newFixture(t *testing.T, mappings []state.Mapping, noCert map[string]bool, opts Options) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	f := &fixture{t: t, dir: dir, store: state.OpenDir(dir, time.Second)}
	f.cfg = &state.Config{SchemaVersion: state.SchemaVersion,
		Listeners: []state.Listener{{Name: "web", Addr: freeLocalAddr(t)}}}
	for _, m := range mappings {
		m.Listener = "web"
		if m.Source == "" {
			m.Source = state.SourceManual
		}
		f.cfg.Mappings = append(f.cfg.Mappings, m)
		if !noCert[m.ID] {
			f.writeCert(m)
		}
	}
	if err := state.SaveConfig(context.Background(), f.store, f.cfg); err != nil {
		t.Fatal(err)
	}
	opts.Store = f.store
	if opts.Log == nil {
		opts.Log = discardLog
	}
	f.s = New(opts)
	if err := f.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(f.s) })
	return f
}

// writeCert gives mapping m a new self-signed certificate for its hosts.
func (f *fixture) writeCert(m state.Mapping) {
	f.t.Helper()
	kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), time.Now(), 30*24*time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := writePair(f.dir, m.ID, kp.CertPEM, kp.KeyPEM); err != nil {
		f.t.Fatal(err)
	}
}

// reload saves cfg (a new p2ptls.toml changes the revision) and polls as
// the Run loop does when the store signals a change.
func (f *fixture) reload() {
	f.t.Helper()
	if err := state.SaveConfig(context.Background(), f.store, f.cfg); err != nil {
		f.t.Fatal(err)
	}
	f.s.mu.Lock()
	f.s.poll(context.Background(), true)
	f.s.mu.Unlock()
}

func (f *fixture) addr() string {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.listeners["web"].addr.String()
}

// get sends one HTTP/1.1 request on a new TLS connection for sni with c
// (ServerName is set here) and returns the connection state and response.
func (f *fixture) get(c *tls.Config, sni string) (tls.ConnectionState, *http.Response, string, error) {
	c = c.Clone()
	c.ServerName = sni
	c.InsecureSkipVerify = true
	c.NextProtos = []string{"http/1.1"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", f.addr(), c)
	if err != nil {
		return tls.ConnectionState{}, nil, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
	b, err := io.ReadAll(conn)
	if err != nil {
		return conn.ConnectionState(), nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(b))), nil)
	if err != nil {
		return conn.ConnectionState(), nil, "", fmt.Errorf("response %q: %w", b, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return conn.ConnectionState(), resp, string(body), nil
}
