package runstatus

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/snapshot"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

var t0 = time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)

func replicaStatus(name, host string, pid int, hits int64) *Status {
	return &Status{ServeRunning: true, PID: pid, Host: host, StartedAt: t0, Replica: name, HeartbeatSeconds: 10,
		Listeners: []Listener{{Name: "web", Addr: ":443", BoundAddr: "127.0.0.2:443", Listening: true,
			FallbackHits: map[string]int64{"x.example": hits}, FallbackTotal: hits}}}
}

// TestReplicasHeartbeat: two replicas writing to one store are both seen,
// each with its own listeners and fallback hits; one whose heartbeat is
// older than three heartbeats is stale, one that stopped says so, and one
// silent for longer than Forget is no longer listed.
func TestReplicasHeartbeat(t *testing.T) {
	ctx := context.Background()
	s := statetest.NewMem("replicas", time.Second)
	if rs, err := ReadReplicas(ctx, s, t0); err != nil || len(rs) != 0 {
		t.Fatalf("empty store: %v %v", rs, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(WriteReplica(ctx, s, replicaStatus("web1@127.0.0.2", "web1", 100, 3), t0))
	must(WriteReplica(ctx, s, replicaStatus("web2", "web2", 200, 0), t0.Add(5*time.Second)))
	for _, tc := range []struct {
		name string
		at   time.Time
		want map[string]string // replica -> state
	}{
		{"both fresh", t0.Add(10 * time.Second), map[string]string{"web1@127.0.0.2": ReplicaRunning, "web2": ReplicaRunning}},
		{"at three heartbeats", t0.Add(30 * time.Second), map[string]string{"web1@127.0.0.2": ReplicaRunning, "web2": ReplicaRunning}},
		{"one past three heartbeats", t0.Add(31 * time.Second), map[string]string{"web1@127.0.0.2": ReplicaStale, "web2": ReplicaRunning}},
		{"both stale", t0.Add(time.Hour), map[string]string{"web1@127.0.0.2": ReplicaStale, "web2": ReplicaStale}},
		{"one forgotten", t0.Add(Forget + time.Second), map[string]string{"web2": ReplicaStale}},
		{"both forgotten", t0.Add(Forget + time.Minute), map[string]string{}},
	} {
		rs, err := ReadReplicas(ctx, s, tc.at)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := map[string]string{}
		for _, r := range rs {
			got[r.Replica] = r.State
			if r.ServeRunning != (r.State == ReplicaRunning) {
				t.Errorf("%s: %s serve_running %v in state %s", tc.name, r.Replica, r.ServeRunning, r.State)
			}
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: replicas %v, want %v", tc.name, got, tc.want)
		}
		for n, st := range tc.want {
			if got[n] != st {
				t.Errorf("%s: %s is %q, want %q", tc.name, n, got[n], st)
			}
		}
	}
	rs, err := ReadReplicas(ctx, s, t0.Add(10*time.Second))
	must(err)
	if rs[0].Replica != "web1@127.0.0.2" || rs[0].Listeners[0].FallbackHits["x.example"] != 3 || rs[1].Listeners[0].FallbackTotal != 0 {
		t.Errorf("fallback hits not kept per replica: %+v %+v", rs[0].Listeners, rs[1].Listeners)
	}
	if sum := Summary(rs); sum.Replica != "web2" || !sum.ServeRunning {
		t.Errorf("summary is %q running %v, want the freshest running replica web2", sum.Replica, sum.ServeRunning)
	}
	// A graceful stop is not stale, and a running one is the summary.
	stopped := replicaStatus("web2", "web2", 200, 0)
	stopped.StoppedAt = t0.Add(20 * time.Second)
	must(WriteReplica(ctx, s, stopped, t0.Add(20*time.Second)))
	rs, err = ReadReplicas(ctx, s, t0.Add(25*time.Second))
	must(err)
	if rs[1].State != ReplicaStopped || rs[1].ServeRunning {
		t.Errorf("stopped replica: %s running %v", rs[1].State, rs[1].ServeRunning)
	}
	if sum := Summary(rs); sum.Replica != "web1@127.0.0.2" {
		t.Errorf("summary is %q, want the running web1@127.0.0.2", sum.Replica)
	}
	if Summary(nil) != nil {
		t.Error("summary of no replica is not nil")
	}
}

// TestHeartbeatOfItsOwn: a replica is stale after three of its own
// heartbeats, not the default's.
func TestHeartbeatOfItsOwn(t *testing.T) {
	ctx := context.Background()
	s := statetest.NewMem("beat", time.Second)
	st := replicaStatus("fast", "h", 1, 0)
	st.HeartbeatSeconds = 1
	if err := WriteReplica(ctx, s, st, t0); err != nil {
		t.Fatal(err)
	}
	for at, want := range map[time.Duration]string{3 * time.Second: ReplicaRunning, 4 * time.Second: ReplicaStale} {
		rs, err := ReadReplicas(ctx, s, t0.Add(at))
		if err != nil || len(rs) != 1 || rs[0].State != want {
			t.Errorf("after %v: %+v %v, want %s", at, rs, err, want)
		}
	}
}

// TestClaimReplica: a name in use by a running serve elsewhere is refused
// (exit 2, naming the other serve); a stale one, a dead pid on this host
// or this serve itself is not.
func TestClaimReplica(t *testing.T) {
	ctx := context.Background()
	host, _ := os.Hostname()
	dead := 1 << 30 // no such pid
	for _, tc := range []struct {
		name    string
		old     *Status
		writeAt time.Time
		refused bool
	}{
		{"no one had it", nil, t0, false},
		{"running on another host", replicaStatus("web", "other-host", 42, 0), t0, true},
		{"stale on another host", replicaStatus("web", "other-host", 42, 0), t0.Add(-time.Minute), false},
		{"alive on this host", replicaStatus("web", host, os.Getppid(), 0), t0, true},
		{"dead on this host", replicaStatus("web", host, dead, 0), t0, false},
		{"itself", replicaStatus("web", host, os.Getpid(), 0), t0, false},
	} {
		s := statetest.NewMem("claim", time.Second)
		if tc.old != nil {
			if err := WriteReplica(ctx, s, tc.old, tc.writeAt); err != nil {
				t.Fatal(err)
			}
		}
		err := ClaimReplica(ctx, s, replicaStatus("web", host, os.Getpid(), 0), t0.Add(time.Second))
		if (err != nil) != tc.refused {
			t.Errorf("%s: err %v, want refused %v", tc.name, err, tc.refused)
		}
		if err != nil && (fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), `replica name "web" is in use`)) {
			t.Errorf("%s: %v (kind %v)", tc.name, err, fault.KindOf(err))
		}
	}
}

func TestValidateReplicaName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web1", true}, {"web1@127.0.0.2", true}, {"web1@::1", true}, {"a.b-c_d", true},
		{"", false}, {"-web", false}, {"@web", false}, {"web/1", false}, {"web 1", false}, {"..", false},
		{"wéb", false}, {strings.Repeat("a", 129), false}, {strings.Repeat("a", 128), true},
	} {
		err := ValidateReplicaName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && fault.KindOf(err) != fault.Invalid {
			t.Errorf("%q: kind %v, want invalid input", tc.name, fault.KindOf(err))
		}
	}
	if n := DefaultReplicaName("127.0.0.2"); ValidateReplicaName(n) != nil || !strings.HasSuffix(n, "@127.0.0.2") {
		t.Errorf("default name %q", n)
	}
	if n := DefaultReplicaName("::1"); ValidateReplicaName(n) != nil {
		t.Errorf("default name %q: %v", n, ValidateReplicaName(n))
	}
}

// TestStoreHealthAge: the snapshot's age is stamped in whole seconds, zero
// while it is current.
func TestStoreHealthAge(t *testing.T) {
	away := NewStoreHealth(snapshot.Health{Connected: false, SnapshotAt: t0}, t0.Add(42*time.Second+500*time.Millisecond))
	current := NewStoreHealth(snapshot.Health{Connected: true, Current: true, SnapshotAt: t0}, t0.Add(time.Hour))
	if away.SnapshotAgeSeconds != 42 || current.SnapshotAgeSeconds != 0 {
		t.Errorf("ages %d and %d, want 42 and 0", away.SnapshotAgeSeconds, current.SnapshotAgeSeconds)
	}
}

// TestWithSelf: the answering replica's live status replaces what it last
// wrote, or joins the list; a directory store's list is left alone.
func TestWithSelf(t *testing.T) {
	rs := []Replica{{Status: replicaStatus("a", "h", 1, 0), State: ReplicaStale}, {Status: replicaStatus("c", "h", 3, 0), State: ReplicaRunning}}
	got := WithSelf(rs, replicaStatus("a", "h", 1, 7))
	if got[0].State != ReplicaRunning || got[0].Listeners[0].FallbackTotal != 7 || len(got) != 2 {
		t.Errorf("self not replaced: %+v", got)
	}
	got = WithSelf(got, replicaStatus("b", "h", 2, 0))
	if len(got) != 3 || got[1].Replica != "b" {
		t.Errorf("self not added in order: %v", got)
	}
	if got := WithSelf([]Replica{}, &Status{PID: 1}); len(got) != 0 {
		t.Errorf("directory store: %v", got)
	}
}

// TestReadOnASharedStore: where serve writes no status.json (a shared
// store), Read is the replicas' summary, so that "is a serve running"
// (cert issue, restore) is answered; a directory without a status reads as
// no serve.
func TestReadOnASharedStore(t *testing.T) {
	ctx := context.Background()
	dir := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	if st, err := Read(ctx, dir); err != nil || st.ServeRunning || st.PID != 0 {
		t.Fatalf("empty directory: %+v %v", st, err)
	}
	s := statetest.NewMem("shared", time.Second)
	if err := WriteReplica(ctx, s, replicaStatus("web1", "h", 9, 0), time.Now()); err != nil {
		t.Fatal(err)
	}
	if st, err := Read(ctx, s); err != nil || !st.ServeRunning || st.Replica != "web1" || st.PID != 9 {
		t.Fatalf("shared store: %+v %v", st, err)
	}
}
