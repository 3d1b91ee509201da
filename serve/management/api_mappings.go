package management

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/issuance"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/text"
)

// issueWriteTimeout replaces the server's write timeout for POST
// …/issue: an ACME order with DNS-01 propagation takes minutes.
const issueWriteTimeout = 15 * time.Minute

// mappingCreated is the answer of POST /api/v1/mappings: the mapping as
// "mapping list" shows it, plus the warnings the command line prints on
// stderr (an expired certificate accepted, a disabled DNS credential).
type mappingCreated struct {
	mappings.Info
	Warnings []string `json:"warnings,omitempty"`
}

// mappingShown is GET /api/v1/mappings/{id}: what "mapping show --output
// json" prints.
type mappingShown struct {
	mappings.Info
	Certificate *mappings.Details `json:"certificate"`
}

// mappingRemoved is DELETE /api/v1/mappings/{id}: what "mapping remove
// --output json" prints.
type mappingRemoved struct {
	ID       string `json:"id"`
	Listener string `json:"listener"`
}

// listMappings: GET /api/v1/mappings[?listener=NAME], "mapping list".
func (a *api) listMappings(w http.ResponseWriter, r *http.Request) {
	cfg, err := state.LoadConfig(r.Context(), a.o.Store)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	list, err := mappings.List(r.Context(), a.o.Store, cfg, r.URL.Query().Get("listener"), time.Now())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, text.NonNil(list))
}

// addMapping: POST /api/v1/mappings, "mapping add". 201 with the mapping.
func (a *api) addMapping(w http.ResponseWriter, r *http.Request) {
	// The body is a mappings.Record, as a line of "mapping import".
	var q mappings.Record
	if err := decode(w, r, &q); err != nil {
		a.writeError(w, r, err)
		return
	}
	in, err := q.Input()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	added, warnings, err := mappings.AddChecked(r.Context(), a.o.Store, in, time.Now(), acme.ProfileSource(a.o.Store))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	for _, warn := range warnings {
		a.o.Log.Warn(warn, "mapping", added.ID)
	}
	info, _, err := a.show(r.Context(), added.ID)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/mappings/"+url.PathEscape(added.ID))
	writeJSON(w, http.StatusCreated, mappingCreated{Info: info, Warnings: warnings})
}

// show describes mapping id in the current state.
func (a *api) show(ctx context.Context, id string) (mappings.Info, *mappings.Details, error) {
	cfg, err := state.LoadConfig(ctx, a.o.Store)
	if err != nil {
		return mappings.Info{}, nil, err
	}
	return mappings.Show(ctx, a.o.Store, cfg, id, time.Now())
}

// showMapping: GET /api/v1/mappings/{id}, "mapping show".
func (a *api) showMapping(w http.ResponseWriter, r *http.Request) {
	info, details, err := a.show(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mappingShown{Info: info, Certificate: details})
}

// showCertificate: GET /api/v1/certificates/{id}, the certificate details
// of "cert show". A mapping without a usable certificate (ACME pending or
// failed, a missing file) is 404 with the reason.
func (a *api) showCertificate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	info, details, err := a.show(r.Context(), id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if details == nil {
		hint := info.LastError
		if hint == "" {
			hint = "issue it with POST /api/v1/mappings/" + id + "/issue"
		}
		a.writeError(w, r, &httpError{status: http.StatusNotFound,
			msg: fmt.Sprintf("mapping %q has no certificate (status %s)", id, info.Status), hint: hint})
		return
	}
	writeJSON(w, http.StatusOK, details)
}

// removeMapping: DELETE /api/v1/mappings/{id}, "mapping remove". Decision:
// 200 with what "mapping remove --output json" prints ({"id","listener"}),
// not 204, so that a client can log what it removed.
func (a *api) removeMapping(w http.ResponseWriter, r *http.Request) {
	removed, err := mappings.Remove(r.Context(), a.o.Store, r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mappingRemoved{ID: removed.ID, Listener: removed.Listener})
}

// issueMapping: POST /api/v1/mappings/{id}/issue, "cert issue ID": an ACME
// order for an ACME mapping, a new certificate for a self-signed one
// (issuance.Issue, as the command line). 200 with the mapping after
// issuance. A failed ACME attempt is 502 with the ACME error and hint; it
// is recorded in the mapping (last_error, attempts, retry_at) and the
// previous certificate keeps serving. Manual and file mappings are 409:
// p2ptls cannot renew them.
func (a *api) issueMapping(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := noBody(w, r); err != nil {
		a.writeError(w, r, err)
		return
	}
	// A mapping the ACME server refused until later is issued anyway, as
	// "cert issue ID" does, with its warning in the answer.
	var warnings []string
	if meta, err := mappings.LoadMeta(r.Context(), a.o.Store, id); err == nil {
		if warn := mappings.BackoffWarning(id, meta, time.Now()); warn != "" {
			a.o.Log.Warn(warn, "mapping", id)
			warnings = append(warnings, warn)
		}
	}
	err := issuance.Issue(r.Context(), a.o.Store, id, time.Now(), issuance.Options{
		ACME: acme.Options{Log: a.o.Log, DNSResolvers: a.o.DNSResolvers},
		BeforeOrder: func() {
			_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(issueWriteTimeout))
		},
	})
	if err != nil && fault.KindOf(err) == fault.Failure && acme.Attempted(err) {
		hint := fault.HintOf(err)
		if hint == "" {
			hint = "GET /api/v1/mappings/" + id + " shows last_error and retry_at; the previous certificate, if any, keeps serving"
		}
		a.writeError(w, r, &httpError{status: http.StatusBadGateway, msg: text.OneLine(err.Error()), hint: text.OneLine(hint)})
		return
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	info, _, err := a.show(r.Context(), id)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mappingCreated{Info: info, Warnings: warnings})
}
