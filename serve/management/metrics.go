package management

import (
	"crypto/x509"
	"net/http"
)

// requireBearer admits a request with a valid admin token in
// "Authorization: Bearer", as requireToken does, but never by a UI
// session: /metrics is for scrapers, and a browser's cookie must not
// open it to a page that makes the browser ask.
func requireBearer(o Options, next http.Handler) http.Handler {
	check := requireToken(o, nil, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Cookie") != "" {
			r = r.Clone(r.Context())
			r.Header.Del("Cookie") // so requireToken never looks up a session
		}
		check.ServeHTTP(w, r)
	})
}

// Certificate is the certificate the management listener serves now, nil
// in mode off.
func (m *Server) Certificate() *x509.Certificate {
	if m.lc == nil {
		return nil
	}
	if c := m.lc.cert.Load(); c != nil {
		return c.Leaf
	}
	return nil
}
