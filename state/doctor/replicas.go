package doctor

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/text"
)

// replicas is every serve replica of a shared store that doctor can see;
// none on a directory store, whose one serve writes runstatus.File.
func replicas(ctx context.Context, e *env) ([]runstatus.Replica, error) {
	return runstatus.ReadReplicas(ctx, e.s, e.in.Now)
}

// checkReplicas: on a shared store, once replicas have reported, some
// replica runs while there are mappings to serve (else nothing serves
// them: a failure), and none has gone silent.
func checkReplicas(ctx context.Context, e *env) Check {
	rs, err := replicas(ctx, e)
	if err != nil {
		return warn(IDStoreReplicas, "each replica rewrites its status every heartbeat; run doctor again", "not checked: %v", err)
	}
	switch {
	case len(rs) == 0 && e.local != nil:
		return ok(IDStoreReplicas, "not applicable: a state directory is served by one serve (see %s)", IDListenersServing)
	case len(rs) == 0:
		// As listeners.serving says of a directory no serve ran on.
		return ok(IDStoreReplicas, "nothing to check: no serve replica has reported to this store (none in %s)", runstatus.ReplicasDir)
	}
	var running, stopped []string
	var f findings
	for _, r := range rs {
		switch r.State {
		case runstatus.ReplicaRunning:
			running = append(running, r.Replica)
		case runstatus.ReplicaStopped:
			stopped = append(stopped, r.Replica)
		default:
			f.warn("restart it, or check its host and its way to the store; a replica silent for a day is no longer shown",
				"replica %s (host %s) sent no heartbeat since %s (%s ago)", r.Replica, r.Host, text.Stamp(r.UpdatedAt), e.in.Now.Sub(r.UpdatedAt).Round(time.Second))
		}
	}
	if len(running) == 0 && e.cfg != nil && len(e.cfg.Mappings) > 0 {
		f.fail("start 'p2ptls serve --store …' on each replica host",
			"no serve replica runs on this store, and it has %s to serve", plural(len(e.cfg.Mappings), "mapping"))
	}
	msg := fmt.Sprintf("%s running", plural(len(running), "replica"))
	if len(running) > 0 {
		msg += ": " + strings.Join(running, ", ")
	}
	if len(stopped) > 0 {
		msg += "; stopped: " + strings.Join(stopped, ", ")
	}
	return f.check(IDStoreReplicas, msg)
}

// checkStoreConnected: every running replica reaches the shared store; one
// that does not serves its local snapshot and takes no change.
func checkStoreConnected(ctx context.Context, e *env) Check {
	rs, err := replicas(ctx, e)
	if err != nil {
		return warn(IDStoreConnected, "each replica rewrites its status every heartbeat; run doctor again", "not checked: %v", err)
	}
	var f findings
	seen := 0
	for _, r := range rs {
		if r.State != runstatus.ReplicaRunning || r.Store == nil {
			continue
		}
		seen++
		switch {
		case !r.Store.Connected:
			f.warn("check the network between that replica and etcd, and etcd's health; it catches up by itself once etcd answers",
				"replica %s cannot reach the store since %s (%s) and serves its snapshot of %s, %ds old; changes made meanwhile do not reach it",
				r.Replica, text.Stamp(r.Store.Since), orNone(r.Store.Error), text.Stamp(r.Store.SnapshotAt), r.Store.SnapshotAgeSeconds)
		case r.Store.Error != "":
			f.warn("look at that replica's log; its snapshot is updated again on the next change",
				"replica %s reaches the store but could not update its snapshot: %s", r.Replica, r.Store.Error)
		}
	}
	if seen == 0 {
		return ok(IDStoreConnected, "nothing to check: no running serve replica reports a shared store")
	}
	return f.check(IDStoreConnected, fmt.Sprintf("%s reach the store", plural(seen, "running replica")))
}

// orNone is err, or "no error recorded".
func orNone(err string) string {
	if err == "" {
		return "no error recorded"
	}
	return err
}

// checkServingReplicas is checkServing on a shared store: every running
// replica's listeners listen and it applied the last change.
func checkServingReplicas(rs []runstatus.Replica) Check {
	var f findings
	var running []string
	listeners := 0
	for _, r := range rs {
		if r.State != runstatus.ReplicaRunning {
			continue
		}
		running = append(running, r.Replica)
		listeners += len(r.Listeners)
		for _, l := range r.Listeners {
			if !l.Listening {
				f.fail(fmt.Sprintf("free the address on replica %s, or give listener %s another one; serve binds it again on its next reload", r.Replica, l.Name),
					"replica %s: listener %s (%s) is down: %s", r.Replica, l.Name, l.BoundAddr, cmp.Or(l.Error, "not listening"))
			}
		}
		if r.LastReloadError != "" {
			f.warn("fix what it names; serve applies the state within 2 seconds of the fix",
				"replica %s did not apply the last change and keeps serving the previous state: %s", r.Replica, r.LastReloadError)
		}
	}
	if len(running) == 0 {
		return ok(IDListenersServing, "nothing to check: no serve replica runs (see %s)", IDStoreReplicas)
	}
	return f.check(IDListenersServing, fmt.Sprintf("%s running (%s); %s listening", plural(len(running), "replica"), strings.Join(running, ", "), plural(listeners, "listener")))
}

// checkFallbackReplicas is checkFallback on a shared store: the hits of
// every replica still shown, summed and each named by its replica; those
// of a running replica fail, those of a stale or stopped one warn.
func checkFallbackReplicas(rs []runstatus.Replica) Check {
	var live, past []string
	var total int64
	var hint fallbackHint
	for _, r := range rs {
		for _, l := range r.Listeners {
			if len(l.FallbackHits) == 0 {
				continue
			}
			n, line := fallbackLine(l)
			total += n
			hit := fmt.Sprintf("replica %s, listener %s: %s", r.Replica, l.Name, line)
			if r.State == runstatus.ReplicaRunning {
				live = append(live, hit)
			} else {
				past = append(past, hit+" before it "+r.State)
			}
			hint.add(l.Name)
		}
	}
	h := hint.String()
	all := strings.Join(append(live, past...), "; ")
	switch {
	case len(live) > 0:
		return fail(IDListenersFallback, h, "%s across the replicas: %s; clients got the fallback, not a mapped certificate; treat that as a public deployment failure",
			plural(int(total), "fallback handshake"), all)
	case len(past) > 0:
		return warn(IDListenersFallback, h+"; counts start at zero with each serve", "no running replica has fallback handshakes, but %s", all)
	}
	return ok(IDListenersFallback, "no fallback handshake on any of %s since each started", plural(len(rs), "replica"))
}
