package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// lockPurpose is what the primary's lock holder is shown while the copy
// reads it.
const lockPurpose = "copy the state for serve's snapshot"

// connect opens the primary when it is not open yet, subscribes to its
// changes (before copying, so that a change during the copy is told),
// copies it whole and marks it up; subscribers are then told Full. A copy
// that fails for another reason than an unreachable primary leaves it up
// (it answers; its state does not load) and the copy as it was.
func (s *Store) connect(ctx, runCtx context.Context, feed **state.Feed) error {
	s.mu.Lock()
	p := s.primary
	s.tried = time.Now()
	s.mu.Unlock()
	fail := func(err error) error {
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		return err
	}
	if p == nil {
		var err error
		if p, err = s.o.Open(ctx); err != nil {
			return fail(err)
		}
		s.mu.Lock()
		s.primary = p
		s.mu.Unlock()
	}
	if err := probe(ctx, p, s.o.Source); errors.Is(err, state.ErrUnreachable) {
		// A primary that does not answer costs one short request, not a
		// copy's requests each waiting out the store's request timeout.
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return err // stopped meanwhile: whether the primary answers is not known
	}
	if *feed == nil {
		*feed = p.WatchChanges(runCtx)
	} else {
		(*feed).Take() // what it held, the whole copy covers
	}
	if err := s.update(ctx, p, nil); errors.Is(err, state.ErrUnreachable) {
		return fail(err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	wasDown := s.lastErr != nil
	s.up, s.since, s.lastErr = true, time.Now(), nil
	rev := s.mark.Revision
	s.mu.Unlock()
	if wasDown {
		s.log.Info("the store answers again: snapshot re-synced, serving from the store", "store", s.o.Source, "revision", rev)
	}
	s.publish(state.Changed{Full: true})
	return nil
}

// pending is what the primary's feed told and the copy has not taken yet.
type pending struct {
	full  bool
	names map[string]struct{}
}

func (w *pending) add(c state.Changed) {
	if c.Full {
		w.full = true
		return
	}
	for _, n := range c.Names {
		if excluded(path.Clean(n)) {
			continue // runtime status: no part of the copy
		}
		if w.names == nil {
			w.names = map[string]struct{}{}
		}
		w.names[n] = struct{}{}
	}
}

func (w *pending) empty() bool { return !w.full && len(w.names) == 0 }

// list is the names to copy, nil for everything.
func (w *pending) list() []string {
	if w.full {
		return nil
	}
	return slices.Sorted(maps.Keys(w.names))
}

// run follows the primary until ctx ends: it passes the primary's changes
// to subscribers and into the copy, reconnects with a back-off while the
// primary is away, and asks a quiet primary for its revision every
// Heartbeat so that its loss is noticed.
func (s *Store) run(ctx context.Context, feed *state.Feed) {
	defer close(s.done)
	l := loop{s: s, feed: feed, retry: s.o.RetryMin, failed: s.o.RetryMin}
	s.mu.Lock()
	if s.up && s.syncErr != "" {
		l.work.full = true // the first copy failed: try again
	}
	s.mu.Unlock()
	timer := time.NewTimer(l.step(ctx, false))
	defer timer.Stop()
	for {
		var changes <-chan struct{}
		if l.feed != nil {
			changes = l.feed.C
		}
		beat := false
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok { // the primary ended the subscription: subscribe again, copy all
				l.feed = nil
				l.work.full = true
				break
			}
			c := l.feed.Take()
			if _, up := s.primaryUp(); up {
				s.publish(c)
				l.work.add(c)
				if !l.work.empty() {
					s.setCurrent(false)
				}
			}
		case <-s.kick:
		case <-timer.C:
			beat = true
		}
		timer.Reset(l.step(ctx, beat))
	}
}

// loop is run's state.
type loop struct {
	s             *Store
	feed          *state.Feed
	work          pending
	retry, failed time.Duration // back-offs of reconnection and of a failed copy
}

// step does what is due and returns how long to wait for the next one.
func (l *loop) step(ctx context.Context, beat bool) time.Duration {
	s := l.s
	p, up := s.primaryUp()
	if !up {
		s.mu.Lock()
		since := time.Since(s.tried)
		s.mu.Unlock()
		if since < s.o.RetryMin { // woken early (a refused change): not more often than this
			return s.o.RetryMin - since
		}
		if err := s.connect(ctx, ctx, &l.feed); err != nil {
			if !errors.Is(err, state.ErrUnreachable) && ctx.Err() == nil {
				s.log.Warn("cannot open the store; trying again", "store", s.o.Source, "err", oneLine(err))
			}
			d := l.retry
			l.retry = min(2*l.retry, s.o.RetryMax)
			return d
		}
		l.retry, l.work = s.o.RetryMin, pending{}
		s.mu.Lock()
		failed := s.syncErr != ""
		s.mu.Unlock()
		if failed { // up, but its state did not load: copy it again later
			l.work.full = true
			return l.failed
		}
		return s.o.Heartbeat
	}
	if l.feed == nil {
		l.feed = p.WatchChanges(ctx)
		l.work.full = true
	}
	if !l.work.empty() {
		err := s.update(ctx, p, l.work.list())
		switch {
		case err == nil:
			l.work, l.failed = pending{}, s.o.RetryMin
		case errors.Is(err, state.ErrUnreachable):
			s.markDown(err)
			l.work = pending{} // reconnecting copies everything
			return s.o.RetryMin
		case ctx.Err() != nil:
			return s.o.Heartbeat
		default:
			d := l.failed
			l.failed = min(2*l.failed, s.o.RetryMax)
			return d
		}
	} else if beat {
		if err := probe(ctx, p, s.o.Source); errors.Is(err, state.ErrUnreachable) {
			s.markDown(err)
			return s.o.RetryMin
		}
	}
	return s.o.Heartbeat
}

// probe asks p for its revision within probeTimeout; a primary that does
// not answer in it is unreachable.
func probe(ctx context.Context, p state.Store, source string) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := p.Revision(pctx)
	if ctx.Err() == nil && err != nil && !errors.Is(err, state.ErrUnreachable) && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("the store %s did not answer in %s: %w", source, probeTimeout, state.ErrUnreachable)
	}
	return err
}

func (s *Store) setCurrent(v bool) {
	s.mu.Lock()
	s.inSync = v
	s.mu.Unlock()
}

// update brings the copy up to date with the primary: the names given
// (each a file or a directory), or everything for nil. It records the
// outcome for Health.
func (s *Store) update(ctx context.Context, p state.Store, names []string) error {
	err := s.copyFrom(ctx, p, names)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.syncErr = ""
	case errors.Is(err, state.ErrUnreachable), ctx.Err() != nil:
	default:
		s.syncErr = oneLine(err)
		s.inSync = false
		s.log.Error("the snapshot keeps the last good state", "store", s.o.Source, "snapshot", s.o.Dir, "err", s.syncErr)
	}
	return err
}

// Pinner is a store that reads its state as one change left it without
// its lock (the etcd store: reads at one etcd revision): Pinned returns a
// reader of the state at that point and the store's revision of it. The
// copy is read through it, so that serve's replicas never hold up a
// writer; other stores are read under their lock.
type Pinner interface {
	Pinned(ctx context.Context) (state.Reader, string, error)
}

// copyFrom reads what changed from the primary as one change left it
// (pinned, or under its lock), checks that the copy as changed loads, and
// applies the change with the new marker as one Apply under the copy's
// lock.
func (s *Store) copyFrom(ctx context.Context, p state.Store, names []string) error {
	var ch state.Change
	var rev string
	diff := func(r state.Reader) error {
		d := differ{p: r, c: s.view, ch: &ch}
		if names == nil {
			return d.tree(ctx, "")
		}
		for _, n := range topmost(names) {
			if err := d.tree(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}
	err := func() (err error) {
		if pin, ok := p.(Pinner); ok {
			var r state.Reader
			if r, rev, err = pin.Pinned(ctx); err != nil {
				return err
			}
			return diff(r)
		}
		unlock, err := p.Lock(ctx, lockPurpose)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, unlock()) }()
		if rev, err = p.Revision(ctx); err != nil {
			return err
		}
		return diff(p)
	}()
	if err != nil {
		return fmt.Errorf("copy the state of %s: %w", s.o.Source, err)
	}
	now := time.Now()
	s.mu.Lock()
	have, mark := s.have, s.mark
	s.mu.Unlock()
	if ch.Empty() && have && mark.Revision == rev && mark.Source == s.o.Source {
		s.mu.Lock()
		s.inSync, s.syncAt = true, now
		s.mu.Unlock()
		return nil
	}
	cfg := s.cfg
	if !have || touchesConfig(ch) {
		var err error
		if cfg, err = s.check(ctx, ch, names == nil); err != nil {
			return fmt.Errorf("the state of %s does not load: %w", s.o.Source, err)
		}
	}
	m := marker{Format: markerFormat, Source: s.o.Source, Revision: rev, SyncedAt: now.UTC().Truncate(time.Second)}
	b, err := m.encode()
	if err != nil {
		return err
	}
	ch.Writes = append(ch.Writes, state.FileWrite{Name: MarkerFile, Data: b, Perm: state.SecretMode})
	if err := s.lockCopy(ctx, func() error { return s.copy.Apply(ctx, ch) }); err != nil {
		return fmt.Errorf("update the snapshot %s: %w", s.o.Dir, err)
	}
	s.cfg = cfg
	s.mu.Lock()
	s.mark, s.have, s.inSync, s.syncAt = m, true, true, now
	s.mu.Unlock()
	return nil
}

// check loads the copy as ch leaves it. A change of records alone is
// checked against the config the copy held (Config.LoadChanged: only the
// changed records are read and looked at closely); a whole copy, a change
// of p2ptls.toml, or a copy whose config is not known is loaded whole.
func (s *Store) check(ctx context.Context, ch state.Change, whole bool) (*state.Config, error) {
	after := newOverlay(s.view, ch)
	if whole || s.cfg == nil {
		return state.LoadConfig(ctx, after)
	}
	names := slices.DeleteFunc(slices.Clone(ch.Deletes), func(n string) bool { return !readByLoad(n) })
	for _, w := range ch.Writes {
		if readByLoad(w.Name) {
			names = append(names, w.Name)
		}
	}
	return s.cfg.LoadChanged(ctx, after, names)
}

// touchesConfig reports whether c changes what LoadConfig reads.
func touchesConfig(c state.Change) bool {
	if slices.ContainsFunc(c.Deletes, readByLoad) {
		return true
	}
	return slices.ContainsFunc(c.Writes, func(w state.FileWrite) bool { return readByLoad(w.Name) })
}

// readByLoad reports whether LoadConfig reads name (or what is under it).
func readByLoad(n string) bool {
	return n == state.ConfigFile || n == state.RecordsDir || strings.HasPrefix(n, state.RecordsDir+"/")
}

// topmost returns the clean names that are not inside another of them,
// sorted, each once.
func topmost(names []string) []string {
	clean := make([]string, 0, len(names))
	for _, n := range names {
		if n = path.Clean(n); !excluded(n) && n != "." && n != "" {
			clean = append(clean, n)
		}
	}
	slices.Sort(clean)
	clean = slices.Compact(clean)
	out := clean[:0]
	for _, n := range clean {
		if len(out) > 0 && strings.HasPrefix(n, out[len(out)-1]+"/") {
			continue
		}
		out = append(out, n)
	}
	return out
}

// differ adds to ch what makes the copy c hold what the primary p holds.
type differ struct {
	p  state.Reader
	c  state.Reader
	ch *state.Change
}

// stat is Stat with a missing name as nil; "" is the root, a directory.
func stat(ctx context.Context, r state.Reader, name string) (fs.FileInfo, bool, error) {
	if name == "" {
		return nil, true, nil
	}
	info, err := r.Stat(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return info, true, nil
}

func isDir(name string, info fs.FileInfo) bool { return name == "" || info.IsDir() }

// tree compares name, a file or a directory with everything under it.
func (d *differ) tree(ctx context.Context, name string) error {
	pi, inP, err := stat(ctx, d.p, name)
	if err != nil {
		return err
	}
	ci, inC, err := stat(ctx, d.c, name)
	if err != nil {
		return err
	}
	switch {
	case !inP:
		if inC {
			d.ch.Deletes = append(d.ch.Deletes, name)
		}
		return nil
	case isDir(name, pi):
		if inC && !isDir(name, ci) {
			d.ch.Deletes = append(d.ch.Deletes, name)
			inC = false
		}
		pn, err := listed(ctx, d.p, name)
		if err != nil {
			return err
		}
		if inC {
			cn, err := listed(ctx, d.c, name)
			if err != nil {
				return err
			}
			for _, n := range cn {
				if _, found := slices.BinarySearch(pn, n); !found {
					d.ch.Deletes = append(d.ch.Deletes, path.Join(name, n))
				}
			}
		}
		for _, n := range pn {
			if err := d.tree(ctx, path.Join(name, n)); err != nil {
				return err
			}
		}
		return nil
	case !pi.Mode().IsRegular():
		return fmt.Errorf("%s is neither a file nor a directory (%s)", name, pi.Mode().Type())
	}
	data, err := d.p.Read(ctx, name)
	if err != nil {
		return err
	}
	perm := pi.Mode().Perm()
	if inC && ci.Mode().IsRegular() && ci.Mode().Perm() == perm {
		if old, err := d.c.Read(ctx, name); err == nil && bytes.Equal(old, data) {
			return nil
		}
	}
	if inC && ci.IsDir() {
		d.ch.Deletes = append(d.ch.Deletes, name)
	}
	d.ch.Writes = append(d.ch.Writes, state.FileWrite{Name: name, Data: data, Perm: perm})
	return nil
}

// listed is List without the excluded names, sorted.
func listed(ctx context.Context, r state.Reader, dir string) ([]string, error) {
	names, err := r.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	names = slices.DeleteFunc(names, func(n string) bool { return excluded(path.Join(dir, n)) })
	slices.Sort(names)
	return names, nil
}
