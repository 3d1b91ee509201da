package acmetest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is what a FaultProxy answers an ACME request with instead of
// passing it to pebble.
type Fault struct {
	// Status, Type and Detail make the RFC 7807 problem document.
	Status int
	Type   string
	Detail string
	// RetryAfter, when not empty, is sent as the Retry-After header (seconds
	// or an HTTP date), as Let's Encrypt does with a rateLimited answer.
	RetryAfter string
}

// RateLimited is Let's Encrypt's answer to an order over a limit: 429,
// urn:ietf:params:acme:error:rateLimited, and a Retry-After of after
// (rounded up to whole seconds; none when after is 0).
func RateLimited(after time.Duration) Fault {
	f := Fault{Status: http.StatusTooManyRequests, Type: "urn:ietf:params:acme:error:rateLimited",
		Detail: "too many new orders (300) from this account in the last 3h0m0s, retry after " +
			time.Now().Add(after).UTC().Format("2006-01-02 15:04:05 UTC") + ": see https://letsencrypt.org/docs/rate-limits/#new-orders-per-account"}
	if after > 0 {
		f.RetryAfter = strconv.Itoa(int((after + time.Second - 1) / time.Second))
	}
	return f
}

// PausedURL is the unpause link of the Paused answer.
const PausedURL = "https://portal.letsencrypt.org/sfe/v1/unpause?jwt=eyJhbGciOiJIUzI1NiJ9.test.sig"

// Paused is Let's Encrypt's answer to a new order from an account paused
// for hostnames that keep failing validation: boulder's wfe2 NewOrder
// sends probs.Paused, a 429 rateLimited problem without Retry-After whose
// detail names the hostnames and the self-service unpause link.
func Paused(hosts ...string) Fault {
	return Fault{Status: http.StatusTooManyRequests, Type: "urn:ietf:params:acme:error:rateLimited",
		Detail: fmt.Sprintf("Your account is temporarily prevented from requesting certificates for %s and possibly others. Please visit: %s",
			strings.Join(hosts, ", "), PausedURL)}
}

// FaultProxy is an HTTPS reverse proxy on 127.0.0.1 in front of pebble that
// answers chosen ACME requests with a Fault. It serves pebble's own
// localhost certificate, so Env.CAFile trusts it, and forwards the Host
// header unchanged: pebble builds every URL it hands out (directory,
// orders, finalize, certificates) from the request's Host, so a client
// that starts at DirectoryURL stays on the proxy for the whole order.
type FaultProxy struct {
	// DirectoryURL is the proxy's directory, for "acme account register
	// --directory" (with --ca-file Env.CAFile).
	DirectoryURL string

	mu      sync.Mutex
	faults  map[string]Fault         // by endpoint: "new-order", "finalize"
	holds   map[string]chan struct{} // by endpoint; closed on Release
	waiting map[string]int           // by endpoint: requests in a hold now
	counts  map[string]int           // by endpoint: POSTs seen
	faulted atomic.Int64
	srv     *http.Server
	ln      net.Listener
}

// StartFaultProxy starts a proxy in front of e's pebble; t.Cleanup stops it.
func (e *Env) StartFaultProxy(t testing.TB) *FaultProxy {
	t.Helper()
	target, err := url.Parse(e.DirectoryURL)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	certs := filepath.Join(filepath.Dir(e.CAFile), "localhost")
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "cert.pem"), filepath.Join(certs, "key.pem"))
	if err != nil {
		t.Fatalf("acmetest: fault proxy certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	p := &FaultProxy{faults: map[string]Fault{}, holds: map[string]chan struct{}{}, waiting: map[string]int{}, counts: map[string]int{}, ln: ln,
		DirectoryURL: "https://" + ln.Addr().String() + target.Path}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host})
			r.Out.Host = r.In.Host // pebble's URLs then name the proxy
		},
		Transport: e.client.Transport,
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(w, r, rp) }),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = p.srv.Close() })
	return p
}

// Set makes the proxy answer every request to endpoint ("new-order",
// "finalize" or "challenge"; see endpointOf) with f until Clear.
func (p *FaultProxy) Set(endpoint string, f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[endpoint] = f
}

// Clear passes every request to pebble again.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.faults)
}

// Faulted counts the requests answered with a fault.
func (p *FaultProxy) Faulted() int { return int(p.faulted.Load()) }

// Hold makes every POST to endpoint ("new-order", "finalize" or
// "challenge", the request that starts a validation) wait before it
// reaches pebble, until Release or until its client goes away: a killed
// client's request never reaches pebble.
func (p *FaultProxy) Hold(endpoint string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holds[endpoint] == nil {
		p.holds[endpoint] = make(chan struct{})
	}
}

// Release lets the requests held at endpoint, and later ones, through.
func (p *FaultProxy) Release(endpoint string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.holds[endpoint]; h != nil {
		close(h)
		delete(p.holds, endpoint)
	}
}

// Waiting is how many requests to endpoint wait in a Hold now.
func (p *FaultProxy) Waiting(endpoint string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting[endpoint]
}

// Count is how many POSTs to endpoint the proxy received (passed on,
// faulted or held): Count("new-order") is the number of orders asked for.
func (p *FaultProxy) Count(endpoint string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[endpoint]
}

// endpointOf names the endpoint of a request path, "" for the others:
// pebble's are /order-plz (new order), /finalize-order/ID and /chalZ/ID.
func endpointOf(path string) string {
	switch {
	case path == "/order-plz":
		return "new-order"
	case strings.HasPrefix(path, "/finalize-order/"):
		return "finalize"
	case strings.HasPrefix(path, "/chalZ/"):
		return "challenge"
	}
	return ""
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request, rp *httputil.ReverseProxy) {
	endpoint := endpointOf(r.URL.Path)
	if endpoint == "" || r.Method != http.MethodPost {
		rp.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	p.counts[endpoint]++
	hold := p.holds[endpoint]
	p.waiting[endpoint]++
	p.mu.Unlock()
	if hold != nil {
		// The server notices a client that went away only once the body
		// is read (HTTP/1.1's background read): read it first.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			body = nil
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}
	p.mu.Lock()
	p.waiting[endpoint]--
	f, ok := p.faults[endpoint]
	p.mu.Unlock()
	if r.Context().Err() != nil {
		return // the client went away while held
	}
	if !ok {
		rp.ServeHTTP(w, r)
		return
	}
	p.faulted.Add(1)
	// A problem answer still carries a fresh nonce, as every ACME answer
	// does (RFC 8555 section 6.5): take one from pebble.
	if nonce := p.nonce(r, rp); nonce != "" {
		w.Header().Set("Replay-Nonce", nonce)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(f.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": f.Type, "detail": f.Detail, "status": f.Status})
}

// nonce asks pebble for a new nonce through the proxy's transport.
func (p *FaultProxy) nonce(r *http.Request, rp *httputil.ReverseProxy) string {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodHead, "https://"+r.Host+"/nonce-plz", nil)
	if err != nil {
		return ""
	}
	rec := &headerRecorder{h: http.Header{}}
	rp.ServeHTTP(rec, req)
	return rec.h.Get("Replay-Nonce")
}

// headerRecorder keeps the headers of an answer and drops its body.
type headerRecorder struct {
	h    http.Header
	code int
}

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *headerRecorder) WriteHeader(code int)        { r.code = code }
