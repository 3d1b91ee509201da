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
	mux.Handle("/api/v1/", requireToken(o, apiMux))
	return mux
}

// requireToken admits requests with a valid admin token. Tokens are read
// from the state on every request, so "admin token revoke" applies at once.
func requireToken(o Options, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
