package management

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/admintoken"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// apiError is the JSON error answer of the API.
type apiError struct {
	Error string `json:"error"`
	Hint  string `json:"hint,omitempty"`
}

// newHandler is the management handler; what it keeps (the API's config
// cache and its watch of the store) ends with ctx.
func newHandler(ctx context.Context, o Options) http.Handler {
	h, _ := newRoutes(ctx, o)
	return h
}

// newRoutes is the management handler and the patterns of every route it
// has (the outer ones and the API's), which tests walk.
func newRoutes(ctx context.Context, o Options) (http.Handler, []string) {
	mux := newRouter()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /ca.crt", func(w http.ResponseWriter, r *http.Request) {
		caPEM, err := statemgmt.AgentCA(r.Context(), o.Store, o.Settings)
		if err != nil {
			writeJSON(w, http.StatusNotFound, apiError{Error: err.Error(), Hint: "this management server has no private CA to hand out"})
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(caPEM)
	})
	apiMux := newRouter()
	apiMux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, r *http.Request) {
		// The ACME back-off count is the renewal loop's last (a small
		// file it writes after each pass), as "status" shows it.
		st := o.Status()
		b, err := runstatus.ServeBackoff(r.Context(), o.Store, st)
		if err != nil {
			o.Log.Warn("ACME back-off count not read for the status API", "err", err)
		}
		// On a shared store, every replica this one can see, itself live.
		rs, err := runstatus.ReadReplicas(r.Context(), o.Store, time.Now())
		if err != nil {
			o.Log.Warn("replicas not read for the status API", "err", err)
			rs = []runstatus.Replica{}
		}
		writeJSON(w, http.StatusOK, runstatus.Reported{Status: st, ACMEBackoff: b, Replicas: runstatus.WithSelf(rs, st)})
	})
	(&api{o: o, configs: state.NewConfigCache(ctx, o.Store)}).register(apiMux)
	ss := newSessions()
	mux.Handle("/api/v1/", requireToken(o, ss, apiMux))
	if o.Metrics != nil {
		mux.Handle("GET /metrics", requireBearer(o, o.Metrics))
	}
	(&ui{o: o, sessions: ss}).register(mux)
	if o.testRoutes != nil {
		o.testRoutes(mux.ServeMux)
	}
	return guard(o.Log, mux), append(mux.patterns, apiMux.patterns...)
}

// router is a ServeMux that remembers its patterns.
type router struct {
	*http.ServeMux
	patterns []string
}

func newRouter() *router { return &router{ServeMux: http.NewServeMux()} }

func (rt *router) Handle(pattern string, h http.Handler) {
	rt.patterns = append(rt.patterns, pattern)
	rt.ServeMux.Handle(pattern, h)
}

func (rt *router) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	rt.Handle(pattern, http.HandlerFunc(f))
}

// hsts is the Strict-Transport-Security of every HTTPS answer: a year,
// without includeSubDomains, which would bind names the management host
// does not own.
const hsts = "max-age=31536000"

// secure sets the headers of every management answer, whatever writes it.
func secure(h http.Header, https bool) {
	h.Set("X-Content-Type-Options", "nosniff")
	if https {
		h.Set("Strict-Transport-Security", hsts)
	}
}

// guard wraps the whole management handler: every answer gets the headers
// of secure, and a panic in a handler is recovered by edge.Guard and
// answered 500, in the API's JSON error shape under /api/, so that one
// request never takes serve down.
func guard(log *slog.Logger, next http.Handler) http.Handler {
	g := edge.Guard(log, "management handler", next, answerPanic)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secure(w.Header(), r.TLS != nil)
		g.ServeHTTP(w, r)
	})
}

// answerPanic answers a request whose handler panicked before it wrote
// anything, dropping the headers the handler had set.
func answerPanic(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	secure(h, r.TLS != nil)
	const msg = "internal error: the request failed unexpectedly; serve keeps running"
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: msg, Hint: "see the log of 'p2ptls serve' (a recovered panic); retry or report it"})
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write([]byte(msg + "\n"))
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
		name, ok, err := admintoken.Verify(r.Context(), o.Store, token)
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
