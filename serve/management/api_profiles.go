package management

import (
	"net/http"

	"github.com/p2pstream/p2ptls/state/acme"
)

// acmeProfiles is GET /api/v1/acme/profiles: the profiles the issuing
// account's ACME server advertises, for the UI's Add mapping form.
// Decision: always 200; when they cannot be read (no account, the server
// unreachable) profiles is null and error says why, and a mapping's
// profile is then stored unchecked with a warning (POST /api/v1/mappings).
type acmeProfiles struct {
	Directory string            `json:"directory"`
	Profiles  map[string]string `json:"profiles"`
	Error     string            `json:"error,omitempty"`
}

// listACMEProfiles: GET /api/v1/acme/profiles. The directory is fetched
// without the state lock, with a short timeout (acme.FetchDirectory).
func (a *api) listACMEProfiles(w http.ResponseWriter, r *http.Request) {
	o := acme.ProfileSource(a.o.Store)(r.Context())
	out := acmeProfiles{Directory: o.Directory, Error: o.Unchecked}
	if o.Unchecked == "" {
		out.Profiles = make(map[string]string, len(o.Names))
		for _, n := range o.Names {
			out.Profiles[n] = o.Descriptions[n]
		}
	}
	writeJSON(w, http.StatusOK, out)
}
