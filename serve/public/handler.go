package public

import (
	"html/template"
	"net"
	"net/http"
	"strings"

	"github.com/p2pstream/p2ptls/state/challenge"
)

// serveHTTPS proxies to the mapping's upstream, else the listener's, else
// answers with a small status page. Routing follows the SNI, the name the
// certificate was chosen for.
func (l *listener) serveHTTPS(w http.ResponseWriter, r *http.Request) {
	v := l.view.Load()
	e, mapped := v.index.Lookup(r.TLS.ServerName)
	upstream := v.cfg.Upstream
	if mapped && e.upstream != "" {
		upstream = e.upstream
	}
	if !mapped {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusMisdirectedRequest)
		statusPage.Execute(w, pageData{Listener: v.cfg.Name, Host: r.TLS.ServerName})
		return
	}
	if upstream == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusPage.Execute(w, pageData{Listener: v.cfg.Name, Host: r.TLS.ServerName, Mapping: e.id, Source: e.source})
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

// serveHTTP answers ACME HTTP-01 from the state directory and redirects
// everything else to HTTPS.
func (l *listener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if token, ok := strings.CutPrefix(r.URL.Path, challenge.HTTP01Path); ok {
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
	keyAuth, err := challenge.HTTP01(l.store, token)
	if err != nil {
		http.Error(w, "404 no such challenge", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(keyAuth)
}
