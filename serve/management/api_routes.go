package management

import (
	"net/http"
	"strings"

	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/text"
)

// catchAll is the pattern that answers every /api/v1 request no endpoint
// takes.
const catchAll = "/api/v1/"

// register adds the endpoints of the API to mux, which requireToken guards.
// GET /api/v1/status stays in newHandler.
func (a *api) register(mux *router) {
	mux.HandleFunc("GET /api/v1/listeners", a.listListeners)

	mux.HandleFunc("GET /api/v1/mappings", a.listMappings)
	mux.HandleFunc("POST /api/v1/mappings", a.addMapping)
	mux.HandleFunc("GET /api/v1/mapping-counts", a.listMappingCounts)
	mux.HandleFunc("GET /api/v1/mappings/{id}", a.showMapping)
	mux.HandleFunc("PATCH /api/v1/mappings/{id}", a.patchMapping)
	mux.HandleFunc("DELETE /api/v1/mappings/{id}", a.removeMapping)
	mux.HandleFunc("POST /api/v1/mappings/{id}/issue", a.issueMapping)
	mux.HandleFunc("GET /api/v1/certificates/{id}", a.showCertificate)
	mux.HandleFunc("GET /api/v1/certificates/{id}/pem", a.certificatePEM)

	mux.HandleFunc("GET /api/v1/dns-credentials", a.listDNSCredentials)
	mux.HandleFunc("POST /api/v1/dns-credentials", a.addDNSCredential)
	mux.HandleFunc("DELETE /api/v1/dns-credentials/{name}", a.removeDNSCredential)
	mux.HandleFunc("POST /api/v1/dns-credentials/{name}/enable", a.enableDNSCredential)
	mux.HandleFunc("POST /api/v1/dns-credentials/{name}/disable", a.disableDNSCredential)
	mux.HandleFunc("POST /api/v1/dns-credentials/{name}/test", a.testDNSCredential)

	mux.HandleFunc("GET /api/v1/acme/accounts", a.listACMEAccounts)
	mux.HandleFunc("GET /api/v1/acme/profiles", a.listACMEProfiles)

	mux.HandleFunc("GET /api/v1/doctor", a.runDoctor)

	mux.HandleFunc("GET /api/v1/management", a.showManagement)
	mux.HandleFunc(routeStart, a.startRotation)
	mux.HandleFunc(routeSwitch, a.switchRotation)
	mux.HandleFunc(routeFinish, a.finishRotation)
	mux.HandleFunc(routeAbort, a.abortRotation)

	mux.HandleFunc("GET /api/v1/openapi.json", a.showOpenAPI)

	mux.HandleFunc(catchAll, func(w http.ResponseWriter, r *http.Request) { a.notFound(mux, w, r) })
}

// notFound answers a request no endpoint takes in JSON: 405 with Allow
// when the path exists with other methods, else 404. (The mux's own 405
// would be plain text, and the catch-all hides it anyway.)
func (a *api) notFound(mux *router, w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != catchAll && pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		a.writeError(w, r, &httpError{status: http.StatusMethodNotAllowed,
			msg: r.Method + " is not allowed on " + r.URL.Path, hint: "use " + strings.Join(allow, " or ")})
		return
	}
	a.writeError(w, r, &httpError{status: http.StatusNotFound, msg: "no such API endpoint: " + r.Method + " " + r.URL.Path,
		hint: "the API's endpoints are under /api/v1/status, /listeners, /mappings, /mapping-counts, /certificates, /dns-credentials, /acme/accounts, /acme/profiles, /doctor and /management; GET /api/v1/openapi.json describes them"})
}

// listListeners: GET /api/v1/listeners, "listener list".
func (a *api) listListeners(w http.ResponseWriter, r *http.Request) {
	cfg, err := a.configs.Load(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, text.NonNil(cfg.Listeners))
}

// listACMEAccounts: GET /api/v1/acme/accounts, "acme account list".
func (a *api) listACMEAccounts(w http.ResponseWriter, r *http.Request) {
	cfg, err := a.configs.Load(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	list, err := acme.ListAccounts(r.Context(), a.o.Store, cfg)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, text.NonNil(list))
}
