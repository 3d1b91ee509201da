package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/text"
)

// checkServing: while serve runs, every listener listens and the last
// change of the state was applied.
func checkServing(ctx context.Context, e *env) Check {
	if rs, err := replicas(ctx, e); err == nil && len(rs) > 0 {
		return checkServingReplicas(rs)
	}
	st, err := runstatus.Read(ctx, e.s)
	if err != nil {
		return warn(IDListenersServing, "serve rewrites it within a second; run doctor again", "not checked: %v", err)
	}
	if !st.ServeRunning {
		if st.PID == 0 {
			return ok(IDListenersServing, "nothing to check: serve has not run on this state directory (no %s)", runstatus.File)
		}
		return ok(IDListenersServing, "nothing to check: serve is not running (the last one was pid %d on %s)", st.PID, st.Host)
	}
	var f findings
	for _, l := range st.Listeners {
		if !l.Listening {
			why := l.Error
			if why == "" {
				why = "not listening"
			}
			f.fail(fmt.Sprintf("free the address, or give listener %s another one; serve binds it again on its next reload", l.Name),
				"listener %s (%s) is down: %s", l.Name, l.Addr, why)
		}
	}
	if st.LastReloadError != "" {
		f.warn("fix what it names; serve applies the state within 2 seconds of the fix",
			"serve did not apply the last change and keeps serving the previous state: %s", st.LastReloadError)
	}
	return f.check(IDListenersServing, fmt.Sprintf("serve runs as pid %d since %s; %s listening", st.PID, text.Stamp(st.StartedAt), plural(len(st.Listeners), "listener")))
}

// checkFallback: a fallback handshake means a client asked a listener for
// a name no mapping covers and got the fallback certificate (or an alert):
// a public deployment failure. Counts start at zero with each serve, so a
// running serve's are current and fail; a stopped serve's are history and
// warn.
func checkFallback(ctx context.Context, e *env) Check {
	if rs, err := replicas(ctx, e); err == nil && len(rs) > 0 {
		return checkFallbackReplicas(rs)
	}
	st, err := runstatus.Read(ctx, e.s)
	if err != nil {
		return warn(IDListenersFallback, "serve rewrites it within a second; run doctor again", "not checked: %v", err)
	}
	if st.PID == 0 {
		return ok(IDListenersFallback, "nothing to check: serve has not run on this state directory")
	}
	var hit []string
	var hint fallbackHint
	for _, l := range st.Listeners {
		if len(l.FallbackHits) == 0 {
			continue
		}
		_, line := fallbackLine(l)
		hit = append(hit, "listener "+l.Name+": "+line)
		hint.add(l.Name)
	}
	h := hint.String()
	switch {
	case len(hit) > 0 && st.ServeRunning:
		return fail(IDListenersFallback, h, "%s since serve (pid %d) started at %s: clients got the fallback, not a mapped certificate; treat that as a public deployment failure",
			strings.Join(hit, "; "), st.PID, text.Stamp(st.StartedAt))
	case len(hit) > 0:
		return warn(IDListenersFallback, h+"; counts start at zero with each serve",
			"serve is not running, but the last serve (pid %d, started %s) recorded %s", st.PID, text.Stamp(st.StartedAt), strings.Join(hit, "; "))
	case st.ServeRunning:
		return ok(IDListenersFallback, "no fallback handshake since serve (pid %d) started at %s", st.PID, text.Stamp(st.StartedAt))
	}
	return ok(IDListenersFallback, "serve is not running; the last one recorded no fallback handshake")
}

// fallbackLine is the total of a listener's fallback hits and how a
// message names them: "3 fallback handshakes (a.example=2, (no SNI)=1)".
func fallbackLine(l runstatus.Listener) (int64, string) {
	var total int64
	for _, n := range l.FallbackHits {
		total += n
	}
	return total, fmt.Sprintf("%s (%s)", plural(int(total), "fallback handshake"), names(runstatus.FallbackList(l.FallbackHits)))
}

// fallbackHint is the hint of listeners.fallback: how to map the names of
// the first two listeners with hits, or fix the clients.
type fallbackHint []string

func (h *fallbackHint) add(listener string) {
	line := fmt.Sprintf("map each name on listener %s ('p2ptls mapping add --listener %s --host NAME …')", listener, listener)
	if len(*h) < 2 && !slices.Contains(*h, line) {
		*h = append(*h, line)
	}
}

func (h fallbackHint) String() string {
	return strings.Join(append(slices.Clip(h), "or fix the DNS records and clients that send those names there; a handshake without SNI comes from a client that connects by IP address"), "; ")
}
