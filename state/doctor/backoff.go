package doctor

import (
	"context"
	"fmt"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/text"
)

// IDBackoff is the check of ACME mappings the ACME server refused until
// later.
const IDBackoff = "mappings.acme_backoff"

// checkBackoff warns about the ACME mappings backing off because the ACME
// server said so: rate limited (until its Retry-After) or a paused account
// (until an operator unpauses it at the link the server gave). Both keep
// the old certificate serving and retry by themselves, but a paused account
// never gets better on its own, and a rate limit means the deployment
// orders more than the CA allows. An ordinary failure's back-off is
// mappings.last_renewal's.
func checkBackoff(_ context.Context, e *env) Check {
	if e.cfg == nil || e.infos == nil {
		return skipped(IDBackoff)
	}
	var f findings
	n := 0
	for _, info := range e.infos {
		if info.m == nil || info.m.Source != state.SourceACME {
			continue
		}
		n++
		retry := ""
		if info.RetryAt != nil {
			retry = text.Stamp(*info.RetryAt)
		}
		switch info.BackoffReason {
		case mappings.BackoffAccountPaused:
			f.warn(fmt.Sprintf("open the unpause link the ACME server gave, fix what kept failing validation, then 'p2ptls cert issue %s'", info.m.ID),
				"mapping %s: the ACME account is paused for its hosts (%s); it retries once a day, not before %s", info.m.ID, info.LastError, retry)
		case mappings.BackoffRateLimited:
			f.warn("nothing to do for this one: it retries by itself then; if it recurs, order less often (fewer 'cert issue --force', fewer hosts per mapping) or ask the CA for a higher limit",
				"mapping %s: rate limited by the ACME server until %s", info.m.ID, retry)
		}
	}
	if n == 0 {
		return ok(IDBackoff, "no ACME mappings")
	}
	return f.check(IDBackoff, fmt.Sprintf("none of %s is rate limited or paused by the ACME server", plural(n, "ACME mapping")))
}
