package management

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// TestManagementTLSPolicy: TLS 1.2 only with ECDHE and an AEAD (a client
// offering only CBC suites is refused), TLS 1.3, h2, nothing older.
func TestManagementTLSPolicy(t *testing.T) {
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{})
	cbc := []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_256_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	}
	for _, tc := range []struct {
		name     string
		cfg      *tls.Config
		ok       bool
		wantVer  uint16
		wantALPN string
	}{
		{"TLS 1.2 CBC and RSA key exchange only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbc}, false, 0, ""},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false, 0, ""},
		{"TLS 1.2 ECDHE-ECDSA-AES128-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true, tls.VersionTLS12, ""},
		{"TLS 1.2 ECDHE-ECDSA-CHACHA20", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true, tls.VersionTLS12, ""},
		{"TLS 1.3 with h2", &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}}, true, tls.VersionTLS13, "h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.Clone()
			cfg.RootCAs = ls.roots
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ls.addr, cfg)
			if !tc.ok {
				if err == nil {
					st := c.ConnectionState()
					c.Close()
					t.Fatalf("handshake succeeded with %s %s", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if st.Version != tc.wantVer || st.NegotiatedProtocol != tc.wantALPN {
				t.Errorf("negotiated %s ALPN %q", tls.VersionName(st.Version), st.NegotiatedProtocol)
			}
			if st.Version == tls.VersionTLS12 {
				if name := tls.CipherSuiteName(st.CipherSuite); !strings.HasPrefix(name, "TLS_ECDHE_") {
					t.Errorf("suite %s", name)
				}
			}
		})
	}
	// h2 serves real requests (the listener hands net/http its TLS
	// connections itself).
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ls.roots}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(ls.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("h2 /healthz: %s %d %v", resp.Proto, resp.StatusCode, resp.Header)
	}
}

func TestLimitsOf(t *testing.T) {
	set := edge.Limits{HandshakeTimeout: time.Second, ReadHeaderTimeout: 2 * time.Second, IdleTimeout: 3 * time.Second,
		WriteTimeout: 4 * time.Second, MaxHeaderBytes: 5, MaxConns: 6}
	def := edge.DefaultLimits()
	def.WriteTimeout = writeTimeout
	noWrite := set
	noWrite.WriteTimeout = 0
	noWriteWant := set
	noWriteWant.WriteTimeout = writeTimeout
	for _, tc := range []struct {
		name    string
		in, out edge.Limits
	}{
		{"zero: the defaults, with the management write timeout", edge.Limits{}, def},
		{"given: kept", set, set},
		{"write timeout 0: the management one", noWrite, noWriteWant},
	} {
		if got := limitsOf(Options{Limits: tc.in}); got != tc.out {
			t.Errorf("%s: limitsOf(%+v) = %+v, want %+v", tc.name, tc.in, got, tc.out)
		}
	}
	// And Listen puts them on the server.
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, set)
	s := ls.m.srv
	if s.ReadHeaderTimeout != set.ReadHeaderTimeout || s.IdleTimeout != set.IdleTimeout || s.WriteTimeout != set.WriteTimeout ||
		s.MaxHeaderBytes != set.MaxHeaderBytes || s.ReadTimeout != readTimeout {
		t.Errorf("server timeouts %v %v %v %v %d", s.ReadHeaderTimeout, s.ReadTimeout, s.IdleTimeout, s.WriteTimeout, s.MaxHeaderBytes)
	}
}

// testLimits are short limits, so that the tests of each one run fast;
// the others stay long, so that only the one under test can act.
func testLimits(change func(*edge.Limits)) edge.Limits {
	l := edge.Limits{HandshakeTimeout: 30 * time.Second, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10, MaxConns: 1000}
	change(&l)
	return l
}

// TestHandshakeTimeoutClosesSilentConnections: a client that connects and
// never sends a ClientHello is cut after the handshake timeout, although
// the read-header timeout (which alone bounds net/http's handshake) is
// much longer.
func TestHandshakeTimeoutClosesSilentConnections(t *testing.T) {
	const hs = 500 * time.Millisecond
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, testLimits(func(l *edge.Limits) { l.HandshakeTimeout = hs }))
	c := ls.dialRaw()
	if took := waitClosed(t, c, 15*time.Second); took < hs-50*time.Millisecond {
		t.Errorf("closed after %v, before the handshake timeout %v", took, hs)
	}
	// One that stops mid-handshake too: a ClientHello's first bytes.
	c = ls.dialRaw()
	if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 15*time.Second)
	if err := ls.healthzWithin(5 * time.Second); err != nil {
		t.Errorf("/healthz: %v", err)
	}
}

// TestSlowHeadersAreCut: a client that completes the handshake and sends
// its headers byte by byte (slowloris) is cut after the read-header
// timeout.
func TestSlowHeadersAreCut(t *testing.T) {
	const rht = 500 * time.Millisecond
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, testLimits(func(l *edge.Limits) { l.ReadHeaderTimeout = rht }))
	c := ls.dialTLS()
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		c.SetReadDeadline(start.Add(15 * time.Second))
		_, err := io.Copy(io.Discard, c)
		closed <- err
	}()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}
	// Trickle a byte every 100 ms, bounded, until the server hangs up.
	var cut error
	done := false
	for i := 0; i < 150 && !done; i++ {
		select {
		case cut = <-closed:
			done = true
		case <-time.After(100 * time.Millisecond):
			c.Write([]byte("X")) // an error here is the close, which the read reports
		}
	}
	took := time.Since(start)
	var ne net.Error
	if !done || (errors.As(cut, &ne) && ne.Timeout()) {
		t.Fatalf("the server did not cut the slow headers within 15 s (%v)", cut)
	}
	if took < rht-50*time.Millisecond {
		t.Errorf("cut after %v, before the read-header timeout %v", took, rht)
	}
}

// TestIdleKeepAliveIsClosed: a keep-alive connection with no next request
// is closed after the idle timeout.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	const idle = 500 * time.Millisecond
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, testLimits(func(l *edge.Limits) { l.IdleTimeout = idle }))
	c := ls.dialTLS()
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("/healthz: %d close=%v", resp.StatusCode, resp.Close)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(15 * time.Second))
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the idle connection stayed open")
	}
	if took := time.Since(start); took < idle-50*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout %v", took, idle)
	}
}

// TestMaxHeaderBytes: headers beyond the limit are refused with 431.
func TestMaxHeaderBytes(t *testing.T) {
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, testLimits(func(l *edge.Limits) { l.MaxHeaderBytes = 4 << 10 }))
	// net/http allows 4 KiB of slack over MaxHeaderBytes.
	resp, _ := ls.do("GET", "/healthz", map[string]string{"X-Big": strings.Repeat("a", 16<<10)}, "")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB of headers: %d", resp.StatusCode)
	}
	resp, _ = ls.do("GET", "/healthz", map[string]string{"X-Small": strings.Repeat("a", 1<<10)}, "")
	if resp.StatusCode != 200 {
		t.Errorf("1 KiB of headers: %d", resp.StatusCode)
	}
}

// TestMaxConnsCapsOpenConnections: with the cap reached by connections in
// their handshake, a new client waits; once they close, it is served.
func TestMaxConnsCapsOpenConnections(t *testing.T) {
	const max = 3
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, testLimits(func(l *edge.Limits) { l.MaxConns = max }))
	var held []net.Conn
	for range max {
		held = append(held, ls.dialRaw())
	}
	// The accept of the held connections is asynchronous: allow it.
	time.Sleep(200 * time.Millisecond)
	if err := ls.healthzWithin(500 * time.Millisecond); err == nil {
		t.Fatalf("/healthz was served beyond the cap of %d connections", max)
	}
	for _, c := range held {
		c.Close()
	}
	if err := ls.healthzWithin(5 * time.Second); err != nil {
		t.Errorf("/healthz once the connections closed: %v", err)
	}
}

// TestHealthzUnderHostileConnections: 100 connections that never send a
// ClientHello and 100 that trickle their headers are open, and a normal
// request still completes within 1 s.
func TestHealthzUnderHostileConnections(t *testing.T) {
	const n = 100
	ta := newTestAPI(t)
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{})
	for range n {
		ls.dialRaw()
	}
	for i := range n {
		c := ls.dialTLS()
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow-%d: ", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := ls.healthzWithin(time.Second); err != nil {
			t.Errorf("/healthz #%d with %d hostile connections open: %v", i, 2*n, err)
		}
	}
}

// TestPanicInAHandlerIsRecovered: a handler that panics answers 500 (the
// API's JSON error shape under /api/, plain text elsewhere), the panic is
// logged at ERROR and counted, and the listener keeps serving. A panic
// after the answer began cuts that connection only.
func TestPanicInAHandlerIsRecovered(t *testing.T) {
	ta := newTestAPI(t)
	routes := func(o *Options) {
		o.testRoutes = func(mux *http.ServeMux) {
			mux.HandleFunc("GET /api/v1/test-panic", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Location", "/leaked")
				panic("test panic in an API handler")
			})
			mux.HandleFunc("GET /ui/test-panic", func(http.ResponseWriter, *http.Request) { panic("test panic in a UI handler") })
			mux.HandleFunc("GET /test-panic-late", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Length", "100")
				w.WriteHeader(200)
				w.Write([]byte("partial"))
				panic("test panic after the answer began")
			})
		}
	}
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{}, routes)
	before := edge.Panics()

	resp, body := ls.do("GET", "/api/v1/test-panic", nil, "")
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Location") != "" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("API panic: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	answer{status: resp.StatusCode, body: body}.errorBody(t)
	if strings.Contains(body, "test panic") {
		t.Errorf("the answer shows the panic: %s", body)
	}

	resp, body = ls.do("GET", "/ui/test-panic", nil, "")
	if resp.StatusCode != 500 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || !strings.Contains(body, "internal error") {
		t.Errorf("UI panic: %d %v %s", resp.StatusCode, resp.Header, body)
	}

	// On a connection of its own: the client would retry on a reused one.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ls.roots}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(ls.base + "/test-panic-late"); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("a panic after the answer began gave a complete answer")
		}
	}

	if got := edge.Panics() - before; got != 3 {
		t.Errorf("edge.Panics() rose by %d, want 3:\n%s", got, ta.logs.String())
	}
	logs := ta.logs.String()
	for _, want := range []string{"level=ERROR", "recovered from a panic", "test panic in an API handler", "test panic in a UI handler", "GET /api/v1/test-panic"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	for i := range 3 {
		if err := ls.healthzWithin(5 * time.Second); err != nil {
			t.Errorf("/healthz #%d after the panics: %v", i, err)
		}
	}
}
