package management

import (
	"net/http"
	"strconv"
	"time"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/doctor"
)

// doctorCheckTimeout bounds doctor's connection to MANAGEMENT_PUBLIC_URL
// (?network=true), as "p2ptls doctor --network" does.
const doctorCheckTimeout = 10 * time.Second

// runDoctor: GET /api/v1/doctor[?strict=true][&network=true], what "p2ptls
// doctor --output json" prints, over this serve's own management settings.
// Decision: a report is 200 whatever it says ("ok" and each check's
// status); doctor only reads, so this is a GET.
func (a *api) runDoctor(w http.ResponseWriter, r *http.Request) {
	flags := map[string]bool{"strict": false, "network": false}
	for name := range flags {
		v := r.URL.Query().Get(name)
		if v == "" {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			a.writeError(w, r, badRequest("use ?"+name+"=true or ?"+name+"=false", "query parameter %s=%q is not true or false", name, v))
			return
		}
		flags[name] = b
	}
	rep := doctor.Run(r.Context(), doctor.Input{
		Store:    a.o.Store,
		Settings: a.o.Settings,
		Network:  flags["network"],
		Strict:   flags["strict"],
		// CAA is looked up where serve checks DNS-01 propagation.
		DNSResolvers: a.o.DNSResolvers,
		Now:          time.Now(),
		Check:        agent.Checker(doctorCheckTimeout),
	})
	writeJSON(w, http.StatusOK, rep)
}
