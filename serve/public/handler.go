package public

import (
	"context"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/challenge"
)

// serveHTTPS proxies to the mapping's upstream, else the listener's, else
// answers 503. Routing follows the SNI (or the local address) through
// chooseAt, so a request goes to the mapping whose certificate was served.
func (l *listener) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	if testHook != nil {
		testHook("handler")
	}
	v := l.view.Load()
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	e := l.chooseAt(v, r.TLS.ServerName, addrConn{local})
	if e == nil {
		// Logged at WARN when the handshake served the fallback.
		writePage(w, http.StatusMisdirectedRequest)
		return
	}
	upstream := e.upstream()
	if upstream == "" {
		upstream = v.cfg.Upstream
	}
	if upstream == "" {
		// A misconfiguration, so 503 for monitoring to see; the page says
		// nothing of it, the log says what to fix.
		if ok, suppressed := l.pageLog.ShouldLog(e.id(), time.Now()); ok {
			l.log.Warn("no upstream for this mapping or its listener; answered 503", "mapping", e.id(), "sni", r.TLS.ServerName, "suppressed", suppressed)
		}
		writePage(w, http.StatusServiceUnavailable)
		return
	}
	p, err := l.proxy.get(upstream)
	if err != nil {
		l.log.Warn("invalid upstream; answered 502", "mapping", e.id(), "upstream", upstream, "err", err)
		writePage(w, http.StatusBadGateway)
		return
	}
	p.ServeHTTP(w, r)
}

// Public pages are short and neutral: they name no listener, mapping or
// product, and echo nothing the client sent. Operators find the details
// in serve's log and in status.
var pages = map[int]string{
	http.StatusMisdirectedRequest:  "This server has no site for this name.",
	http.StatusServiceUnavailable:  "This site is not available right now.",
	http.StatusBadGateway:          "This site is not available right now.",
	http.StatusGatewayTimeout:      "This site did not answer in time.",
	http.StatusInternalServerError: "Something went wrong. Please try again.",
}

// answerPanic is the answer to a request whose handler panicked (see
// edge.Guard).
func answerPanic(w http.ResponseWriter, _ *http.Request) {
	writePage(w, http.StatusInternalServerError)
}

// writePage answers with code and its neutral page.
func writePage(w http.ResponseWriter, code int) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	text := http.StatusText(code)
	w.Write([]byte("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + text + "</title></head><body>\n<h1>" +
		text + "</h1>\n<p>" + pages[code] + "</p>\n</body></html>\n"))
}

// serveHTTP answers ACME HTTP-01 from the state directory and redirects
// everything else to HTTPS.
func (l *listener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if token, ok := strings.CutPrefix(r.URL.Path, challenge.HTTP01Path); ok {
		l.serveChallenge(r.Context(), w, token)
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	if host == "" {
		http.Error(w, "400 bad request: no Host header", http.StatusBadRequest)
		return
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	_, port, _ := net.SplitHostPort(l.view.Load().cfg.Addr)
	if port != "443" {
		host += ":" + port
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

func (l *listener) serveChallenge(ctx context.Context, w http.ResponseWriter, token string) {
	keyAuth, err := challenge.HTTP01(ctx, l.store, token)
	if err != nil {
		http.Error(w, "404 no such challenge", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(keyAuth)
}
