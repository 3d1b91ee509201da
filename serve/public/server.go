// Package public runs the public HTTPS listeners: certificate selection by
// SNI from each listener's mappings, the loud fallback, the reverse proxy,
// the HTTP listener for ACME HTTP-01 and redirects, and live reload of the
// state directory.
package public

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/serve/sni"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/snapshot"
)

// tickInterval paces what is time-based or lies outside the state: the
// certificate files of "file" mappings (the operator's own files, which no
// change of the state announces), session ticket key rotation, handing a
// burst's memory back, and the runtime status (fallback hits). Changes of
// the state itself are signalled by Store.Watch.
const tickInterval = 500 * time.Millisecond

// Options configure the public listeners.
type Options struct {
	Store state.Store
	Log   *slog.Logger
	// Limits bound every public listener (HTTPS and HTTP) and the reverse
	// proxy's wait for upstreams; zero fields mean no limit.
	Limits edge.Limits
	// ListenHost, when not empty, replaces the host of every listener's
	// address and HTTP address, keeping the port (see listenhost.go); it
	// is what ParseListenHost returns.
	ListenHost string
	// Replica, when not empty, is this serve's name on a shared store: its
	// status goes to runstatus.ReplicaStatusFile and is rewritten at least
	// every Heartbeat (runstatus.DefaultHeartbeat when zero). Empty on a
	// directory store, which keeps runstatus.File.
	Replica   string
	Heartbeat time.Duration
	// StoreHealth, when set, is the shared store's health as the snapshot
	// serve runs behind sees it, reported in the status.
	StoreHealth func() snapshot.Health
}

// Server runs every configured listener and follows the state directory.
type Server struct {
	o       Options
	started time.Time

	mu        sync.Mutex // guards everything below
	listeners map[string]*listener
	errors    map[string]string // listener name -> why it is not listening
	cfg       *state.Config     // without its mappings, which the entries hold
	files     []*entry          // of source "file", whose files change outside p2ptls
	seed      maphash.Seed      // of the entries' mapping digests
	// feed is the subscription Start makes before loading and Run
	// follows; stopFeed ends it.
	feed       *state.Feed
	stopFeed   context.CancelFunc
	filesSig   []certSig // the files of s.files when last loaded, in order
	lastReload time.Time
	lastErr    string
	reloads    int
	rc         reloadCounts // the same outcomes, for metrics (see metricsview.go)
	lastStatus []byte
	loadErrs   []string // certificates that did not load in the last reload
	// byID is every served entry by mapping id, and recErrs the records
	// that failed their last incremental reload (and keep their previous
	// state): what applyChanged needs to touch only the changed mappings.
	byID    idIndex
	recErrs map[string]string
	trim    edge.Trimmer
	gc      gcPacer
	// statusOut, set by Run, writes the status in the background.
	statusOut func(*runstatus.Status)
	closed    bool      // the listeners are stopped: serve is shutting down
	stoppedAt time.Time // a replica's graceful stop, for its last status
	// wroteAt is when the last status was handed for writing, for the
	// replica heartbeat.
	wroteAt time.Time
}

// New prepares the server; Start loads the state and opens the listeners.
func New(o Options) *Server {
	return &Server{o: o, started: time.Now().UTC().Truncate(time.Second), listeners: map[string]*listener{}, errors: map[string]string{},
		seed: maphash.MakeSeed(), recErrs: map[string]string{}}
}

// Start loads the state and opens every listener. A state that does not
// load, or a listener that cannot bind, stops serve from starting.
//
// It subscribes to the store's changes before the load, so that a change
// made during it reaches Run: comparing revisions before and after
// instead would stat every record twice (0.3 s each at 100k). The
// subscription ends with Run, or with a Start that fails.
func (s *Server) Start(ctx context.Context) error {
	stopMemProfile()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subscribe(ctx)
	cfg, err := state.LoadConfig(ctx, s.o.Store)
	if err != nil {
		s.unsubscribe()
		return err
	}
	if err := s.apply(ctx, cfg); err != nil {
		s.stopAll()
		return err
	}
	s.filesSig = s.filesSignature(ctx)
	s.trimAfterLoad()
	if s.o.Replica != "" {
		if err := runstatus.ClaimReplica(ctx, s.o.Store, s.status(), time.Now()); err != nil {
			s.stopAll()
			return err
		}
	}
	return s.writeStatus(ctx)
}

// trimAfterLoadMin is the number of mappings from which a full load's
// garbage is handed back to the operating system at once: decoding 100k
// records allocates about 370 MB, and the heap goal that leaves keeps
// tens of MB resident that serve will not use again. Below it the
// collection costs more than it returns.
const trimAfterLoadMin = 10_000

// trimAfterLoad returns a large full load's garbage to the operating
// system, in the background: handshakes are served meanwhile.
func (s *Server) trimAfterLoad() {
	if s.byID.len() >= trimAfterLoadMin {
		go freeOSMemory()
	}
}

// freeOSMemory is debug.FreeOSMemory; a test counts the calls.
var freeOSMemory = debug.FreeOSMemory

// subscribe starts the subscription Run follows, unless one is running.
// It outlives ctx, which bounds only the start: Run or stopAll ends it.
func (s *Server) subscribe(ctx context.Context) {
	if s.feed != nil {
		return
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.feed, s.stopFeed = s.o.Store.WatchChanges(wctx), stop
}

// unsubscribe ends the subscription, if any.
func (s *Server) unsubscribe() {
	if s.stopFeed != nil {
		s.stopFeed()
	}
	s.feed, s.stopFeed = nil, nil
}

// Run follows the state until ctx ends, then closes the listeners,
// letting connections in flight finish.
func (s *Server) Run(ctx context.Context) {
	s.mu.Lock()
	s.subscribe(ctx) // Run without Start: from now on
	feed := s.feed
	s.mu.Unlock()
	changes := feed.C
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	hand, stopStatus := s.statusWriter(context.WithoutCancel(ctx))
	s.statusOut = hand
	// What changed since Start subscribed is pending on the feed.
	s.pollOnce(ctx, false)
	for {
		var changed state.Changed
		select {
		case <-ctx.Done():
			stopStatus()
			s.mu.Lock()
			s.unsubscribe()
			// The last status keeps the closed listeners' fallback hits: a
			// graceful stop must not erase what doctor warns about.
			s.closeAll()
			if s.o.Replica != "" {
				s.stoppedAt = time.Now().UTC()
			}
			// ctx is done: the last status is written without it, bounded.
			wctx, cancelWrite := context.WithTimeout(context.WithoutCancel(ctx), lastStatusTimeout)
			if err := s.writeStatus(wctx); err != nil {
				s.o.Log.Error("cannot write runtime status", "err", err)
			}
			cancelWrite()
			s.mu.Unlock()
			return
		case _, ok := <-changes:
			if !ok { // the subscription ended
				changes = nil
				continue
			}
			changed = feed.Take()
		case <-t.C:
		}
		s.pollChanged(ctx, changed)
	}
}

// pollOnce is one poll with the lock held, reloading everything when
// signalled.
func (s *Server) pollOnce(ctx context.Context, signalled bool) {
	s.pollChanged(ctx, state.Changed{Full: signalled})
}

// pollChanged is one poll with the lock held, reloading what c names. A
// panic in it (an odd state the reload trips over) is recovered and
// counted; the listeners keep serving what they served, and the next poll
// tries again.
//
// The status file is written by statusOut when Run set it, else here
// after the lock is released: its fsync can take a while on a busy disk,
// and the next change must not wait for it.
func (s *Server) pollChanged(ctx context.Context, c state.Changed) {
	st := s.pollLocked(ctx, c)
	switch {
	case st == nil:
	case s.statusOut != nil:
		s.statusOut(st)
	default:
		s.saveStatus(ctx, st)
	}
}

func (s *Server) saveStatus(ctx context.Context, st *runstatus.Status) {
	if err := s.persist(ctx, st); err != nil {
		s.o.Log.Error("cannot write runtime status", "err", err)
	}
}

// statusWriter writes the statuses handed to it in the background, the
// latest one first: one not written yet is replaced by a newer one. stop
// waits for the write in progress.
func (s *Server) statusWriter(ctx context.Context) (hand func(*runstatus.Status), stop func()) {
	pending := make(chan *runstatus.Status, 1)
	var wg sync.WaitGroup
	wg.Go(func() {
		for st := range pending {
			s.saveStatus(ctx, st)
		}
	})
	hand = func(st *runstatus.Status) {
		select {
		case <-pending: // superseded
		default:
		}
		pending <- st // only Run hands: the slot is free now
	}
	return hand, func() { close(pending); wg.Wait() }
}

func (s *Server) pollLocked(ctx context.Context, c state.Changed) (st *runstatus.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer edge.Recover(s.o.Log, "state reload")
	if testHook != nil {
		testHook("poll")
	}
	s.pollWith(ctx, c)
	return s.changedStatus()
}

// poll reloads when anything that decides what is served changed: the
// state, when the store signalled a change (signalled), and the files of
// "file" mappings, checked every time. It then does the timed work and
// writes the status when it changed (fallback hits, mostly).
//
// A signal is trusted rather than checked against the revision: Dir
// signals only a changed revision, and checking again would stat every
// record once more per change.
func (s *Server) poll(ctx context.Context, signalled bool) {
	s.pollWith(ctx, state.Changed{Full: signalled})
	if err := s.writeStatus(ctx); err != nil {
		s.o.Log.Error("cannot write runtime status", "err", err)
	}
}

// pollWith is poll told what changed: the mappings c names are reloaded
// alone (applyChanged); p2ptls.toml, a name it cannot place, or Full
// reload everything.
func (s *Server) pollWith(ctx context.Context, c state.Changed) {
	// Before the load, so that a file changed during it is seen next time.
	ids, full := s.affected(c)
	files := s.filesSignature(ctx)
	if len(files) != len(s.filesSig) {
		full = true
	} else if !full {
		// The operator rotated the files of these "file" mappings.
		for i := range files {
			if files[i] != s.filesSig[i] {
				ids = append(ids, s.files[i].id())
			}
		}
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	if full {
		s.filesSig = files
		start := time.Now()
		s.loadErrs = nil
		cfg, err := state.LoadConfig(ctx, s.o.Store)
		if err == nil {
			err = s.apply(ctx, cfg)
		}
		if err == nil {
			clear(s.recErrs)
		}
		if err == nil && len(s.loadErrs) > 0 {
			err = errors.New(strings.Join(s.loadErrs, "; "))
		}
		s.reloaded(start, err, "state reloaded", s.byID.len())
		s.trimAfterLoad()
	} else if len(ids) > 0 {
		start := time.Now()
		s.loadErrs = nil
		// The signatures taken before the reload, so that a file changed
		// during it is seen next time; a new entry's are current.
		before := make(map[*entry]certSig, len(s.files))
		for i, e := range s.files {
			before[e] = files[i]
		}
		s.applyChanged(ctx, ids)
		s.filesSig = s.filesSig[:0]
		for _, e := range s.files {
			sig, ok := before[e]
			if !ok {
				sig = signature(ctx, s.o.Store, e.mapping())
			}
			s.filesSig = append(s.filesSig, sig)
		}
		var errs []string
		for _, id := range slices.Sorted(maps.Keys(s.recErrs)) {
			errs = append(errs, s.recErrs[id])
		}
		errs = append(errs, s.loadErrs...)
		var err error
		if len(errs) > 0 {
			err = errors.New(strings.Join(errs, "; "))
		}
		s.reloaded(start, err, "mappings reloaded", len(ids))
	}
	s.gc.pace()
	now := time.Now()
	if s.trim.Observe(edge.OpenConns(), now) {
		s.o.Log.Debug("a burst of connections is over; returned its memory to the operating system", "open_connections", edge.OpenConns())
	}
	for _, l := range s.listeners {
		if err := l.tickets.rotate(l.tls, now); err != nil {
			s.o.Log.Error("cannot rotate the session ticket key; the previous one stays in use", "listener", l.view.Load().cfg.Name, "err", err)
		}
	}
}

// reloaded records the outcome of a reload.
func (s *Server) reloaded(start time.Time, err error, msg string, n int) {
	s.lastReload = time.Now().UTC()
	s.reloads++
	s.rc.note(err, s.lastReload)
	if err != nil {
		s.lastErr = err.Error()
		s.o.Log.Error("state change not fully applied; what did not load keeps its previous state", "err", err)
	} else {
		s.lastErr = ""
		s.o.Log.Info(msg, "mappings", n, "took", time.Since(start).Round(10*time.Microsecond))
	}
}

// filesSignature describes the files of "file" mappings, which change
// outside p2ptls and so outside the store's revision; it is a stat per
// such mapping, cheap enough for every tick.
func (s *Server) filesSignature(ctx context.Context) []certSig {
	sigs := make([]certSig, len(s.files))
	for i, e := range s.files {
		sigs[i] = signature(ctx, s.o.Store, e.mapping())
	}
	return sigs
}

// apply makes the running listeners match cfg. Entries whose mapping and
// files did not change are kept, with their parsed certificates.
func (s *Server) apply(ctx context.Context, cfg *state.Config) error {
	views := make(map[string]*view, len(cfg.Listeners))
	counts := make(map[string]int, len(cfg.Listeners))
	var strs strArena
	for _, m := range cfg.Mappings {
		counts[m.Listener] += len(m.Hosts)
	}
	for _, lc := range cfg.Listeners {
		var old map[string]*entry
		if l, ok := s.listeners[lc.Name]; ok {
			list := l.view.Load().entries
			old = make(map[string]*entry, list.len())
			for _, e := range list.all() {
				old[e.id()] = e
			}
		}
		v, err := s.buildView(ctx, lc, cfg.Mappings, counts[lc.Name], old, &strs)
		if err != nil {
			return err
		}
		views[lc.Name] = v
	}
	for name, l := range s.listeners {
		v, keep := views[name]
		cur := l.view.Load().cfg
		if keep && cur.Addr == v.cfg.Addr && cur.HTTPAddr == v.cfg.HTTPAddr {
			continue
		}
		l.stop()
		delete(s.listeners, name)
	}
	var firstErr error
	clashes := rebindClashes(cfg.Listeners, s.o.ListenHost)
	for name, v := range views {
		if l, ok := s.listeners[name]; ok {
			l.view.Store(v)
			continue
		}
		err := clashes[name]
		var l *listener
		if err == nil {
			l, err = startListener(v, s.o)
		}
		if err != nil {
			err = fmt.Errorf("listener %q: %w", name, err)
			s.errors[name] = err.Error()
			s.o.Log.Error("cannot open listener", "listener", name, "err", err)
			firstErr = cmpErr(firstErr, err)
			continue
		}
		delete(s.errors, name)
		s.listeners[name] = l
	}
	for name := range s.errors {
		if _, ok := views[name]; !ok {
			delete(s.errors, name)
		}
	}
	s.files = nil
	// Sized at once: growing it to 100k entries costs 50 ms at start.
	s.byID.reset(len(cfg.Mappings), strs.refs())
	for _, lc := range cfg.Listeners {
		s.files = append(s.files, views[lc.Name].files...)
		for _, e := range views[lc.Name].entries.all() {
			s.byID.set(e)
		}
	}
	s.cfg = servedConfig(cfg)
	return firstErr
}

// servedConfig is what serve keeps of a loaded config: not its mappings
// (the entries hold what is served of them) nor what it was loaded from
// (the store's baseline: every mapping's id and digest, whose ids are
// views of the records memo, which they would keep whole: about 12 MB at
// 100k mappings), but its listeners, settings and credentials, which an
// incremental reload validates a changed record against.
func servedConfig(cfg *state.Config) *state.Config {
	return &state.Config{SchemaVersion: cfg.SchemaVersion, ACME: cfg.ACME, Listeners: cfg.Listeners, DNSCredentials: cfg.DNSCredentials}
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// buildView indexes the mappings of one listener. Entries of unchanged
// mappings are kept, with their parsed certificates; only entries already
// in use are checked for changed files.
func (s *Server) buildView(ctx context.Context, lc state.Listener, all []state.Mapping, count int, old map[string]*entry, strs *strArena) (*view, error) {
	b := sni.NewBuilderOn(count, (*entry).hosts, strs.refs())
	entries := newEntryList(strs.refs(), count)
	var files []*entry
	for i := range all {
		m := &all[i]
		if m.Listener != lc.Name {
			continue
		}
		digest := mappingDigest(s.seed, m)
		e, ok := old[m.ID]
		switch {
		case !ok || e.digest != digest:
			e = newEntry(m, lc.Name, digest, strs)
		case e.changed(ctx, s.o.Store):
			// Rotated files: load now, and keep serving the previous
			// certificate when the new one does not load.
			ne := newEntry(m, lc.Name, digest, strs)
			if err := ne.load(s.o.Store); err != nil {
				s.o.Log.Warn("certificate changed but does not load; still serving the previous one", "mapping", m.ID, "err", err)
				s.loadErrs = append(s.loadErrs, err.Error())
			} else {
				e = ne
			}
		}
		entries.add(e)
		if m.Source == state.SourceFile {
			files = append(files, e)
		}
		for h := range e.eachHost() {
			if err := b.Add(h, e); err != nil {
				return nil, fmt.Errorf("listener %q: %w", lc.Name, err)
			}
		}
	}
	return &view{cfg: lc, index: b.Build(), entries: entries, files: files}, nil
}

func (s *Server) stopAll() {
	s.unsubscribe()
	s.closeAll()
	clear(s.listeners)
	s.closed = false
}

// closeAll stops every listener but keeps them in s.listeners, for their
// counts; status then reports them as not listening.
func (s *Server) closeAll() {
	var wg sync.WaitGroup
	for _, l := range s.listeners {
		wg.Go(l.stop)
	}
	wg.Wait()
	s.closed = true
}

// Status is what serve reports now.
func (s *Server) Status() *runstatus.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, now := s.status(), time.Now()
	if st.Store != nil {
		st.Store = runstatus.NewStoreHealth(st.Store.Health, now)
	}
	if st.Replica != "" {
		st.UpdatedAt = now.UTC() // live, not the last heartbeat written
	}
	return st
}

func (s *Server) status() *runstatus.Status {
	host, _ := os.Hostname()
	st := &runstatus.Status{
		ServeRunning: true, PID: os.Getpid(), Host: host, StartedAt: s.started,
		LastReloadAt: s.lastReload, LastReloadError: s.lastErr, Reloads: s.reloads,
		ListenHost: s.o.ListenHost, Listeners: []runstatus.Listener{}, Panics: edge.Panics(),
	}
	if s.o.Replica != "" {
		st.Replica, st.HeartbeatSeconds, st.StoppedAt = s.o.Replica, int64(s.heartbeat()/time.Second), s.stoppedAt
	}
	if s.o.StoreHealth != nil {
		// Its age is stamped when written (persist): it changes every
		// second while the store is away, the rest does not.
		st.Store = &runstatus.StoreHealth{Health: s.o.StoreHealth()}
	}
	if s.cfg == nil {
		return st
	}
	for _, lc := range s.cfg.Listeners {
		ls := runstatus.Listener{Name: lc.Name, Addr: lc.Addr, HTTPAddr: lc.HTTPAddr, Error: s.errors[lc.Name], FallbackHits: map[string]int64{},
			ServedByWildcard: map[string]string{}, BoundAddr: rebind(lc.Addr, s.o.ListenHost), BoundHTTPAddr: rebind(lc.HTTPAddr, s.o.ListenHost)}
		if l, ok := s.listeners[lc.Name]; ok {
			v := l.view.Load()
			ls.BoundAddr, ls.BoundHTTPAddr = l.addr.String(), l.boundHTTP()
			ls.Listening = !s.closed
			ls.Mappings = v.entries.len()
			ls.ServedByWildcard = v.byWildcard.snapshot()
			ls.FallbackHits = l.hits.Snapshot()
			ls.FallbackTotal = l.hits.Total()
		}
		st.Listeners = append(st.Listeners, ls)
	}
	return st
}

// writeStatus saves the status for "p2ptls status" when it changed.
func (s *Server) writeStatus(ctx context.Context) error {
	if st := s.changedStatus(); st != nil {
		return s.persist(ctx, st)
	}
	return nil
}

// lastStatusTimeout bounds the write of the status at shutdown.
const lastStatusTimeout = 5 * time.Second

// persist writes st where this serve's status goes: runstatus.File, or
// its replica's file with the heartbeat and the snapshot's age stamped.
func (s *Server) persist(ctx context.Context, st *runstatus.Status) error {
	if s.o.Replica == "" {
		return runstatus.Write(ctx, s.o.Store, st)
	}
	now := time.Now()
	if st.Store != nil {
		st.Store = runstatus.NewStoreHealth(st.Store.Health, now)
	}
	return runstatus.WriteReplica(ctx, s.o.Store, st, now)
}

// heartbeat is how often a replica's status is rewritten unchanged.
func (s *Server) heartbeat() time.Duration {
	if s.o.Heartbeat > 0 {
		return s.o.Heartbeat
	}
	return runstatus.DefaultHeartbeat
}

// changedStatus is the status when it changed since the last one written,
// or when a replica's heartbeat is due; else nil.
func (s *Server) changedStatus() *runstatus.Status {
	st := s.status()
	b, err := json.Marshal(st)
	due := s.o.Replica != "" && time.Since(s.wroteAt) >= s.heartbeat()
	if err != nil || bytes.Equal(b, s.lastStatus) && !due {
		return nil
	}
	s.lastStatus, s.wroteAt = b, time.Now()
	return st
}
