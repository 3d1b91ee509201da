package doctor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/snapshot"
)

// writeReplica writes replica name's status as serve on a shared store
// does, its last heartbeat at beat.
func writeReplica(t *testing.T, s state.Store, name string, beat time.Time, store *runstatus.StoreHealth, listeners ...runstatus.Listener) {
	t.Helper()
	st := &runstatus.Status{PID: 7, Host: "host-" + name, StartedAt: now0.Add(-time.Hour), Replica: name, HeartbeatSeconds: 10, Store: store, Listeners: listeners}
	if err := runstatus.WriteReplica(context.Background(), s, st, beat); err != nil {
		t.Fatal(err)
	}
}

// sharedInput is a healthy state seen as a store that is not a directory.
func sharedInput(t *testing.T) (Input, state.Store) {
	s := healthy(t)
	in := input(s)
	in.Store = remote{s}
	return in, in.Store
}

func TestCheckReplicas(t *testing.T) {
	web := runstatus.Listener{Name: "web", Addr: ":443", BoundAddr: "127.0.0.2:443", Listening: true}
	in, s := sharedInput(t)
	want(t, run(in, checkReplicas), IDStoreReplicas, OK, "no serve replica has reported")
	want(t, run(input(healthy(t)), checkReplicas), IDStoreReplicas, OK, "not applicable")

	writeReplica(t, s, "web1", now0.Add(-5*time.Second), nil, web)
	writeReplica(t, s, "web2", now0.Add(-2*time.Minute), nil, web)
	c := run(in, checkReplicas)
	want(t, c, IDStoreReplicas, Warn, "replica web2 (host host-web2) sent no heartbeat since", "2m0s ago")
	want(t, run(in, checkServing), IDListenersServing, OK, "1 replica running (web1); 1 listener listening")

	// The last running one killed: nothing serves the mappings.
	writeReplica(t, s, "web1", now0.Add(-time.Minute), nil, web)
	c = run(in, checkReplicas)
	want(t, c, IDStoreReplicas, Fail, "no serve replica runs on this store, and it has 1 mapping to serve", "replica web1")
	want(t, run(in, checkServing), IDListenersServing, OK, "no serve replica runs")

	down := web
	down.Listening, down.Error = false, "address already in use"
	writeReplica(t, s, "web1", now0, nil, down)
	want(t, run(in, checkServing), IDListenersServing, Fail, "replica web1: listener web (127.0.0.2:443) is down: address already in use")
}

func TestCheckStoreConnected(t *testing.T) {
	in, s := sharedInput(t)
	want(t, run(in, checkStoreConnected), IDStoreConnected, OK, "nothing to check")
	up := runstatus.NewStoreHealth(snapshot.Health{Connected: true, Current: true, Since: now0.Add(-time.Hour)}, now0)
	writeReplica(t, s, "web1", now0, up)
	want(t, run(in, checkStoreConnected), IDStoreConnected, OK, "1 running replica reach the store")

	away := runstatus.NewStoreHealth(snapshot.Health{Connected: false, Since: now0.Add(-time.Minute), Error: "context deadline exceeded",
		SnapshotAt: now0.Add(-90 * time.Second)}, now0)
	writeReplica(t, s, "web2", now0, away)
	want(t, run(in, checkStoreConnected), IDStoreConnected, Warn, "replica web2 cannot reach the store since", "context deadline exceeded", "90s old")
	// A stale replica's last word on the store is not checked: store.replicas
	// warns of it.
	writeReplica(t, s, "web2", now0.Add(-time.Hour), away)
	want(t, run(in, checkStoreConnected), IDStoreConnected, OK, "1 running replica")
}

// TestCheckFallbackReplicas: hits are kept per replica and summed; each is
// named with its replica, and only a running replica's fail.
func TestCheckFallbackReplicas(t *testing.T) {
	in, s := sharedInput(t)
	clean := runstatus.Listener{Name: "web", Addr: ":443", Listening: true}
	hit := runstatus.Listener{Name: "web", Addr: ":443", Listening: true, FallbackHits: map[string]int64{"unmapped.example": 2, "": 1}, FallbackTotal: 3}
	writeReplica(t, s, "web1", now0, nil, clean)
	writeReplica(t, s, "web2", now0, nil, clean)
	want(t, run(in, checkFallback), IDListenersFallback, OK, "no fallback handshake on any of 2 replicas")

	writeReplica(t, s, "web2", now0, nil, hit)
	c := run(in, checkFallback)
	want(t, c, IDListenersFallback, Fail, "3 fallback handshakes across the replicas: replica web2, listener web: 3 fallback handshakes (unmapped.example=2, (no SNI)=1)")
	if strings.Contains(c.Message, "web1") {
		t.Errorf("web1 had no hit: %s", c.Message)
	}
	writeReplica(t, s, "web1", now0, nil, hit)
	want(t, run(in, checkFallback), IDListenersFallback, Fail, "6 fallback handshakes", "replica web1", "replica web2")

	writeReplica(t, s, "web1", now0, nil, clean)
	writeReplica(t, s, "web2", now0.Add(-time.Hour), nil, hit)
	want(t, run(in, checkFallback), IDListenersFallback, Warn, "no running replica has fallback handshakes, but replica web2, listener web: 3 fallback handshakes", "before it stale")
}
