package management

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/p2pstream/p2ptls/state/admintoken"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// apiError is the JSON error answer of the API.
type apiError struct {
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

func newHandler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /ca.crt", func(w http.ResponseWriter, _ *http.Request) {
		caPEM, err := statemgmt.AgentCA(o.Store, o.Settings)
		if err != nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: err.Error(), Hint: "this management server has no private CA to hand out"})
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(caPEM)
	})
	apiMux := http.NewServeMux()
	apiMux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, o.Status())
	})
	(&api{o: o}).register(apiMux)
	ss := newSessions()
	mux.Handle("/api/v1/", requireToken(o, ss, apiMux))
	(&ui{o: o, sessions: ss}).register(mux)
	return mux
}

// requireToken admits requests with a valid admin token, or without an
// Authorization header a valid UI session (whose changes must carry the
// session's CSRF token in X-CSRF-Token). Tokens are read from the state on
// every request, so "admin token revoke" applies at once, to sessions too.
func requireToken(o Options, ss *sessions, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			if _, err := r.Cookie(sessionCookie); err == nil {
				_, se := ss.lookup(o, r)
				if se == nil {
					writeJSON(w, http.StatusUnauthorized, apiError{Error: "the UI session expired or its admin token was revoked",
						Hint: "sign in again at /ui/login"})
					return
				}
				if r.Method != http.MethodGet && r.Method != http.MethodHead && !se.csrfOK(r) {
					writeJSON(w, http.StatusForbidden, apiError{Error: "missing or wrong CSRF token",
						Hint: "send the session's CSRF token (the csrf-token meta tag of /ui/) in the X-CSRF-Token header"})
					return
				}
				o.Log.Debug("api request", "method", r.Method, "path", r.URL.Path, "token", se.name, "via", "ui session")
				next.ServeHTTP(w, r)
				return
			}
		}
		token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !found || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="p2ptls"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "missing admin token",
				Hint: "send 'Authorization: Bearer <token>'; create a token with 'p2ptls admin token create NAME'"})
			return
		}
		name, ok, err := admintoken.Verify(o.Store, token)
		if err != nil {
			o.Log.Error("cannot check admin tokens", "err", err)
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="p2ptls", error="invalid_token"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "invalid or revoked admin token",
				Hint: "'p2ptls admin token list' shows the valid token names"})
			return
		}
		o.Log.Debug("api request", "method", r.Method, "path", r.URL.Path, "token", name)
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
