// Package runstatus is the runtime status that serve writes under run/ and
// that "p2ptls status", "p2ptls doctor" and the status API read.
package runstatus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// File is serve's status, rewritten when it changes (at most every second).
const File = state.RunDir + "/status.json"

// Status is what serve reports.
type Status struct {
	ServeRunning    bool      `json:"serve_running"`
	PID             int       `json:"pid"`
	Host            string    `json:"host"`
	StartedAt       time.Time `json:"started_at"`
	LastReloadAt    time.Time `json:"last_reload_at"`
	LastReloadError string    `json:"last_reload_error"`
	Reloads         int       `json:"reloads"`
	// ListenHost is serve's --listen-host (P2PTLS_LISTEN_HOST): the host
	// every listener's address was rebound onto, "" when none was given.
	ListenHost string `json:"listen_host"`
	// Panics counts the panics serve recovered from since it started (in
	// a handler, a handshake, a reload or the renewal loop); each one is
	// logged at ERROR with its stack and is a bug to report.
	Panics    int64      `json:"panics"`
	Listeners []Listener `json:"listeners"`
	// Replica is this serve's name on a shared store (--replica-name);
	// UpdatedAt is its last heartbeat, rewritten every HeartbeatSeconds
	// even when nothing changed; StoppedAt is when it shut down
	// gracefully. All are empty on a directory store.
	Replica          string    `json:"replica,omitempty"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
	HeartbeatSeconds int64     `json:"heartbeat_seconds,omitempty"`
	StoppedAt        time.Time `json:"stopped_at,omitzero"`
	// Store is the shared store as this serve sees it, when it serves
	// behind the local snapshot; nil on a directory store.
	Store *StoreHealth `json:"store,omitempty"`
}

// Listener is one public HTTPS listener as serve runs it.
type Listener struct {
	Name string `json:"name"`
	// Addr and HTTPAddr are the listener's configured addresses, as
	// "listener list" shows them.
	Addr     string `json:"addr"`
	HTTPAddr string `json:"http_addr"`
	// BoundAddr and BoundHTTPAddr are where serve binds them: the
	// configured address with ListenHost applied, as the socket reports it
	// while listening ("[::]:443" for ":443"). BoundHTTPAddr is "" without
	// an HTTP address.
	BoundAddr     string `json:"bound_addr"`
	BoundHTTPAddr string `json:"bound_http_addr"`
	Listening     bool   `json:"listening"`
	Error         string `json:"error"`
	Mappings      int    `json:"mappings"`
	// FallbackHits counts fallback handshakes since serve started, by SNI
	// name ("" for none): each one is a public deployment failure.
	FallbackHits  map[string]int64 `json:"fallback_hits"`
	FallbackTotal int64            `json:"fallback_total"`
	// ServedByWildcard maps the host of a mapping that has no usable
	// certificate (pending or failed ACME, a missing or broken file) to the
	// id of the wildcard mapping that served it instead, as serve saw in
	// handshakes since the last reload.
	ServedByWildcard map[string]string `json:"served_by_wildcard"`
}

// FallbackList names the SNI names of a listener's FallbackHits with their
// counts ("name=N", "(no SNI)=N" for a handshake without one), most hits
// first and names alphabetically among equals, for status and doctor.
func FallbackList(hits map[string]int64) []string {
	names := slices.Sorted(maps.Keys(hits))
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(hits[b], hits[a]) })
	parts := make([]string, len(names))
	for i, n := range names {
		shown := n
		if n == "" {
			shown = "(no SNI)"
		}
		parts[i] = fmt.Sprintf("%s=%d", shown, hits[n])
	}
	return parts
}

// Write saves st for other processes.
func Write(ctx context.Context, s state.Store, st *Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	return s.Write(ctx, File, append(b, '\n'), state.SecretMode)
}

// Read loads the last status serve wrote and decides whether that serve is
// still running: its pid is alive on this host. A status left by a serve
// that died reads as not running. On a shared store, where serve writes
// no File, it is the Summary of the replicas: running when any runs
// (which is what "is a serve answering challenges" asks).
func Read(ctx context.Context, s state.Store) (*Status, error) {
	b, err := s.Read(ctx, File)
	if errors.Is(err, fs.ErrNotExist) {
		rs, err := ReadReplicas(ctx, s, time.Now())
		if err != nil {
			return nil, err
		}
		if st := Summary(rs); st != nil {
			return st, nil
		}
		return &Status{Listeners: []Listener{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", File, err)
	}
	var st Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read %s: %w", File, err)
	}
	host, _ := os.Hostname()
	st.ServeRunning = st.PID > 0 && st.Host == host && alive(st.PID)
	if st.Listeners == nil {
		st.Listeners = []Listener{}
	}
	return &st, nil
}

// alive reports whether a process with pid exists (EPERM: it exists but is
// not ours).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
