package public

import (
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"

	"github.com/p2pstream/p2ptls/state"
)

// serveHTTPS proxies to the mapping's upstream, else the listener's, else
// answers with a small status page. Routing follows the SNI, the name the
// certificate was chosen for.
func (l *listener) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	v := l.view.Load()
	e, mapped := v.index.Lookup(r.TLS.ServerName)
	upstream := v.cfg.Upstream
	if mapped && e.m.Upstream != "" {
		upstream = e.m.Upstream
	}
	if !mapped {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusMisdirectedRequest)
		statusPage.Execute(w, pageData{Listener: v.cfg.Name, Host: r.TLS.ServerName})
		return
	}
	if upstream == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusPage.Execute(w, pageData{Listener: v.cfg.Name, Host: r.TLS.ServerName, Mapping: e.m.ID, Source: e.m.Source})
		return
	}
	p, err := l.proxy(upstream)
	if err != nil {
		http.Error(w, "502 bad gateway: invalid upstream", http.StatusBadGateway)
		return
	}
	p.ServeHTTP(w, r)
}

type pageData struct {
	Listener, Host, Mapping, Source string
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>p2ptls</title></head><body>
{{if .Mapping}}<h1>{{.Host}}</h1>
<p>Served by p2ptls listener <b>{{.Listener}}</b> with the {{.Source}} certificate of mapping <b>{{.Mapping}}</b>. No upstream is configured for it.</p>
{{else}}<h1>No certificate mapping</h1>
<p>p2ptls listener <b>{{.Listener}}</b> has no certificate mapping for <b>{{if .Host}}{{.Host}}{{else}}(no SNI){{end}}</b>; it served its fallback certificate.</p>
{{end}}</body></html>
`))

// acmeChallengePrefix is where HTTP-01 validation asks.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// serveHTTP answers ACME HTTP-01 from the state directory and redirects
// everything else to HTTPS.
func (l *listener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if token, ok := strings.CutPrefix(r.URL.Path, acmeChallengePrefix); ok {
		l.serveChallenge(w, token)
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

func (l *listener) serveChallenge(w http.ResponseWriter, token string) {
	if !validToken(token) {
		http.Error(w, "404 no such challenge", http.StatusNotFound)
		return
	}
	keyAuth, err := l.store.Read(state.HTTP01Dir + "/" + token)
	if err != nil {
		http.Error(w, "404 no such challenge", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprint(w, string(keyAuth))
}

// validToken admits ACME tokens (base64url) only, so a request can never
// name another file.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
