package management

import (
	"net/http"
	"time"

	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// mappingPatch is the body of PATCH /api/v1/mappings/{id}: the fields of
// POST /api/v1/mappings that can change in place. A field left out stays
// as it is; "hosts" replaces the hosts as a whole; "" clears "upstream",
// "dns_credential" and "profile".
type mappingPatch struct {
	Upstream      *string   `json:"upstream"`
	Hosts         *[]string `json:"hosts"`
	Challenge     *string   `json:"challenge"`
	DNSCredential *string   `json:"dns_credential"`
	Profile       *string   `json:"profile"`
	KeyType       *string   `json:"key_type"`
}

// patchMapping: PATCH /api/v1/mappings/{id}, "mapping set ID". 200 with
// the mapping as saved and its warnings, as POST answers 201.
func (a *api) patchMapping(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var q mappingPatch
	if err := decode(w, r, &q); err != nil {
		a.writeError(w, r, err)
		return
	}
	ch := mappings.Changes{Upstream: q.Upstream, Challenge: q.Challenge, DNSCredential: q.DNSCredential, Profile: q.Profile, KeyType: q.KeyType}
	if q.Hosts != nil {
		ch.Hosts = append([]string{}, *q.Hosts...) // [] is "no hosts", refused
	}
	saved, warnings, err := mappings.Set(r.Context(), a.o.Store, id, ch, time.Now(), acme.ProfileSource(a.o.Store), mappings.APIFields)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	warnings = apiWordsAll(warnings)
	for _, warn := range warnings {
		a.o.Log.Warn(warn, "mapping", saved.ID)
	}
	info, _, err := a.show(r.Context(), saved.ID)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mappingCreated{Info: info, Warnings: warnings})
}
