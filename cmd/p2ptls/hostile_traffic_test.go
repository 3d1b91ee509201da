package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// hostile is a running serve under attack, with a probe that a normal
// client's request still gets through.
type hostile struct {
	p          *publicServe
	web        string
	startRSS   int64
	peakProbe  time.Duration
	probeCount int
}

// rss is serve's resident set size in kB, from /proc/<pid>/status.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// probe is a normal client: a new connection, a full handshake and one
// request, which must complete within 1 s.
func (h *hostile) probe(t *testing.T, during string) {
	t.Helper()
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{ServerName: "app.example.test", InsecureSkipVerify: true}}}
	start := time.Now()
	req, _ := http.NewRequest("GET", "https://"+h.web+"/", nil)
	req.Host = "app.example.test"
	resp, err := c.Do(req)
	took := time.Since(start)
	if err != nil {
		t.Errorf("during %s: a normal request failed after %v: %v", during, took.Round(time.Millisecond), err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "normal" {
		t.Errorf("during %s: normal request got %d %q", during, resp.StatusCode, body)
	}
	h.peakProbe = max(h.peakProbe, took)
	h.probeCount++
	t.Logf("during %s: normal request took %v", during, took.Round(time.Millisecond))
}

// dialMany opens n TCP connections concurrently (a few at a time, so the
// test's own accept queue is not what is measured) and runs f on each.
func dialMany(t *testing.T, addr string, n int, f func(c net.Conn)) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			conns[i] = c
			if f != nil {
				f(c)
			}
		})
	}
	wg.Wait()
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// Hostile clients on one public listener of the real binary: slowloris,
// silent connections, garbage, 1,000 concurrent connections, an HTTP/2
// rapid-reset burst and a hanging upstream. Under each, a normal request
// completes within 1 s, and serve's RSS ends within 2x its start. Every
// loop is bounded in count and time; all traffic stays on 127.0.0.1.
func TestPublicHostileTraffic(t *testing.T) {
	normal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "normal") }))
	defer normal.Close()
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hungMu sync.Mutex
	var hung []net.Conn
	go func() {
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			hungMu.Lock()
			hung = append(hung, c)
			hungMu.Unlock()
		}
	}()
	defer func() {
		hang.Close()
		hungMu.Lock()
		closeAll(hung)
		hungMu.Unlock()
	}()

	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--upstream", normal.URL)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "hang.example.test", "--self-signed", "--upstream", "http://"+hang.Addr().String())
	// Short timeouts keep the test short; the defaults are longer.
	env := append(append([]string{}, p.env...),
		// The handshake timeout stays generous: 1,000 handshakes at once on a
		// loaded 2-core machine under -race take seconds, and a legitimate
		// client must not be dropped for that.
		"P2PTLS_TLS_HANDSHAKE_TIMEOUT=8s", "P2PTLS_READ_HEADER_TIMEOUT=2s", "P2PTLS_IDLE_TIMEOUT=5s",
		"P2PTLS_UPSTREAM_RESPONSE_HEADER_TIMEOUT=1s", "P2PTLS_MAX_CONNS=2000")
	p.serve = startServe(t, env)
	pid := p.serve.cmd.Process.Pid
	h := &hostile{p: p, web: web}
	for range 5 { // warm up: what a serve that has served a little holds
		h.probe(t, "warm-up")
	}
	h.peakProbe = 0
	h.startRSS = rss(t, pid)
	t.Logf("serve RSS at start: %d kB", h.startRSS)
	peakRSS := h.startRSS
	measure := func(what string) {
		r := rss(t, pid)
		peakRSS = max(peakRSS, r)
		t.Logf("%s: serve RSS %d kB", what, r)
	}

	t.Run("slowloris", func(t *testing.T) {
		// 200 TLS connections that trickle their headers, one byte at a
		// time, for longer than the read-header timeout.
		var conns []net.Conn
		var mu sync.Mutex
		dialMany(t, web, 200, func(c net.Conn) {
			tc := tls.Client(c, &tls.Config{ServerName: "app.example.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Errorf("slowloris handshake: %v", err)
				return
			}
			io.WriteString(tc, "GET / HTTP/1.1\r\nHost: app.example.test\r\n")
			mu.Lock()
			conns = append(conns, tc)
			mu.Unlock()
		})
		defer closeAll(conns)
		closed := 0
		for tick := range 12 { // 12 x 250 ms: past the 2 s read-header timeout
			for _, c := range conns {
				if _, err := io.WriteString(c, "X"); err != nil && tick > 0 {
					closed++
				}
			}
			if tick%4 == 1 {
				h.probe(t, "slowloris")
			}
			time.Sleep(250 * time.Millisecond)
		}
		measure("slowloris")
		// Writes into a connection the server closed fail once the RST came.
		t.Logf("slowloris: %d failed writes after the server closed connections", closed)
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil && isTimeout(err) {
				t.Errorf("a slowloris connection is still open after the read-header timeout")
				break
			}
		}
	})

	// Checked at the end, once the handshake timeout has passed.
	var silent []net.Conn
	silentSince := time.Now()
	defer closeAll(silent)
	t.Run("silent connections", func(t *testing.T) {
		silent = dialMany(t, web, 200, nil)
		silentSince = time.Now()
		h.probe(t, "200 silent connections")
		measure("silent")
	})

	t.Run("garbage", func(t *testing.T) {
		conns := dialMany(t, web, 200, func(c net.Conn) {
			junk := make([]byte, 2048)
			rand.Read(junk)
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			c.Write(junk)
		})
		defer closeAll(conns)
		h.probe(t, "garbage")
		measure("garbage")
	})

	t.Run("1000 concurrent connections", func(t *testing.T) {
		var mu sync.Mutex
		var conns []net.Conn
		ok := 0
		dialMany(t, web, 1000, func(c net.Conn) {
			tc := tls.Client(c, &tls.Config{ServerName: "app.example.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			tc.SetDeadline(time.Now().Add(20 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Errorf("handshake of one of 1000 connections: %v", err)
				return
			}
			mu.Lock()
			conns = append(conns, tc)
			ok++
			mu.Unlock()
		})
		defer closeAll(conns)
		if ok != 1000 {
			t.Errorf("%d of 1000 concurrent connections completed their handshake", ok)
		}
		h.probe(t, "1000 open connections")
		measure("1000 connections")
	})

	t.Run("h2 rapid reset", func(t *testing.T) {
		before := strings.Count(p.serve.output(), "level=WARN")
		hungMu.Lock()
		upBefore := len(hung)
		hungMu.Unlock()
		streams := rapidReset(t, web, "hang.example.test", 2000, 10*time.Second)
		// The client is done writing when rapidReset returns, not the
		// server reading: wait (bounded) for the upstream dials it makes.
		var upAfter int
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			hungMu.Lock()
			upAfter = len(hung)
			hungMu.Unlock()
			if upAfter > upBefore || time.Now().After(deadline) {
				break
			}
		}
		// The streams reached the proxy (it dialled the upstream for them),
		// and their resets canceled the upstream requests.
		t.Logf("rapid reset: %d streams opened and reset; the proxy opened %d upstream connections for them", streams, upAfter-upBefore)
		if upAfter == upBefore {
			t.Errorf("no stream of the burst reached the proxy")
		}
		h.probe(t, "h2 rapid reset")
		measure("rapid reset")
		time.Sleep(500 * time.Millisecond) // let handlers see their resets
		if warns := strings.Count(p.serve.output(), "level=WARN") - before; warns > 2 {
			t.Errorf("%d WARN lines from a rapid-reset burst; client resets must log at DEBUG:\n%s", warns, tail(p.serve.output(), 20))
		}
	})

	t.Run("hanging upstream", func(t *testing.T) {
		const n = 20
		codes := make([]int, n)
		var wg, wrote sync.WaitGroup
		wrote.Add(n)
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
					TLSClientConfig: &tls.Config{ServerName: "hang.example.test", InsecureSkipVerify: true}}}
				var once sync.Once
				defer once.Do(wrote.Done)
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(wrote.Done) }})
				req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+web+"/", nil)
				req.Host = "hang.example.test"
				resp, err := c.Do(req)
				if err != nil {
					t.Errorf("request to the hanging upstream: %v", err)
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			})
		}
		wrote.Wait() // every request waits on the upstream now
		h.probe(t, "20 requests waiting on a hanging upstream")
		wg.Wait()
		took := time.Since(start)
		for i, code := range codes {
			if code != http.StatusGatewayTimeout {
				t.Errorf("request %d to the hanging upstream: %d, want 504", i, code)
				break
			}
		}
		t.Logf("hanging upstream: %d requests answered 504 within %v (response-header timeout 1s)", n, took.Round(time.Millisecond))
		if took > 15*time.Second {
			t.Errorf("504s took %v with a 1 s response-header timeout", took)
		}
		measure("hanging upstream")
	})

	// Connections that never sent a ClientHello were closed at the
	// handshake timeout.
	time.Sleep(time.Until(silentSince.Add(8*time.Second + 500*time.Millisecond)))
	for i, c := range silent {
		if c == nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); isTimeout(err) {
			t.Errorf("silent connection %d is still open after the handshake timeout", i)
			break
		}
	}

	// The attack is over: what serve holds comes back down. Idle
	// connections time out (5 s); give the runtime a moment to return
	// memory, bounded.
	var end int64
	deadline := time.Now().Add(15 * time.Second)
	for {
		h.probe(t, "after the attacks")
		end = rss(t, pid)
		if end <= 2*h.startRSS || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("serve RSS: start %d kB, peak %d kB, end %d kB; slowest normal request %v over %d probes",
		h.startRSS, peakRSS, end, h.peakProbe.Round(time.Millisecond), h.probeCount)
	if end > 2*h.startRSS {
		t.Errorf("serve's RSS ended at %d kB, more than twice its start of %d kB", end, h.startRSS)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// rapidReset opens an HTTP/2 connection for sni and sends HEADERS then
// RST_STREAM for up to n streams or until d passes or the server closes
// the connection, and returns how many streams it sent.
func rapidReset(t *testing.T, addr, sni string, n int, d time.Duration) int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("negotiated %q, not h2", conn.ConnectionState().NegotiatedProtocol)
	}
	conn.SetDeadline(time.Now().Add(d + 5*time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Drain what the server sends, or its writes would stall on us.
	go func() {
		rf := http2.NewFramer(io.Discard, conn)
		for {
			if _, err := rf.ReadFrame(); err != nil {
				return
			}
		}
	}()
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", sni}, {":path", "/"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hbuf.Bytes()
	end := time.Now().Add(d)
	sent := 0
	for i := range n {
		if time.Now().After(end) {
			break
		}
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
			break
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
		sent++
	}
	return sent
}
