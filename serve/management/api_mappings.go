package management

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
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

// Paging of GET /api/v1/mappings: a page holds defaultPageLimit mappings
// unless limit says otherwise, and never more than maxPageLimit.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// pageParams are the query parameters of a paged list; any of them but
// listener asks for the paged answer.
var pageParams = []string{"listener", "q", "status", "source", "limit", "cursor"}

// mappingPage is the paged answer of GET /api/v1/mappings. Decision:
// next_cursor is always there, "" on the last page, so that a client loops
// while it is not empty.
type mappingPage struct {
	Items      []mappings.Info `json:"items"`
	NextCursor string          `json:"next_cursor"`
}

// listMappings: GET /api/v1/mappings[?listener=NAME], "mapping list": every
// mapping in config order, a JSON array, as before paging existed. With q,
// status, limit or cursor it answers one page (see pageQuery).
func (a *api) listMappings(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	cfg, err := a.configs.Load(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !slices.ContainsFunc(pageParams[1:], params.Has) {
		list, err := mappings.List(r.Context(), a.o.Store, cfg, params.Get("listener"), time.Now())
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, text.NonNil(list))
		return
	}
	pq, err := pageQuery(params, cfg)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	page, err := mappings.ListPage(r.Context(), a.o.Store, cfg, pq, time.Now())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	answer := mappingPage{Items: text.NonNil(page.Items)}
	if page.Next != nil {
		answer.NextCursor = mappings.EncodeCursor(pq.Filter, *page.Next)
	}
	writeJSON(w, http.StatusOK, answer)
}

// pageQuery reads the parameters of a paged list: listener (an existing
// listener), q (a part of an id or a host, any case), status (one of
// mappings.Statuses), source (one of mappings.Sources), limit (1 to
// maxPageLimit) and cursor (next_cursor of the page before, with the same
// listener, q, status and source; "" for the first page). Any other
// parameter, or one given twice, is refused: a misspelt filter must not
// answer every mapping.
func pageQuery(params url.Values, cfg *state.Config) (mappings.PageQuery, error) {
	const usage = "page with listener, q, status, source, limit and cursor, each at most once"
	for name, vs := range params {
		if !slices.Contains(pageParams, name) {
			return mappings.PageQuery{}, badRequest(usage, "unknown query parameter %q", name)
		}
		if len(vs) > 1 {
			return mappings.PageQuery{}, badRequest(usage, "query parameter %s is given %d times", name, len(vs))
		}
	}
	pq := mappings.PageQuery{
		Filter: mappings.PageFilter{Listener: params.Get("listener"), Q: params.Get("q"), Status: params.Get("status"), Source: params.Get("source")},
		Limit:  defaultPageLimit,
	}
	if err := listenerParam(cfg, pq.Filter.Listener); err != nil {
		return mappings.PageQuery{}, err
	}
	if s := pq.Filter.Status; s != "" && !slices.Contains(mappings.Statuses, s) {
		return mappings.PageQuery{}, badRequest("use status="+strings.Join(mappings.Statuses, ", status="), "query parameter status=%q is not a status", s)
	}
	if s := pq.Filter.Source; s != "" && !slices.Contains(mappings.Sources, s) {
		return mappings.PageQuery{}, badRequest("use source="+strings.Join(mappings.Sources, ", source="), "query parameter source=%q is not a source", s)
	}
	if params.Has("limit") {
		v := params.Get("limit")
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageLimit {
			return mappings.PageQuery{}, badRequest(fmt.Sprintf("use limit=1 to limit=%d (%d when absent)", maxPageLimit, defaultPageLimit),
				"query parameter limit=%q is not a number from 1 to %d", v, maxPageLimit)
		}
		pq.Limit = n
	}
	if c := params.Get("cursor"); c != "" {
		key, err := mappings.DecodeCursor(c, pq.Filter)
		switch {
		case errors.Is(err, mappings.ErrCursorFilter):
			return mappings.PageQuery{}, badRequest("send the cursor with the listener, q, status and source of the page it came from, or start again without a cursor",
				"the cursor belongs to a listing with other listener, q, status or source")
		case err != nil:
			return mappings.PageQuery{}, badRequest("send next_cursor of the previous page unchanged, or start again without a cursor",
				"the cursor is not one this API gave, or it was changed")
		}
		pq.After = &key
	}
	return pq, nil
}

// listenerParam checks the query parameter listener: "" or the name of a
// listener of cfg. An unknown one is a bad parameter (400), not a missing
// resource: the path exists.
func listenerParam(cfg *state.Config, name string) error {
	if name == "" {
		return nil
	}
	if _, err := cfg.FindListener(name); err != nil {
		return badRequest("GET /api/v1/listeners lists the listeners", "query parameter listener=%q names no listener", name)
	}
	return nil
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
	warnings = apiWordsAll(warnings)
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
	cfg, err := a.configs.Load(ctx)
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
	info, details, err := a.show(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if details == nil {
		a.writeError(w, r, noCertificate(info))
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
		hint := apiWords(fault.HintOf(err))
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
