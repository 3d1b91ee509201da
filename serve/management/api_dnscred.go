package management

import (
	"context"
	"net/http"
	"net/url"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/text"
)

// dnsCredentialRequest is the body of POST /api/v1/dns-credentials. The
// token is handed to dnscred.Add, which stores it in its 0600 file; it is
// never answered, logged or kept beyond the request.
type dnsCredentialRequest struct {
	Name       string `json:"name"`
	Provider   string `json:"provider"`
	APIToken   string `json:"api_token"`
	APIBaseURL string `json:"api_base_url"`
}

// listDNSCredentials: GET /api/v1/dns-credentials, "dns-credential list"
// (token_hint only).
func (a *api) listDNSCredentials(w http.ResponseWriter, r *http.Request) {
	cfg, err := a.configs.Load(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	list, err := dnscred.List(r.Context(), a.o.Store, cfg)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, text.NonNil(list))
}

// addDNSCredential: POST /api/v1/dns-credentials, "dns-credential add".
// 201 with the credential as "dns-credential list" shows it.
func (a *api) addDNSCredential(w http.ResponseWriter, r *http.Request) {
	var q dnsCredentialRequest
	if err := decode(w, r, &q); err != nil {
		a.writeError(w, r, err)
		return
	}
	cred := state.DNSCredential{Name: q.Name, Provider: q.Provider, APIBaseURL: q.APIBaseURL}
	err := dnscred.Add(r.Context(), a.o.Store, cred, q.APIToken)
	q.APIToken = ""
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	info, err := a.showDNSCredential(r.Context(), q.Name)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/dns-credentials/"+url.PathEscape(q.Name))
	writeJSON(w, http.StatusCreated, info)
}

func (a *api) showDNSCredential(ctx context.Context, name string) (dnscred.Info, error) {
	cfg, err := a.configs.Load(ctx)
	if err != nil {
		return dnscred.Info{}, err
	}
	return dnscred.Show(ctx, a.o.Store, cfg, name)
}

// enableDNSCredential: POST /api/v1/dns-credentials/{name}/enable; 200 with
// the credential, whether or not it was enabled already.
func (a *api) enableDNSCredential(w http.ResponseWriter, r *http.Request) {
	a.setDNSCredentialEnabled(w, r, true)
}

// disableDNSCredential: POST /api/v1/dns-credentials/{name}/disable.
func (a *api) disableDNSCredential(w http.ResponseWriter, r *http.Request) {
	a.setDNSCredentialEnabled(w, r, false)
}

func (a *api) setDNSCredentialEnabled(w http.ResponseWriter, r *http.Request, enabled bool) {
	name := r.PathValue("name")
	if err := noBody(w, r); err != nil {
		a.writeError(w, r, err)
		return
	}
	if _, err := dnscred.SetEnabled(r.Context(), a.o.Store, name, enabled); err != nil {
		a.writeError(w, r, err)
		return
	}
	info, err := a.showDNSCredential(r.Context(), name)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// testDNSCredential: POST /api/v1/dns-credentials/{name}/test, "dns-credential
// test". Decision: a test that ran answers 200 with its result, whether the
// credential passed or not ("ok" and each check's status, message and
// hint say which permission is missing); only a test that could not run
// (no such credential, no token file, a bad api_base_url) is an error.
func (a *api) testDNSCredential(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := noBody(w, r); err != nil {
		a.writeError(w, r, err)
		return
	}
	cfg, err := a.configs.Load(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	cred, err := dnscred.Get(r.Context(), a.o.Store, cfg, name)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	res, err := dnscred.Test(r.Context(), cred)
	if res == nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// removeDNSCredential: DELETE /api/v1/dns-credentials/{name}, "dns-credential
// remove": 409 while a mapping uses it. Decision: 200 with the removed
// credential (what "dns-credential remove --output json" prints), not 204.
func (a *api) removeDNSCredential(w http.ResponseWriter, r *http.Request) {
	removed, err := dnscred.Remove(r.Context(), a.o.Store, r.PathValue("name"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, removed)
}
