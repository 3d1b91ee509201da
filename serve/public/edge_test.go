package public

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// panicAt names the testHook place that panics next ("" for none). The
// hook is installed before any test starts a listener, so no goroutine
// races its assignment.
var panicAt atomic.Value

func init() {
	panicAt.Store("")
	testHook = func(where string) {
		if panicAt.Load() == where {
			panic("injected panic in " + where)
		}
	}
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	var buf logBuffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

func (f *fixture) listener() *listener {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.listeners["web"]
}

// A session survives one ticket key rotation (the previous key still
// decrypts) and not two.
func TestTicketKeysRotateDaily(t *testing.T) {
	f := newFixture(t, []state.Mapping{{ID: "app", Hosts: []string{"app.example.com"}, Upstream: upstream(t, "A")}}, nil, Options{})
	l := f.listener()
	cfg := &tls.Config{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if _, _, _, err := f.get(cfg, "app.example.com"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i, want := range []bool{true, true, false} {
		// i = 0: not yet due; 1: one rotation; 2: a second rotation without
		// a new session in between.
		if err := l.tickets.rotate(l.tls, now.Add(time.Duration(i)*(ticketKeyRotation+time.Minute))); err != nil {
			t.Fatal(err)
		}
		probe := &tls.Config{ClientSessionCache: &anyNameCache{s: mustGet(cfg.ClientSessionCache, "app.example.com")}}
		cs, _, _, err := f.get(probe, "app.example.com")
		if err != nil {
			t.Fatal(err)
		}
		if cs.DidResume != want {
			t.Errorf("after %d rotation(s): resumed %v, want %v", i, cs.DidResume, want)
		}
	}
}

func mustGet(c tls.ClientSessionCache, key string) *tls.ClientSessionState {
	for _, k := range []string{key, key + ":443"} {
		if s, ok := c.Get(k); ok {
			return s
		}
	}
	return nil
}

// TLS 1.2 offers only ECDHE with AEAD suites: a client with only a CBC
// suite (what testssl flags as LUCKY13) fails, one with GCM succeeds.
func TestTLS12PolicyRefusesCBC(t *testing.T) {
	f := newFixture(t, []state.Mapping{{ID: "app", Hosts: []string{"app.example.com"}, Upstream: upstream(t, "A")}}, nil, Options{})
	for _, tc := range []struct {
		suite uint16
		ok    bool
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
	} {
		cfg := &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tc.suite}}
		cs, _, _, err := f.get(cfg, "app.example.com")
		if (err == nil) != tc.ok {
			t.Errorf("TLS 1.2 with only %s: err %v, want success %v", tls.CipherSuiteName(tc.suite), err, tc.ok)
		}
		if err == nil && cs.CipherSuite != tc.suite {
			t.Errorf("negotiated %s", tls.CipherSuiteName(cs.CipherSuite))
		}
	}
	cs, _, _, err := f.get(&tls.Config{MaxVersion: tls.VersionTLS11}, "app.example.com")
	if err == nil {
		t.Errorf("TLS 1.1 accepted: %s", tls.VersionName(cs.Version))
	}
}

// An exact mapping without a usable certificate does not hide the wildcard
// that covers it: the wildcard's certificate is served, the request goes to
// the wildcard's upstream, and status says so until the exact mapping has
// its certificate.
func TestWildcardStandsInForCertificateLessHost(t *testing.T) {
	f := newFixture(t, []state.Mapping{
		{ID: "pending", Hosts: []string{"dns.example.com"}, Upstream: upstream(t, "D")},
		{ID: "broken", Hosts: []string{"broken.example.com"}, Upstream: upstream(t, "X")},
		{ID: "wild", Hosts: []string{"*.example.com"}, Upstream: upstream(t, "W")},
		{ID: "lonely", Hosts: []string{"lonely.example.org"}, Upstream: upstream(t, "L")},
	}, map[string]bool{"pending": true, "broken": true, "lonely": true}, Options{})
	md := filepath.Join(f.dir, filepath.FromSlash(mappings.MappingDir("broken")))
	os.MkdirAll(md, state.DirMode)
	os.WriteFile(filepath.Join(md, mappings.CertFileName), []byte("not a certificate"), state.PublicMode)
	os.WriteFile(filepath.Join(md, mappings.KeyFileName), []byte("not a key"), state.SecretMode)

	for _, tc := range []struct{ sni, wantSAN, body string }{
		{"dns.example.com", "*.example.com", "W"},
		{"DNS.example.com.", "*.example.com", "W"},
		{"broken.example.com", "*.example.com", "W"},
		{"lonely.example.org", "p2ptls-fallback.invalid", ""},
	} {
		cs, resp, body, err := f.get(&tls.Config{}, tc.sni)
		if err != nil {
			t.Fatal(err)
		}
		if san := cs.PeerCertificates[0].DNSNames; len(san) != 1 || san[0] != tc.wantSAN {
			t.Errorf("%s: served a certificate for %v, want %s", tc.sni, san, tc.wantSAN)
		}
		if tc.body != "" && body != tc.body {
			t.Errorf("%s: routed to %q, want %q", tc.sni, body, tc.body)
		}
		if tc.body == "" && resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("%s: status %d, want 421", tc.sni, resp.StatusCode)
		}
	}
	by := f.s.Status().Listeners[0].ServedByWildcard
	if len(by) != 2 || by["dns.example.com"] != "wild" || by["broken.example.com"] != "wild" {
		t.Errorf("served_by_wildcard = %v", by)
	}

	// The certificate arrives: the exact mapping serves again.
	f.writeCert(f.cfg.Mappings[0])
	f.reload()
	cs, _, body, err := f.get(&tls.Config{}, "dns.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if san := cs.PeerCertificates[0].DNSNames; san[0] != "dns.example.com" || body != "D" {
		t.Errorf("after the certificate arrived: served %v, routed to %q", san, body)
	}
	if by := f.s.Status().Listeners[0].ServedByWildcard; len(by) != 0 {
		t.Errorf("served_by_wildcard after the certificate arrived = %v", by)
	}
}

// Choosing the mapping and handing out a hot certificate allocate nothing.
func TestHandshakePathDoesNotAllocate(t *testing.T) {
	f := newFixture(t, []state.Mapping{
		{ID: "pending", Hosts: []string{"dns.example.com"}},
		{ID: "wild", Hosts: []string{"*.example.com"}},
		{ID: "app", Hosts: []string{"app.example.com"}},
	}, map[string]bool{"pending": true}, Options{})
	l := f.listener()
	for _, name := range []string{"app.example.com", "x.example.com", "dns.example.com"} {
		hello := &tls.ClientHelloInfo{ServerName: name}
		if _, err := l.getCertificate(hello); err != nil { // loads and makes it hot
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { l.getCertificate(hello) }); n != 0 {
			t.Errorf("getCertificate(%s) allocates %v times", name, n)
		}
	}
}

// Public pages name nothing of serve, 503 without an upstream, and every
// response carries nosniff unless the upstream set its own.
func TestNeutralPagesAndNosniff(t *testing.T) {
	own := httpServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		io.WriteString(w, "own")
	}))
	plain := freeLocalAddr(t)
	log, logs := newLog()
	f := newFixture(t, []state.Mapping{
		{ID: "bare-mapping", Hosts: []string{"bare.example.com"}},
		{ID: "proxied", Hosts: []string{"proxied.example.com"}, Upstream: upstream(t, "P")},
		{ID: "own", Hosts: []string{"own.example.com"}, Upstream: own},
	}, nil, Options{Log: log})
	f.cfg.Listeners[0].HTTPAddr = plain
	f.cfg.Listeners[0].Name = "web"
	stopServer(f.s)
	f.s = New(Options{Store: f.store, Log: log})
	if err := state.SaveConfig(context.Background(), f.store, f.cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sni  string
		code int
		body string
	}{
		{"bare.example.com", http.StatusServiceUnavailable, ""},
		{"nothing.example.net", http.StatusMisdirectedRequest, ""},
		{"proxied.example.com", 200, "P"},
		{"own.example.com", 200, "own"},
	} {
		_, resp, body, err := f.get(&tls.Config{}, tc.sni)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.sni, resp.StatusCode, body, tc.code, tc.body)
		}
		if v := resp.Header.Values("X-Content-Type-Options"); len(v) != 1 || v[0] != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", tc.sni, v)
		}
		low := strings.ToLower(body)
		for _, leak := range []string{"web", "bare", "p2ptls", "mapping", "listener", "nothing", "example"} {
			if tc.body == "" && strings.Contains(low, leak) {
				t.Errorf("%s: page %q names %q", tc.sni, body, leak)
			}
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "mapping=bare-mapping") {
		t.Errorf("the 503 is not logged for the operator:\n%s", logs)
	}
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/x", "/.well-known/acme-challenge/none"} {
		resp, err := noRedirect.Get("http://" + plain + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("HTTP %s (%d): no nosniff", path, resp.StatusCode)
		}
	}
}

func httpServer(t *testing.T, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// hangingUpstream accepts connections and never answers.
func hangingUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String()
}

// A hanging upstream is answered with 504 after the response-header
// timeout, a refused one with 502, both logged at WARN; a client that goes
// away is logged at DEBUG only.
func TestUpstreamTimeoutsAndClientResets(t *testing.T) {
	refused := freeLocalAddr(t)
	log, logs := newLog()
	lim := edge.Limits{UpstreamDialTimeout: time.Second, UpstreamResponseHeaderTimeout: 300 * time.Millisecond}
	f := newFixture(t, []state.Mapping{
		{ID: "hang", Hosts: []string{"hang.example.com"}, Upstream: hangingUpstream(t)},
		{ID: "refused", Hosts: []string{"refused.example.com"}, Upstream: "http://" + refused},
	}, nil, Options{Log: log, Limits: lim})
	start := time.Now()
	_, resp, _, err := f.get(&tls.Config{}, "hang.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) > 5*time.Second {
		t.Errorf("hanging upstream: %d after %v, want 504 after about %v", resp.StatusCode, time.Since(start), lim.UpstreamResponseHeaderTimeout)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("504 without nosniff")
	}
	if _, resp, _, err = f.get(&tls.Config{}, "refused.example.com"); err != nil || resp.StatusCode != http.StatusBadGateway {
		t.Errorf("refused upstream: %v %v, want 502", resp, err)
	}
	out := logs.String()
	if !strings.Contains(out, `level=WARN msg="upstream timed out"`) || !strings.Contains(out, `level=WARN msg="upstream unreachable"`) {
		t.Errorf("upstream failures not logged at WARN:\n%s", out)
	}

	// Clients that give up before the upstream answers: DEBUG, never WARN.
	f.listener().proxy.transport.ResponseHeaderTimeout = time.Minute
	before := strings.Count(logs.String(), "level=WARN")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "hang.example.com"}, ForceAttemptHTTP2: true}}
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+f.addr()+"/", nil)
		req.Host = "hang.example.com"
		if _, err := client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("request to the hanging upstream: %v", err)
		}
		cancel()
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), "client went away") < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "level=DEBUG msg=\"client went away"); n < 5 {
		t.Errorf("%d client resets logged at DEBUG, want 5:\n%s", n, logs)
	}
	if after := strings.Count(logs.String(), "level=WARN"); after != before {
		t.Errorf("client resets logged at WARN:\n%s", logs)
	}
}

// The listener's limits: a connection that never sends a ClientHello, or
// sends headers too slowly, is closed at its timeout; oversized headers get
// 431; the connection cap makes further clients wait, not fail.
func TestListenerLimits(t *testing.T) {
	lim := edge.Limits{HandshakeTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond, MaxHeaderBytes: 4096, MaxConns: 2}
	f := newFixture(t, []state.Mapping{{ID: "app", Hosts: []string{"app.example.com"}, Upstream: upstream(t, "A")}}, nil, Options{Limits: lim})
	closedWithin := func(c net.Conn, d time.Duration) error {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("still open after %v", d)
		}
		return nil
	}
	// Two silent connections fill the cap.
	var silent []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	// A third client waits for a slot, then succeeds.
	start := time.Now()
	if _, resp, body, err := f.get(&tls.Config{}, "app.example.com"); err != nil || body != "A" {
		t.Fatalf("third client: %v %v %q", resp, err, body)
	}
	if waited := time.Since(start); waited < lim.HandshakeTimeout/2 {
		t.Errorf("third client served after %v; the cap of 2 should have made it wait for a silent connection to time out", waited)
	}
	for i, c := range silent {
		if err := closedWithin(c, 5*time.Second); err != nil {
			t.Errorf("silent connection %d: %v", i, err)
		}
	}

	// Slow headers.
	conn, err := tls.Dial("tcp", f.addr(), &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: app.example.com\r\n")
	if err := closedWithin(conn, 5*time.Second); err != nil {
		t.Errorf("slow headers: %v", err)
	}

	// Oversized headers.
	conn2, err := tls.Dial("tcp", f.addr(), &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10))
	resp, err := http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB of headers: %v %v, want 431", resp, err)
	}
}

// A panic in a handler, in certificate selection or in a reload is
// recovered and counted; the listener keeps serving.
func TestPanicsAreRecoveredAndCounted(t *testing.T) {
	log, logs := newLog()
	f := newFixture(t, []state.Mapping{{ID: "app", Hosts: []string{"app.example.com"}, Upstream: upstream(t, "A")}}, nil, Options{Log: log})
	t.Cleanup(func() { panicAt.Store("") })
	for _, where := range []string{"handler", "certificate", "poll"} {
		before := edge.Panics()
		panicAt.Store(where)
		switch where {
		case "handler":
			if _, resp, _, err := f.get(&tls.Config{}, "app.example.com"); err != nil || resp.StatusCode != 500 {
				t.Errorf("panicking handler: %v %v, want 500", resp, err)
			}
		case "certificate":
			if _, _, _, err := f.get(&tls.Config{}, "app.example.com"); err == nil {
				t.Error("handshake with a panicking certificate selection succeeded")
			}
		case "poll":
			f.s.pollOnce(context.Background(), true)
		}
		panicAt.Store("")
		if edge.Panics() != before+1 {
			t.Errorf("%s: Panics() = %d, want %d", where, edge.Panics(), before+1)
		}
		if _, _, body, err := f.get(&tls.Config{}, "app.example.com"); err != nil || body != "A" {
			t.Errorf("after a panic in %s: %q %v", where, body, err)
		}
	}
	f.s.pollOnce(context.Background(), true) // the lock was released after the panic
	if st := f.s.Status(); st.Panics != edge.Panics() || st.Panics < 3 {
		t.Errorf("status panics = %d, edge.Panics() = %d", st.Panics, edge.Panics())
	}
	for _, where := range []string{"public HTTPS handler", "public certificate selection", "state reload"} {
		logged := false
		for _, line := range strings.Split(logs.String(), "\n") {
			logged = logged || strings.Contains(line, "level=ERROR") && strings.Contains(line, `in="`+where) && strings.Contains(line, "stack=")
		}
		if !logged {
			t.Errorf("panic in %s not logged at ERROR with its stack:\n%s", where, logs)
		}
	}
}
