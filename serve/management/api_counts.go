package management

import (
	"net/http"
	"time"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// listMappingCounts: GET /api/v1/mapping-counts[?listener=NAME], how many
// mappings there are per status and per listener (mappings.Counts). Not
// under /api/v1/mappings/{id}: "counts" may be a mapping's id. An unknown
// listener is 400, as in the paged list, and so is any other parameter.
func (a *api) listMappingCounts(w http.ResponseWriter, r *http.Request) {
	params := r.URL.Query()
	for name, vs := range params {
		if name != "listener" {
			a.writeError(w, r, badRequest("send no query parameter, or listener=NAME", "unknown query parameter %q", name))
			return
		}
		if len(vs) > 1 {
			a.writeError(w, r, badRequest("send listener at most once", "query parameter listener is given %d times", len(vs)))
			return
		}
	}
	cfg, err := a.configs.Load(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := listenerParam(cfg, params.Get("listener")); err != nil {
		a.writeError(w, r, err)
		return
	}
	c, err := mappings.Count(r.Context(), a.o.Store, cfg, params.Get("listener"), time.Now())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}
