package runstatus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/snapshot"
)

// On a shared store (etcd) every serve replica writes under its own name,
// so that replicas do not overwrite each other:
//
//	run/replicas/<name>/status.json        the replica's Status, with a heartbeat
//	run/replicas/<name>/acme_backoff.json  its renewal loop's back-off count
//
// A directory store keeps File and BackoffFile as they are.
const ReplicasDir = state.RunDir + "/replicas"

// ReplicaStatusFile and ReplicaBackoffFile are the files of replica name.
func ReplicaStatusFile(name string) string  { return path.Join(ReplicasDir, name, "status.json") }
func ReplicaBackoffFile(name string) string { return path.Join(ReplicasDir, name, "acme_backoff.json") }

// DefaultHeartbeat is how often a replica rewrites its status when nothing
// changed. A replica whose last heartbeat is older than StaleAfter of its
// own heartbeats is stale (killed, its host down, or cut off from the
// store); one older than Forget is no longer shown.
const (
	DefaultHeartbeat = 10 * time.Second
	StaleAfter       = 3
	Forget           = 24 * time.Hour
)

// Replica states, as "state" in the JSON.
const (
	ReplicaRunning = "running"
	ReplicaStale   = "stale"
	ReplicaStopped = "stopped"
)

// StoreHealth is the shared store as a replica that serves behind its
// snapshot sees it (snapshot.Health), with the snapshot's age then.
type StoreHealth struct {
	snapshot.Health
	SnapshotAgeSeconds int64 `json:"snapshot_age_seconds"`
}

// NewStoreHealth is h as reported at now.
func NewStoreHealth(h snapshot.Health, now time.Time) *StoreHealth {
	return &StoreHealth{Health: h, SnapshotAgeSeconds: int64(h.Age(now) / time.Second)}
}

// Replica is one replica's status as status, doctor and the API show it.
type Replica struct {
	*Status
	// State is running (fresh heartbeat), stale (none for StaleAfter
	// heartbeats) or stopped (it shut down gracefully).
	State string `json:"state"`
}

// maxReplicaName bounds a replica name: it is one path element of a store
// name and a column of the status table.
const maxReplicaName = 128

// ValidateReplicaName checks a --replica-name: letters, digits and
// ". - _ @ :" (so that "web1@127.0.0.2" and "web1@::1" fit), starting with a
// letter or digit, at most 128 characters.
func ValidateReplicaName(name string) error {
	hint := "give letters, digits and . - _ @ : only, starting with a letter or digit, e.g. web1 or web1@127.0.0.2"
	if name == "" || len(name) > maxReplicaName {
		return fault.Invalidf(hint, "replica name %q must be 1 to %d characters", name, maxReplicaName)
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune(".-_@:", r)) {
			return fault.Invalidf(hint, "replica name %q has %q at position %d", name, r, i+1)
		}
	}
	return nil
}

// DefaultReplicaName is this machine's host name, with "@listenHost" when
// serve rebinds its listeners (replicas on one host differ by it). Host
// name characters a replica name does not take become "-".
func DefaultReplicaName(listenHost string) string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, host)
	if host == "" || host[0] == '.' || host[0] == '-' || host[0] == '_' {
		host = "p2ptls" + host
	}
	if listenHost != "" {
		host += "@" + listenHost
	}
	return host
}

// WriteReplica saves st as replica st.Replica's status, stamped at now.
func WriteReplica(ctx context.Context, s state.Store, st *Status, now time.Time) error {
	st.UpdatedAt = now.UTC()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status of replica %q: %w", st.Replica, err)
	}
	return s.Write(ctx, ReplicaStatusFile(st.Replica), append(b, '\n'), state.SecretMode)
}

// readReplica loads the status of replica name; nil when it has none.
func readReplica(ctx context.Context, s state.Store, name string) (*Status, error) {
	file := ReplicaStatusFile(name)
	b, err := s.Read(ctx, file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	st.Replica = name
	if st.Listeners == nil {
		st.Listeners = []Listener{}
	}
	return &st, nil
}

// replicaState is what st's heartbeat says at now.
func replicaState(st *Status, now time.Time) string {
	beat := time.Duration(st.HeartbeatSeconds) * time.Second
	if beat <= 0 {
		beat = DefaultHeartbeat
	}
	switch {
	case !st.StoppedAt.IsZero():
		return ReplicaStopped
	case now.Sub(st.UpdatedAt) > StaleAfter*beat:
		return ReplicaStale
	}
	return ReplicaRunning
}

// ReadReplicas lists every replica the store holds a status of whose last
// heartbeat is within Forget of now, by name. ServeRunning says whether it
// is running. A directory store has none.
func ReadReplicas(ctx context.Context, s state.Store, now time.Time) ([]Replica, error) {
	names, err := s.List(ctx, ReplicasDir)
	if errors.Is(err, fs.ErrNotExist) {
		return []Replica{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", ReplicasDir, err)
	}
	out := []Replica{}
	for _, name := range names {
		st, err := readReplica(ctx, s, name)
		if err != nil {
			return nil, err
		}
		if st == nil || now.Sub(st.UpdatedAt) > Forget {
			continue
		}
		r := Replica{Status: st, State: replicaState(st, now)}
		st.ServeRunning = r.State == ReplicaRunning
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Replica) int { return strings.Compare(a.Replica, b.Replica) })
	return out, nil
}

// ClaimReplica refuses to start self as replica self.Replica while another
// serve runs under that name: on another host with a fresh heartbeat, or on
// this host with its pid alive. A dead predecessor's name (a restart after
// a crash) is taken over.
func ClaimReplica(ctx context.Context, s state.Store, self *Status, now time.Time) error {
	old, err := readReplica(ctx, s, self.Replica)
	if err != nil || old == nil || replicaState(old, now) != ReplicaRunning {
		return err
	}
	if old.Host == self.Host && (old.PID == self.PID || !alive(old.PID)) {
		return nil
	}
	return fault.Invalidf("give each replica its own --replica-name (P2PTLS_REPLICA_NAME), or stop the other one",
		"replica name %q is in use by the serve of pid %d on host %s (heartbeat %s ago)",
		self.Replica, old.PID, old.Host, now.Sub(old.UpdatedAt).Round(time.Second))
}

// Summary is the top-level status of a shared store: the freshest running
// replica (else the freshest one), with ServeRunning when any replica
// runs. nil when there is no replica.
func Summary(rs []Replica) *Status {
	var best *Status
	for _, r := range rs {
		if best == nil || r.ServeRunning && !best.ServeRunning ||
			r.ServeRunning == best.ServeRunning && r.UpdatedAt.After(best.UpdatedAt) {
			best = r.Status
		}
	}
	return best
}

// WithSelf is rs with the live status of the replica that answers (the
// status API's serve) in place of what it last wrote; rs unchanged on a
// directory store.
func WithSelf(rs []Replica, self *Status) []Replica {
	if self.Replica == "" {
		return rs
	}
	me := Replica{Status: self, State: ReplicaRunning}
	if i := slices.IndexFunc(rs, func(r Replica) bool { return r.Replica == self.Replica }); i >= 0 {
		rs[i] = me
		return rs
	}
	rs = append(rs, me)
	slices.SortFunc(rs, func(a, b Replica) int { return strings.Compare(a.Replica, b.Replica) })
	return rs
}
