// Package snapshot keeps serve serving while a shared store is away: a
// state.Store that passes every call to a primary store (etcd) and keeps
// a local copy of the primary's last good desired state in a directory,
// from which it answers reads while the primary is unreachable.
//
// The copy is a state directory (state.Dir) holding what the primary
// holds, runtime status (run/) and in-flight challenges
// (acme/challenges/) aside, plus MarkerFile, which says whose copy it is
// and of which revision:
//
//	<dir>/                       0700
//	├── p2ptls-snapshot.toml     source, revision, synced_at (MarkerFile)
//	├── p2ptls.toml, mappings/, certs/, acme/accounts/, secrets/ …
//	└── p2ptls.lock, p2ptls.rev  the copy's own lock and revision
//
// Consistency: every update of the copy is read from the primary as one
// change left it: through Pinner when the primary is one (the etcd store
// reads at one etcd revision, so no replica holds up a writer), else under
// the primary's lock (so no change made under it is seen half made); it is
// checked to load when it touches the config or a record, over the copy as
// the update leaves it (state.LoadConfig for a whole copy or a change of
// p2ptls.toml; Config.LoadChanged for records alone, which reads and checks
// only the changed records against the config the copy held), and is
// written with the marker as one Apply under the copy's lock (so a crash leaves the copy as
// it was or as updated). A state that does not load never reaches the
// copy: it keeps the last good one.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// Defaults of Options.
const (
	DefaultRetryMin  = time.Second
	DefaultRetryMax  = 2 * time.Second
	DefaultHeartbeat = 5 * time.Second
)

// probeTimeout bounds one heartbeat or reconnection probe (one request
// for the revision): a primary that does not answer in it is taken for
// unreachable. It is short so that a lost primary is noticed, and a
// returned one tried, within seconds; reconnection probes are cheap, so
// the back-off stays short too (DefaultRetryMax).
const probeTimeout = 3 * time.Second

// Options configure Open.
type Options struct {
	// Open opens the primary. Open calls it once; when it fails with an
	// error wrapping state.ErrUnreachable, the copy is served and it is
	// called again in the background until it succeeds.
	Open func(ctx context.Context) (state.Store, error)
	// Dir is the copy's directory, created 0700 when missing.
	Dir string
	// Source names the primary (its URL, without credentials): in
	// messages, and in the copy, so that a copy of another store is never
	// served.
	Source string
	Log    *slog.Logger
	// LockTimeout bounds the wait for the copy's lock; zero means
	// state.DefaultLockTimeout.
	LockTimeout time.Duration
	// RetryMin and RetryMax bound the back-off of reconnection and of a
	// copy that failed; zero means DefaultRetryMin and DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// Heartbeat is how often a connected primary that nothing else asked
	// is asked for its revision, so that its loss shows in Health; zero
	// means DefaultHeartbeat.
	Heartbeat time.Duration
}

// Store is the primary, with the copy standing in for it while it is
// unreachable. Reads (Read, Stat, List, Revision) are answered from the
// copy then; everything that changes the state (Write, Delete, Apply,
// Replace, Lock, TryClaim) fails with the primary's unreachable error, so
// that renewals, which need the lock, pause. Subscribers of Watch and
// WatchChanges are told Full once the primary is back and the copy
// re-synced.
type Store struct {
	o    Options
	log  *slog.Logger
	copy *state.Dir
	view local // the copy as served

	mu      sync.Mutex
	primary state.Store // nil until Open succeeded
	up      bool
	since   time.Time
	lastErr error  // the last unreachable error
	syncErr string // why the last update of the copy failed, "" when it did not
	have    bool   // the copy holds a state that loaded
	mark    marker // the copy's
	inSync  bool   // the copy holds what the primary holds, as far as its feed told
	syncAt  time.Time
	tried   time.Time // the last reconnection attempt

	// cfg is the copy's config as last checked (nil until it is): what a
	// change of records is checked against. Only the goroutine updating
	// the copy (Open, then run) uses it.
	cfg *state.Config

	subsMu sync.Mutex
	subs   map[*state.Feed]struct{}

	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}
}

var (
	_ state.Store   = (*Store)(nil)
	_ state.Claimer = (*Store)(nil)
)

// Open opens the primary and brings the copy in o.Dir up to date. When
// the primary is unreachable it serves the copy, which must then be a
// copy of o.Source that loads; without one it fails with one sentence
// (wrapping the unreachable error). A directory that is not a copy (files
// but no MarkerFile) is refused whatever the primary says, so that no
// other directory is ever overwritten. Close stops it.
func Open(ctx context.Context, o Options) (*Store, error) {
	if o.Open == nil || o.Dir == "" {
		return nil, errors.New("snapshot: Options.Open and Options.Dir are required")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = state.DefaultLockTimeout
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(DefaultRetryMax, o.RetryMin)
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	s := &Store{o: o, log: o.Log, copy: state.OpenDir(o.Dir, o.LockTimeout), since: time.Now(),
		subs: map[*state.Feed]struct{}{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.view = local{s.copy}
	mark, found, err := s.inspect(ctx)
	if err != nil {
		return nil, err
	}
	s.mark = mark
	s.syncAt = mark.SyncedAt

	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	var feed *state.Feed
	err = s.connect(ctx, runCtx, &feed)
	if err != nil && !errors.Is(err, state.ErrUnreachable) {
		stop()
		return nil, fmt.Errorf("open the store %s: %w", o.Source, err)
	}
	if err != nil {
		if err := s.serveCopy(ctx, found, err); err != nil {
			stop()
			return nil, err
		}
	} else if !s.hasCopy() && found {
		s.adoptCopy(ctx) // the primary's state did not load: keep the last good one to fall back to
	}
	go s.run(runCtx, feed)
	return s, nil
}

// Close stops following the primary and closes it when it is an
// io.Closer: the Store owns what Options.Open opened. A primary known to
// be away is closed without asking it anything when it is an awayCloser,
// so that a serve stopping while etcd is down does not wait on etcd.
func (s *Store) Close() error {
	s.stop()
	<-s.done
	p, up := s.primaryUp()
	if c, ok := p.(awayCloser); ok && !up {
		return c.CloseAway()
	}
	if c, ok := p.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// awayCloser is a primary that can close without a request to it (the
// etcd store: without revoking its lease, which then ends by itself).
type awayCloser interface {
	CloseAway() error
}

// serveCopy makes a Store whose primary did not answer at Open serve the
// copy, or refuses to start when there is no copy of o.Source that loads.
func (s *Store) serveCopy(ctx context.Context, found bool, cause error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = cause
	switch {
	case !found:
		return &fault.Error{Kind: fault.Failure, Msg: fmt.Sprintf("the store %s is unreachable and %s holds no snapshot of it to serve from", s.o.Source, s.o.Dir),
			Hint: "start serve once the store answers: it then keeps a snapshot to serve from when the store is away", Err: cause}
	case s.mark.Source != s.o.Source:
		return &fault.Error{Kind: fault.Failure, Msg: fmt.Sprintf("the store %s is unreachable and the snapshot in %s is of %s, not of it", s.o.Source, s.o.Dir, s.mark.Source),
			Hint: "start serve once the store answers (the snapshot is then replaced), or point it at the snapshot of this store", Err: cause}
	}
	cfg, err := state.LoadConfig(ctx, s.view)
	if err != nil {
		return &fault.Error{Kind: fault.Failure, Msg: fmt.Sprintf("the store %s is unreachable and the snapshot in %s does not load (%v)", s.o.Source, s.o.Dir, err),
			Hint: "start serve once the store answers: the snapshot is then re-made", Err: cause}
	}
	s.have, s.cfg = true, cfg
	s.log.Warn("the store is unreachable: serving its snapshot until it answers", "store", s.o.Source, "snapshot", s.o.Dir,
		"revision", s.mark.Revision, "synced_at", s.mark.SyncedAt, "err", oneLine(cause))
	return nil
}

func (s *Store) hasCopy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.have
}

// adoptCopy takes the copy found at Open as the one to fall back to when
// it is of o.Source and loads.
func (s *Store) adoptCopy(ctx context.Context) {
	if s.mark.Source != s.o.Source {
		return
	}
	cfg, err := state.LoadConfig(ctx, s.view)
	if err != nil {
		s.log.Warn("the snapshot does not load; it is re-made once the store's state loads", "snapshot", s.o.Dir, "err", oneLine(err))
		return
	}
	s.cfg = cfg
	s.mu.Lock()
	s.have = true
	s.mu.Unlock()
}

// primaryUp returns the primary and whether it is to be asked.
func (s *Store) primaryUp() (state.Store, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.primary, s.up && s.primary != nil
}

// writable returns the primary, or the unreachable error while it is
// away (and asks the loop to try it again soon).
func (s *Store) writable() (state.Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up && s.primary != nil {
		return s.primary, nil
	}
	s.poke()
	return nil, s.downErr()
}

// downErr is what a change is refused with while the primary is away.
// It holds s.mu.
func (s *Store) downErr() error {
	if errors.Is(s.lastErr, state.ErrUnreachable) {
		return s.lastErr
	}
	return fmt.Errorf("the store %s: %w: %v", s.o.Source, state.ErrUnreachable, s.lastErr)
}

// noticed marks the primary away when err says it did not answer.
func (s *Store) noticed(err error) {
	if errors.Is(err, state.ErrUnreachable) {
		s.markDown(err)
	}
}

// markDown records that the primary did not answer.
func (s *Store) markDown(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if !s.up {
		return
	}
	s.up, s.since, s.inSync = false, time.Now(), false
	s.log.Warn("the store is unreachable: serving its snapshot until it answers; renewals and changes wait",
		"store", s.o.Source, "snapshot", s.o.Dir, "revision", s.mark.Revision, "err", oneLine(err))
	s.poke()
}

// poke wakes the loop without waiting.
func (s *Store) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// fromCopy answers a read from the copy, or with the unreachable error
// when there is no copy that loaded.
func (s *Store) fromCopy() (local, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.have {
		return local{}, s.downErr()
	}
	return s.view, nil
}

// answer asks the primary while it is up, and the copy while it is away
// or when the primary does not answer.
func answer[T any](s *Store, primary func(state.Store) (T, error), inCopy func(local) (T, error)) (T, error) {
	if p, up := s.primaryUp(); up {
		v, err := primary(p)
		if !errors.Is(err, state.ErrUnreachable) {
			return v, err
		}
		s.markDown(err)
	}
	v, err := s.fromCopy()
	if err != nil {
		var zero T
		return zero, err
	}
	return inCopy(v)
}

// quick bounds a call to the primary for runtime status or an in-flight
// challenge to probeTimeout: those are read in TLS handshakes and written
// as serve starts and stops, and a primary that does not answer in it is
// taken for away (the copy then answers) rather than waited for up to the
// store's own request timeout.
func quick(ctx context.Context, name string) (context.Context, context.CancelFunc) {
	if excluded(path.Clean(name)) {
		return context.WithTimeout(ctx, probeTimeout)
	}
	return ctx, func() {}
}

// Read reads name from the primary, or from the copy while it is away.
func (s *Store) Read(ctx context.Context, name string) ([]byte, error) {
	return answer(s, func(p state.Store) ([]byte, error) {
		qctx, cancel := quick(ctx, name)
		defer cancel()
		return p.Read(qctx, name)
	}, func(c local) ([]byte, error) { return c.Read(ctx, name) })
}

// Stat describes name in the primary, or in the copy while it is away.
func (s *Store) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	return answer(s, func(p state.Store) (fs.FileInfo, error) { return p.Stat(ctx, name) },
		func(c local) (fs.FileInfo, error) { return c.Stat(ctx, name) })
}

// List lists dir in the primary, or in the copy while it is away.
func (s *Store) List(ctx context.Context, dir string) ([]string, error) {
	return answer(s, func(p state.Store) ([]string, error) { return p.List(ctx, dir) },
		func(c local) ([]string, error) { return c.List(ctx, dir) })
}

// Revision is the primary's, or while it is away the primary's revision
// the copy holds: the same token when the copy was current, so that a
// reader sees no change where there is none.
func (s *Store) Revision(ctx context.Context) (string, error) {
	return answer(s, func(p state.Store) (string, error) { return p.Revision(ctx) },
		func(local) (string, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.mark.Revision, nil
		})
}

// Write writes to the primary; refused while it is away, but for runtime
// status (run/), which is then kept in the copy's directory.
func (s *Store) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	p, err := s.writable()
	if err != nil {
		if runtimeLocal(path.Clean(name)) {
			return s.copy.Write(ctx, name, data, perm)
		}
		return err
	}
	qctx, cancel := quick(ctx, name)
	defer cancel()
	err = p.Write(qctx, name, data, perm)
	s.noticed(err)
	if errors.Is(err, state.ErrUnreachable) && runtimeLocal(path.Clean(name)) {
		return s.copy.Write(ctx, name, data, perm)
	}
	return err
}

// Delete deletes from the primary; refused while it is away, but for
// runtime status (see Write).
func (s *Store) Delete(ctx context.Context, name string) error {
	p, err := s.writable()
	if err != nil {
		if runtimeLocal(path.Clean(name)) {
			return s.copy.Delete(ctx, name)
		}
		return err
	}
	qctx, cancel := quick(ctx, name)
	defer cancel()
	err = p.Delete(qctx, name)
	s.noticed(err)
	if errors.Is(err, state.ErrUnreachable) && runtimeLocal(path.Clean(name)) {
		return s.copy.Delete(ctx, name)
	}
	return err
}

// Apply applies c to the primary; refused while it is away.
func (s *Store) Apply(ctx context.Context, c state.Change) error {
	p, err := s.writable()
	if err != nil {
		return err
	}
	err = p.Apply(ctx, c)
	s.noticed(err)
	return err
}

// Replace replaces the primary's content; refused while it is away.
func (s *Store) Replace(ctx context.Context, fill func(state.Staging) error, opts state.ReplaceOptions) (*state.Replaced, error) {
	p, err := s.writable()
	if err != nil {
		return nil, err
	}
	r, err := p.Replace(ctx, fill, opts)
	s.noticed(err)
	return r, err
}

// Lock takes the primary's lock; refused while it is away, so that
// nothing changes the state (or renews) from a copy that may be behind.
func (s *Store) Lock(ctx context.Context, purpose string) (func() error, error) {
	p, err := s.writable()
	if err != nil {
		return nil, err
	}
	unlock, err := p.Lock(ctx, purpose)
	if err != nil {
		s.noticed(err)
		return nil, err
	}
	return func() error {
		err := unlock()
		s.noticed(err)
		return err
	}, nil
}

// TryClaim takes a claim of the primary (state.ClaimLocal: its own when it
// is a state.Claimer); refused while it is away.
func (s *Store) TryClaim(ctx context.Context, name string) (func(), bool, error) {
	p, err := s.writable()
	if err != nil {
		return nil, false, err
	}
	release, ok, err := state.ClaimLocal(ctx, p, name)
	s.noticed(err)
	return release, ok, err
}

// Watch is WatchChanges without the names.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	return s.subscribe(ctx, false).C
}

// WatchChanges tells what changed in the primary, as its own feed does,
// and Full when the primary is back after being away (once the copy is
// re-synced): what was read from the copy meanwhile may be behind.
func (s *Store) WatchChanges(ctx context.Context) *state.Feed {
	return s.subscribe(ctx, true)
}

func (s *Store) subscribe(ctx context.Context, names bool) *state.Feed {
	f := state.NewFeed(names)
	s.subsMu.Lock()
	s.subs[f] = struct{}{}
	s.subsMu.Unlock()
	context.AfterFunc(ctx, func() {
		s.subsMu.Lock()
		defer s.subsMu.Unlock()
		delete(s.subs, f)
		f.Close() // under subsMu: publish never signals a closed feed
	})
	return f
}

// publish passes c to every subscriber.
func (s *Store) publish(c state.Changed) {
	if !c.Full && len(c.Names) == 0 {
		return
	}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for f := range s.subs {
		f.Publish(c.Names, c.Full)
	}
}

// oneLine makes err one line for Health and logs.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
