package state

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// How Dir notices changes. A change made under the lock renames a new
// p2ptls.rev into the root; a hand edit changes p2ptls.toml or a record
// under RecordsDir. fsnotify reports both within milliseconds. A poll
// catches what fsnotify cannot see: the root replaced (restore swaps the
// whole directory; a bind mount replaced underneath shows no event at
// all), network file systems (NFS reports no other client's change), and
// a system whose inotify limits are used up, where the poll is all there
// is.
const (
	// watchDebounce gathers the events of one change (temporary file,
	// rename, directory sync; several files of one Apply) into one signal.
	// It is short: serving a change promptly matters more than the
	// occasional second signal.
	watchDebounce = 10 * time.Millisecond
	// watchPollMax bounds the time between full comparisons; pollBudget
	// spaces them so that computing the revision (a stat per record) takes
	// at most 1/pollBudget of one core on a large state. While inotify
	// watches the records directory the poll is a backstop (another NFS
	// client's edit, lost events are rescanned at once), so it takes a
	// quarter of that: serve's core is the handshakes' (at 10k records a
	// poll is 17 ms).
	watchPollMax      = 30 * time.Second
	pollBudget        = 50
	pollBudgetWatched = 200
)

// watchPoll is how often the root's identity is checked, and the least
// time between two full comparisons of the revision. A variable only so
// that a test can turn the poll off to see fsnotify alone at work.
var watchPoll = time.Second

// newNotifier starts fsnotify; a test replaces it to force the poll.
var newNotifier = fsnotify.NewWatcher

// notifyUnavailable is logged once per process: without fsnotify changes
// are still noticed, only later.
var notifyUnavailable sync.Once

func warnPollOnly(err error) {
	notifyUnavailable.Do(func() {
		slog.Warn("cannot watch the state directory for changes (inotify limits? see fs.inotify.max_user_instances and max_user_watches); polling instead, so changes take up to a few seconds to be noticed", "err", err)
	})
}

// Revision digests what decides the desired state: the identity of the
// root (a restored directory is another one), p2ptls.rev (every locked
// change writes a new one), and the identity, size and modification time of
// p2ptls.toml and of every record file, so that hand edits count too.
func (d *Dir) Revision(ctx context.Context) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	h := sha256.New()
	if err := d.revision(h); err != nil {
		return "", fmt.Errorf("state revision: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

func (d *Dir) revision(h hash.Hash) error {
	if err := dirInto(h, d.root); err != nil {
		return err
	}
	rev, err := os.ReadFile(filepath.Join(d.root, RevisionFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	h.Write(rev)
	h.Write([]byte{0})
	if err := statInto(h, filepath.Join(d.root, ConfigFile)); err != nil {
		return err
	}
	records := filepath.Join(d.root, RecordsDir)
	if err := dirInto(h, records); err != nil {
		return err
	}
	entries, err := os.ReadDir(records)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || isTemp(e.Name()) {
			continue
		}
		h.Write([]byte(e.Name()))
		h.Write([]byte{0})
		if err := statInto(h, filepath.Join(records, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// statInto adds p's identity, size and modification time to h; a missing
// file adds zeros.
func statInto(h hash.Hash, p string) error {
	id, err := identify(p)
	if err != nil {
		return err
	}
	b := id.encode()
	h.Write(b[:])
	return nil
}

// encode is id's fields, each 8 bytes little-endian.
func (id FileID) encode() [40]byte {
	var b [40]byte
	binary.LittleEndian.PutUint64(b[0:], id.Dev)
	binary.LittleEndian.PutUint64(b[8:], id.Ino)
	binary.LittleEndian.PutUint64(b[16:], uint64(id.Size))
	binary.LittleEndian.PutUint64(b[24:], uint64(id.Mtime))
	binary.LittleEndian.PutUint64(b[32:], uint64(id.Ctime))
	return b
}

// dirInto adds the identity of directory p to h (zeros when missing).
func dirInto(h hash.Hash, p string) error {
	id, err := identify(p)
	if err != nil {
		return err
	}
	// The time and size of a directory change with every runtime write,
	// lock and temporary file in it.
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], id.Dev)
	binary.LittleEndian.PutUint64(b[8:], id.Ino)
	h.Write(b[:])
	return nil
}

// identify is the FileID of p, the zero FileID for a missing file.
func identify(p string) (FileID, error) {
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return FileID{}, nil
	}
	if err != nil {
		return FileID{}, err
	}
	if id, ok := fileIDOf(info); ok {
		return id, nil
	}
	return FileID{Size: info.Size(), Mtime: info.ModTime().UnixNano()}, nil
}

// dirID is a directory's identity: another directory in its place (a
// restore, a bind mount) has another one; the zero value is none.
type dirID struct{ dev, ino uint64 }

func identifyDir(p string) dirID {
	id, _ := identify(p) // an unreadable directory is watched by the poll
	return dirID{id.Dev, id.Ino}
}

// isTemp reports whether name is a temporary file of WriteFileAtomic.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// Watch signals changes of d's desired state (see Store.Watch).
func (d *Dir) Watch(ctx context.Context) <-chan struct{} {
	return d.subscribe(ctx, false).C
}

// WatchChanges signals changes of d's desired state with their names (see
// Store.WatchChanges). Every caller on the same Dir shares one fsnotify
// instance and one poll.
func (d *Dir) WatchChanges(ctx context.Context) *Feed {
	return d.subscribe(ctx, true)
}

func (d *Dir) subscribe(ctx context.Context, names bool) *Feed {
	f := newFeed(names)
	if ctx.Err() != nil {
		close(f.ch)
		return f
	}
	hubs.mu.Lock()
	h := hubs.m[d]
	if h == nil {
		h = startHub(d)
		hubs.m[d] = h
	}
	h.mu.Lock()
	h.subs[f] = struct{}{}
	h.mu.Unlock()
	hubs.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.leave(f)
	}()
	return f
}

// hubs are the running watches, one per Dir with subscribers.
var hubs = struct {
	mu sync.Mutex
	m  map[*Dir]*hub
}{m: map[*Dir]*hub{}}

// hub watches one Dir for all its subscribers.
//
// What changed comes from three places. A locked change names its files
// in p2ptls.rev (see revFile): the hub reads the entries after the last
// one it saw. A hand edit of p2ptls.toml or of a record is an fsnotify
// event that names the file: the hub restats that one file. The poll
// restats every record, spaced out on a large state, and reports the
// records whose stat differs from what the hub last saw; that is the
// safety net for what fsnotify cannot see.
type hub struct {
	d    *Dir
	stop context.CancelFunc
	done chan struct{} // closed when run has returned

	mu   sync.Mutex
	subs map[*Feed]struct{}

	// Only run touches what follows, once startHub has returned.
	w                     *fsnotify.Watcher // nil: polling alone
	root, parent, records string            // absolute, clean
	watched               []string
	rootID, recordsID     dirID
	fullEvery             time.Duration
	firstFull             time.Duration // the least time until the first full poll
	// seen is the stat of p2ptls.toml and of every record as last seen,
	// by hashes of name and of stat: without pointers, the garbage
	// collector need not scan it at 100k records.
	seed maphash.Seed
	seen seenSet
	// since is when the hub began (UnixNano, less firstScanSlack) while
	// seen lacks the records: until the first scan, which names the ones
	// changed since; 0 after it.
	since int64
	revID FileID // of p2ptls.rev when last read
	epoch string // of the revision log last read ("": none)
	seq   uint64
	fresh bool                // no revision log was there: a new one starts from its first change
	edits map[string]struct{} // names of events since the last check
	// editsSince is when check first kept edits back (see check).
	editsSince time.Time
	lost       bool   // events were lost or the root was replaced
	rescan     bool   // the records directory is another one
	lastErr    string // the last failure signalled, to signal it once
	// A background restat (fullPoll): its result arrives on scans; gen
	// tells a result made out of date by a scan since; during holds what
	// was restatted while it ran.
	scanning bool
	gen      uint64
	during   map[uint64]struct{}
	scans    chan scanResult
	scanners sync.WaitGroup
}

// startHub sets the watches up before Watch returns, so that a change made
// after it returns is signalled.
func startHub(d *Dir) *hub {
	root, err := filepath.Abs(d.root)
	if err != nil {
		root = filepath.Clean(d.root)
	}
	ctx, stop := context.WithCancel(context.Background()) // ends with the last subscriber
	h := &hub{d: d, stop: stop, done: make(chan struct{}), subs: map[*Feed]struct{}{},
		root: root, parent: filepath.Dir(root), records: filepath.Join(root, RecordsDir), fullEvery: watchPoll,
		seed: maphash.MakeSeed(), edits: map[string]struct{}{}, fresh: true,
		during: map[uint64]struct{}{}, scans: make(chan scanResult, 1)}
	if w, err := newNotifier(); err != nil {
		warnPollOnly(err)
	} else {
		h.w = w
	}
	h.rootID, h.recordsID = identifyDir(h.root), identifyDir(h.records)
	h.rewatch()
	h.readRev()
	if h.w != nil && slices.Contains(h.watched, h.records) {
		// The first restat of every record (0.3 s at 100k) waits for the
		// first full poll, in the background: fsnotify reports what
		// changes until then, a reader subscribing before it loads
		// (serve's start) need not wait for it nor share a core with it,
		// and the poll tells by their time the records changed since
		// (see firstScanSlack). p2ptls.toml is one stat: it is taken
		// now.
		h.restat(ConfigFile)
		h.since = time.Now().Add(-firstScanSlack).UnixNano()
		h.firstFull = firstScanDelay * watchPoll
	} else {
		// Without events for the records only the poll tells a change,
		// and it needs to know what was there when Watch returned.
		start := time.Now()
		if _, _, err := h.scan(ctx); err != nil {
			h.lastErr = err.Error()
		}
		h.space(time.Since(start))
	}
	go h.run(ctx)
	return h
}

// leave ends f's subscription; the last one stops the hub.
func (h *hub) leave(f *Feed) {
	hubs.mu.Lock()
	h.mu.Lock()
	delete(h.subs, f)
	last := len(h.subs) == 0
	h.mu.Unlock()
	if last {
		delete(hubs.m, h.d)
		h.stop()
	}
	hubs.mu.Unlock()
	if last {
		<-h.done
	}
	close(f.ch)
}

// deliver hands names (or "everything", full) to every subscriber and
// signals them without waiting for any.
func (h *hub) deliver(names []string, full bool) {
	if len(names) == 0 && !full {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for f := range h.subs {
		f.add(names, full)
	}
}

// rewatch (re)adds the watches by path, so that they follow a root or a
// records directory that is now another directory. What cannot be watched
// (not there yet, limits) is left to the poll.
func (h *hub) rewatch() {
	if h.w == nil {
		return
	}
	for _, p := range h.watched {
		_ = h.w.Remove(p) // gone already when its directory was
	}
	h.watched = h.watched[:0]
	want := []string{h.root, h.records}
	if h.parent != h.root {
		// The parent sees the root renamed or created, which the root's
		// own watch cannot.
		want = append(want, h.parent)
	}
	for _, p := range want {
		h.add(p)
	}
}

func (h *hub) add(p string) {
	err := h.w.Add(p)
	switch {
	case err == nil:
		h.watched = append(h.watched, p)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// Not there (yet): the parent's watch or the poll notices it.
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EMFILE):
		warnPollOnly(err)
	default:
		slog.Debug("cannot watch a state directory", "dir", p, "err", err)
	}
}

// event is what an fsnotify event means for the watch.
type event int

const (
	eventIgnore  event = iota
	eventChange        // may have changed the file named
	eventRev           // a locked change wrote a new revision
	eventRewatch       // the root or the records directory was replaced
)

// classify tells what ev means and, for a file of the desired state, its
// store name.
func (h *hub) classify(ev fsnotify.Event) (event, string) {
	name := filepath.Clean(ev.Name)
	if name == h.root || name == h.records {
		return eventRewatch, ""
	}
	base := filepath.Base(name)
	switch filepath.Dir(name) {
	case h.root:
		switch base {
		case ConfigFile:
			return eventChange, ConfigFile
		case RevisionFile:
			return eventRev, ""
		}
		// run/, the lock file, challenges, temporary files and the other
		// directories: a change of those under the lock shows as a new
		// p2ptls.rev.
		return eventIgnore, ""
	case h.records:
		if isTemp(base) {
			return eventIgnore, ""
		}
		return eventChange, RecordsDir + "/" + base
	}
	return eventIgnore, "" // another entry of the parent
}

func (h *hub) run(ctx context.Context) {
	defer close(h.done)
	defer h.scanners.Wait() // a background scan ends with ctx
	var events <-chan fsnotify.Event
	var errs <-chan error
	if h.w != nil {
		defer h.w.Close()
		events, errs = h.w.Events, h.w.Errors
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	armed := false
	arm := func() {
		if !armed {
			debounce.Reset(watchDebounce)
			armed = true
		}
	}
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	nextFull := time.Now().Add(max(h.fullEvery, h.firstFull))
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			kind, name := h.classify(ev)
			switch kind {
			case eventIgnore:
				continue
			case eventChange:
				h.noteEdit(name)
			case eventRewatch:
				// Renamed, removed or created: fsnotify may have dropped
				// the watch, and the path may name another directory now.
				// Other events (attributes) keep the watches as they are.
				rootID, recordsID := identifyDir(h.root), identifyDir(h.records)
				if rootID != h.rootID || recordsID != h.recordsID || ev.Has(fsnotify.Remove|fsnotify.Rename|fsnotify.Create) {
					h.replaced(rootID, recordsID)
				}
			}
			arm()
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: anything may have changed.
				h.lost = true
				arm()
			} else {
				slog.Debug("state directory watch", "err", err)
			}
		case <-debounce.C:
			armed = false
			if h.check(ctx) {
				arm()
			}
		case r := <-h.scans:
			h.merge(r)
		case now := <-tick.C:
			rootID, recordsID := identifyDir(h.root), identifyDir(h.records)
			if rootID != h.rootID || recordsID != h.recordsID {
				h.replaced(rootID, recordsID)
			}
			if !now.Before(nextFull) && !h.scanning {
				h.fullPoll(ctx)
				nextFull = time.Now().Add(h.fullEvery)
			} else {
				// A stat of p2ptls.rev: locked changes are noticed
				// within a second even where fsnotify sees nothing.
				if h.check(ctx) {
					arm()
				}
			}
		}
	}
}

// replaced follows a root or records directory that is another one now.
// Another root (a restore) is Full; another records directory (created by
// the first mapping, or swapped by hand) is rescanned, which tells its
// records by name.
func (h *hub) replaced(rootID, recordsID dirID) {
	if rootID != h.rootID {
		h.lost = true
	} else {
		h.rescan = true
	}
	h.rootID, h.recordsID = rootID, recordsID
	h.rewatch()
}

// noteEdit remembers a file an event named, for the next check; past
// revNamesMax of them, the check tells everything.
func (h *hub) noteEdit(name string) {
	if h.lost {
		return
	}
	h.edits[name] = struct{}{}
	if len(h.edits) > revNamesMax {
		h.lost = true
	}
}

// check delivers what changed since the last check: the names of the
// locked changes p2ptls.rev lists since, and the files events named whose
// stat changed (an event of a locked change's own rename is no second
// change). When events were lost, or the revision log does not reach back,
// it restats everything first, so that what changes after is told apart.
//
// It reports held when it kept the events' files for later: while the lock
// is held they are most likely a locked change being committed, file by
// file, and serving part of it (one mapping's host gone, the other's not
// there yet) would fail handshakes; its p2ptls.rev names all of it at
// once. A hand edit made while a long change holds the lock waits at most
// heldEditsMax.
func (h *hub) check(ctx context.Context) (held bool) {
	names, full := h.readRev()
	for _, n := range names {
		h.restat(n)
	}
	if (len(h.edits) > 0 || h.rescan) && len(names) == 0 && !full && !h.lost {
		if h.editsSince.IsZero() {
			h.editsSince = time.Now()
		}
		if time.Since(h.editsSince) < heldEditsMax && h.locked() {
			return true
		}
	}
	h.editsSince = time.Time{}
	for n := range h.edits {
		if h.restat(n) {
			names = append(names, n)
		}
	}
	clear(h.edits)
	if h.lost {
		full, h.lost = true, false
	}
	if full || h.rescan {
		h.rescan = false
		found, vanished, err := h.scan(ctx)
		if err != nil && ctx.Err() != nil {
			return
		}
		names = append(names, found...)
		full = full || vanished || err != nil
	}
	h.deliver(names, full)
	return false
}

// heldEditsMax bounds how long check keeps files that events named while
// the lock is held.
const heldEditsMax = time.Second

// locked reports whether a process holds the state lock now (its lock
// file is there; a dead holder's is taken over by the next Lock).
func (h *hub) locked() bool {
	_, err := os.Lstat(filepath.Join(h.root, LockFile))
	return err == nil
}

// fullPoll starts a restat of every record in the background, so that
// events keep being served while it runs (0.4 s at 100k records); run
// hands its result to merge.
func (h *hub) fullPoll(ctx context.Context) {
	h.check(ctx)
	if h.scanning {
		return
	}
	h.scanning = true
	clear(h.during)
	prev, gen, since := h.seen.snapshot(), h.gen, h.since
	h.scanners.Add(1)
	go func() {
		defer h.scanners.Done()
		start := time.Now()
		r := statAll(ctx, h.root, h.seed, prev, since)
		r.gen, r.took, r.initial = gen, time.Since(start), since != 0
		h.scans <- r // buffered: run may be gone
	}()
}

// firstScanSlack: the first scan, made after Watch returned, names the
// records changed since Watch began, and this little before: their
// events may have been delivered already, or may reach the hub only after
// the scan saw the change (and made it what was there); the change's time
// tells it. The kernel stamps files with a clock a tick behind the one Go
// reads.
const firstScanSlack = 50 * time.Millisecond

// firstScanDelay (in polls) puts the first scan after what a subscriber
// does as it begins: serve loads 100k records in a second or two, and on
// one core a scan meanwhile would share it.
const firstScanDelay = 10

// merge delivers what a background restat found changed unseen. What the
// hub restatted meanwhile (an event's file) is newer than the scan's look
// and was delivered already: it is kept, not reported again.
func (h *hub) merge(r scanResult) {
	h.scanning = false
	defer clear(h.during)
	h.space(r.took)
	if r.gen != h.gen {
		return // a scan made since replaced what this one started from
	}
	switch {
	case r.err != nil && errors.Is(r.err, context.Canceled):
		return
	case r.err != nil && r.initial:
		// As a first scan in the foreground has it: the subscriber's own
		// load reports the failure; the next scan that works signals.
		h.lastErr = r.err.Error()
		return
	case r.err != nil:
		// An unreadable state is signalled once per failure, so that the
		// readers report it; the poll keeps trying.
		if r.err.Error() != h.lastErr {
			h.lastErr = r.err.Error()
			h.deliver(nil, true)
		}
		return
	}
	for k := range h.during {
		if v, ok := h.seen.get(k); ok {
			r.seen.set(k, v)
		} else {
			r.seen.del(k)
		}
	}
	if r.initial {
		names, full := h.adoptFirst(r)
		h.deliver(names, full)
		return
	}
	var names []string
	for i, k := range r.keys {
		if _, ok := h.during[k]; !ok {
			names = append(names, r.names[i])
		}
	}
	full := false
	for _, k := range r.vanished {
		if _, ok := h.during[k]; !ok {
			full = true
		}
	}
	h.seen = r.seen
	if h.lastErr != "" {
		h.lastErr = ""
		full = true
	}
	if len(names) > revNamesMax {
		names, full = nil, true
	}
	h.deliver(names, full)
}

// readRev reads p2ptls.rev when its stat changed and returns the names of
// the locked changes since the one last read; full when they are not known
// (another sequence, a log that does not reach back, a change of more
// names than a revision lists).
func (h *hub) readRev() (names []string, full bool) {
	id, err := identify(filepath.Join(h.root, RevisionFile))
	if err != nil {
		return nil, true
	}
	if id == h.revID {
		return nil, false
	}
	h.revID = id
	if id == (FileID{}) {
		// Removed (by hand; a replaced root is told by its identity): a
		// log that starts again starts from its first change.
		had := h.epoch != ""
		h.epoch, h.seq, h.fresh = "", 0, true
		return nil, had
	}
	r, ok, err := readRevFile(h.root)
	if err != nil || !ok {
		// Unreadable, or a revision without names (an older p2ptls wrote
		// it): a change, but not which.
		h.epoch, h.seq, h.fresh = "", 0, false
		return nil, true
	}
	if r.Epoch != h.epoch {
		if !h.fresh {
			h.epoch, h.seq = r.Epoch, r.Seq
			return nil, true
		}
		h.epoch, h.seq = r.Epoch, 0 // a log begun where there was none
	}
	h.fresh = false
	names, ok = r.since(h.seq)
	h.seq = r.Seq
	return names, !ok
}

// restat updates what the hub saw of store name, p2ptls.toml or a record
// (other names have no stat kept), and reports whether it changed.
func (h *hub) restat(name string) bool {
	var p string
	switch {
	case name == ConfigFile:
		p = filepath.Join(h.root, ConfigFile)
	case strings.HasPrefix(name, RecordsDir+"/") && !strings.Contains(name[len(RecordsDir)+1:], "/"):
		p = filepath.Join(h.root, filepath.FromSlash(name))
	default:
		return true
	}
	id, err := identify(p)
	if err != nil {
		return true // the reader reports what fails
	}
	k := maphash.String(h.seed, name)
	v := idHash(h.seed, id)
	if h.scanning {
		h.during[k] = struct{}{}
	}
	old, had := h.seen.get(k)
	switch {
	case id == (FileID{}):
		h.seen.del(k)
		// Before the first scan the hub does not know what was there: a
		// file gone may have been.
		return had || h.since != 0
	case had && old == v:
		return false
	}
	h.seen.set(k, v)
	return true
}

func idHash(seed maphash.Seed, id FileID) uint64 {
	b := id.encode()
	return maphash.Bytes(seed, b[:])
}

// scan restats p2ptls.toml and every record now, makes that what the hub
// saw, and returns the names whose stat differs from what it saw before;
// full when a file it saw is gone unseen (a hash does not give the name
// back).
func (h *hub) scan(ctx context.Context) (names []string, full bool, err error) {
	h.gen++ // a background scan started before is out of date
	r := statAll(ctx, h.root, h.seed, h.seen, h.since)
	if r.err != nil {
		return nil, false, r.err
	}
	if h.since != 0 {
		// Without a first look there is nothing to compare with: a
		// records directory swapped in holds records older than the
		// watch, which their time does not tell.
		h.adoptFirst(r)
		return nil, true, nil
	}
	h.seen = r.seen
	full = len(r.vanished) > 0
	if len(r.names) > revNamesMax {
		return nil, true, nil
	}
	return r.names, full, nil
}

// adoptFirst makes the first scan's look what the hub saw, but for
// p2ptls.toml, whose stat the hub took itself, and returns the records
// that scan found changed since Watch began (see firstScanSlack).
func (h *hub) adoptFirst(r scanResult) (names []string, full bool) {
	k := maphash.String(h.seed, ConfigFile)
	if v, ok := h.seen.get(k); ok {
		r.seen.set(k, v)
	}
	h.seen, h.since = r.seen, 0
	if len(r.names) > revNamesMax {
		return nil, true
	}
	return r.names, false
}

// scanResult is what statAll found.
type scanResult struct {
	seen     seenSet
	names    []string // changed or new since prev, with their keys
	keys     []uint64
	vanished []uint64 // in prev, gone now
	err      error
	gen      uint64
	took     time.Duration
	initial  bool // the hub's first scan (see firstScanSlack)
}

// statAll stats p2ptls.toml and every record under root and compares them
// with prev, which it does not change. With since (UnixNano, not 0) it
// stats only the records and names only those changed (ctime or mtime) at
// or after since, rather than every one prev lacks.
func statAll(ctx context.Context, root string, seed maphash.Seed, prev seenSet, since int64) (r scanResult) {
	if r.err = ctx.Err(); r.err != nil {
		return r
	}
	records := filepath.Join(root, RecordsDir)
	// The records directory is read in batches: at 100k records one
	// os.ReadDir holds about 9 MiB of entries while every record is
	// statted, and a collection meanwhile counts them in the live heap
	// its goal (serve's RSS) is made from. prev's size is the hint.
	dir, err := os.Open(records)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		r.err = fmt.Errorf("state revision: %w", err)
		return r
	}
	if dir != nil {
		defer dir.Close()
	}
	// Sized at once: growing a slice of 100k would leave copies behind.
	seen := make([]seenKV, 0, prev.len()+prev.len()/64+1)
	// visit takes the stat of the file named name (for a record, the
	// records directory's prefix and base), and names it if it changed:
	// the name is made only then.
	var kh maphash.Hash
	kh.SetSeed(seed)
	visit := func(id FileID, prefix, base string) {
		if id == (FileID{}) {
			return
		}
		kh.Reset()
		kh.WriteString(prefix)
		kh.WriteString(base)
		k, v := kh.Sum64(), idHash(seed, id)
		seen = append(seen, seenKV{k, v})
		changed := false
		if since != 0 {
			changed = id.Ctime >= since || id.Mtime >= since
		} else if old, ok := prev.get(k); !ok || old != v {
			changed = true
		}
		if changed {
			r.names = append(r.names, prefix+base)
			r.keys = append(r.keys, k)
		}
	}
	if since == 0 {
		id, err := identify(filepath.Join(root, ConfigFile))
		if err != nil {
			r.err = fmt.Errorf("state revision: %w", err)
			return r
		}
		visit(id, "", ConfigFile)
	}
	first := len(r.names) // p2ptls.toml's, if it changed, stays first
	var rc syscall.RawConn
	if dir != nil {
		if rc, r.err = dir.SyscallConn(); r.err != nil {
			return r
		}
	}
	for dir != nil {
		batch, err := dir.ReadDir(statBatch)
		// The records are statted relative to the directory being read:
		// a stat by path walks the root's path for each of them, and
		// os.Stat allocates a FileInfo.
		cerr := rc.Control(func(fd uintptr) {
			for _, e := range batch {
				if e.IsDir() || isTemp(e.Name()) {
					continue
				}
				if r.err = ctx.Err(); r.err != nil {
					return
				}
				id, err := identifyAt(int(fd), records, e.Name())
				if err != nil {
					r.err = fmt.Errorf("state revision: %w", err)
					return
				}
				visit(id, RecordsDir+"/", e.Name())
			}
		})
		if r.err == nil && cerr != nil {
			r.err = fmt.Errorf("state revision: %w", cerr)
		}
		if r.err != nil {
			return r
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, syscall.ENOTDIR) {
				break // not a directory: no records, as os.ReadDir has it
			}
			r.err = fmt.Errorf("state revision: %w", err)
			return r
		}
	}
	// In name order, as os.ReadDir gave them: a batch comes in the
	// directory's order.
	sort.Sort(namesByName{r.names[first:], r.keys[first:]})
	r.seen = makeSeen(seen)
	prev.each(func(k, _ uint64) {
		if _, ok := r.seen.get(k); !ok {
			r.vanished = append(r.vanished, k)
		}
	})
	return r
}

// seenSet is what the hub saw of each file, by the hashes of its name
// (k) and of its stat (v): a slice sorted by k, and the few changes since
// it was made in a small map. A map[uint64]uint64 of 100k files was about
// 2.3 MiB, and a background scan cloned it, so while one ran three of
// them were live (the hub's, the clone, the scan's new one); the slice is
// 1.6 MiB and is never written once made, so the scan shares it. The zero
// seenSet is empty and ready.
type seenSet struct {
	base []seenKV           // sorted by k; never written once made
	over map[uint64]seenVal // what changed since base was made
}

type seenKV struct{ k, v uint64 }

// seenVal is a change of over: a new stat, or gone.
type seenVal struct {
	v    uint64
	gone bool
}

// makeSeen is the seenSet of kvs, which it sorts and keeps.
func makeSeen(kvs []seenKV) seenSet {
	slices.SortFunc(kvs, func(a, b seenKV) int { return cmp.Compare(a.k, b.k) })
	return seenSet{base: kvs}
}

func (s *seenSet) get(k uint64) (uint64, bool) {
	if c, ok := s.over[k]; ok {
		return c.v, !c.gone
	}
	return s.inBase(k)
}

func (s *seenSet) inBase(k uint64) (uint64, bool) {
	i, ok := slices.BinarySearchFunc(s.base, k, func(e seenKV, k uint64) int { return cmp.Compare(e.k, k) })
	if !ok {
		return 0, false
	}
	return s.base[i].v, true
}

func (s *seenSet) set(k, v uint64) { s.change(k, seenVal{v: v}) }

func (s *seenSet) del(k uint64) {
	if _, ok := s.get(k); ok {
		s.change(k, seenVal{gone: true})
	}
}

// change records c for k in over, and folds over into a new base once
// it is no longer small: a change of many records restats each.
func (s *seenSet) change(k uint64, c seenVal) {
	if s.over == nil {
		s.over = map[uint64]seenVal{}
	}
	s.over[k] = c
	if len(s.over) > seenOverMax+len(s.base)/16 {
		kvs := make([]seenKV, 0, len(s.base)+len(s.over))
		s.each(func(k, v uint64) { kvs = append(kvs, seenKV{k, v}) })
		*s = makeSeen(kvs)
	}
}

// seenOverMax is the least number of changes kept beside the base.
const seenOverMax = 256

// snapshot is a copy of s that a change of s does not change: it shares
// the base, which no one writes.
func (s *seenSet) snapshot() seenSet {
	return seenSet{base: s.base, over: maps.Clone(s.over)}
}

// each calls fn with every file's k and v.
func (s *seenSet) each(fn func(k, v uint64)) {
	for _, e := range s.base {
		if _, changed := s.over[e.k]; !changed {
			fn(e.k, e.v)
		}
	}
	for k, c := range s.over {
		if !c.gone {
			fn(k, c.v)
		}
	}
}

// len is the number of files in s.
func (s *seenSet) len() int {
	n := len(s.base)
	for k, c := range s.over {
		_, inBase := s.inBase(k)
		switch {
		case inBase && c.gone:
			n--
		case !inBase && !c.gone:
			n++
		}
	}
	return n
}

// statBatch is how many directory entries statAll reads at a time.
const statBatch = 1024

// namesByName sorts a scan's names, and their keys with them.
type namesByName struct {
	names []string
	keys  []uint64
}

func (n namesByName) Len() int           { return len(n.names) }
func (n namesByName) Less(i, j int) bool { return n.names[i] < n.names[j] }
func (n namesByName) Swap(i, j int) {
	n.names[i], n.names[j] = n.names[j], n.names[i]
	n.keys[i], n.keys[j] = n.keys[j], n.keys[i]
}

// space sets the time between full polls from what one took.
func (h *hub) space(took time.Duration) {
	budget := time.Duration(pollBudget)
	if h.w != nil && slices.Contains(h.watched, h.records) {
		budget = pollBudgetWatched
	}
	h.fullEvery = max(min(budget*took, watchPollMax), watchPoll)
}
