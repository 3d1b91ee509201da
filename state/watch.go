package state

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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
	// at most 1/pollBudget of one core on a large state.
	watchPollMax = 30 * time.Second
	pollBudget   = 50
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
	var b [40]byte
	binary.LittleEndian.PutUint64(b[0:], id.dev)
	binary.LittleEndian.PutUint64(b[8:], id.ino)
	binary.LittleEndian.PutUint64(b[16:], uint64(id.size))
	binary.LittleEndian.PutUint64(b[24:], uint64(id.mtime))
	binary.LittleEndian.PutUint64(b[32:], uint64(id.ctime))
	h.Write(b[:])
	return nil
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
	binary.LittleEndian.PutUint64(b[0:], id.dev)
	binary.LittleEndian.PutUint64(b[8:], id.ino)
	h.Write(b[:])
	return nil
}

// fileID tells one version of a file or directory from another; the zero
// value is a missing one.
type fileID struct {
	dev, ino           uint64
	size, mtime, ctime int64
}

func identify(p string) (fileID, error) {
	info, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fileID{}, nil
	}
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: info.Size(), mtime: info.ModTime().UnixNano()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		// Converted field by field: their types differ between systems.
		id.dev, id.ino = uint64(st.Dev), uint64(st.Ino)
		id.ctime = ctimeOf(st)
	}
	return id, nil
}

// dirID is a directory's identity: another directory in its place (a
// restore, a bind mount) has another one; the zero value is none.
type dirID struct{ dev, ino uint64 }

func identifyDir(p string) dirID {
	id, _ := identify(p) // an unreadable directory is watched by the poll
	return dirID{id.dev, id.ino}
}

// isTemp reports whether name is a temporary file of WriteFileAtomic.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// Watch signals changes of d's desired state (see Store.Watch). Every
// caller on the same Dir shares one fsnotify instance and one poll.
func (d *Dir) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	if ctx.Err() != nil {
		close(ch)
		return ch
	}
	hubs.mu.Lock()
	h := hubs.m[d]
	if h == nil {
		h = startHub(d)
		hubs.m[d] = h
	}
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	hubs.mu.Unlock()
	go func() {
		<-ctx.Done()
		h.leave(ch)
	}()
	return ch
}

// hubs are the running watches, one per Dir with subscribers.
var hubs = struct {
	mu sync.Mutex
	m  map[*Dir]*hub
}{m: map[*Dir]*hub{}}

// hub watches one Dir for all its subscribers.
type hub struct {
	d    *Dir
	stop context.CancelFunc
	done chan struct{} // closed when run has returned

	mu   sync.Mutex
	subs map[chan struct{}]struct{}

	// Only run touches what follows, once startHub has returned.
	w                     *fsnotify.Watcher // nil: polling alone
	root, parent, records string            // absolute, clean
	watched               []string
	rootID, recordsID     dirID
	last                  string // the revision last signalled or seen
	fullEvery             time.Duration
}

// startHub sets the watches up before Watch returns, so that a change made
// after it returns is signalled.
func startHub(d *Dir) *hub {
	root, err := filepath.Abs(d.root)
	if err != nil {
		root = filepath.Clean(d.root)
	}
	ctx, stop := context.WithCancel(context.Background()) // ends with the last subscriber
	h := &hub{d: d, stop: stop, done: make(chan struct{}), subs: map[chan struct{}]struct{}{},
		root: root, parent: filepath.Dir(root), records: filepath.Join(root, RecordsDir), fullEvery: watchPoll}
	if w, err := newNotifier(); err != nil {
		warnPollOnly(err)
	} else {
		h.w = w
	}
	h.rootID, h.recordsID = identifyDir(h.root), identifyDir(h.records)
	h.rewatch()
	start := time.Now()
	h.last, _ = h.current(ctx)
	h.space(time.Since(start))
	go h.run(ctx)
	return h
}

// leave ends ch's subscription; the last one stops the hub.
func (h *hub) leave(ch chan struct{}) {
	hubs.mu.Lock()
	h.mu.Lock()
	delete(h.subs, ch)
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
	close(ch)
}

// fire signals every subscriber without waiting for any.
func (h *hub) fire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is pending already
		}
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
	eventChange        // may have changed the revision
	eventRewatch       // the root or the records directory was replaced
)

func (h *hub) classify(ev fsnotify.Event) event {
	name := filepath.Clean(ev.Name)
	if name == h.root || name == h.records {
		return eventRewatch
	}
	base := filepath.Base(name)
	switch filepath.Dir(name) {
	case h.root:
		switch base {
		case ConfigFile, RevisionFile:
			return eventChange
		}
		// run/, the lock file, challenges, temporary files and the other
		// directories: a change of those under the lock shows as a new
		// p2ptls.rev.
		return eventIgnore
	case h.records:
		if isTemp(base) {
			return eventIgnore
		}
		return eventChange
	}
	return eventIgnore // another entry of the parent
}

func (h *hub) run(ctx context.Context) {
	defer close(h.done)
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
	tick := time.NewTicker(watchPoll)
	defer tick.Stop()
	nextFull := time.Now().Add(h.fullEvery)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			switch h.classify(ev) {
			case eventIgnore:
				continue
			case eventRewatch:
				// Renamed, removed or created: fsnotify may have dropped
				// the watch, and the path may name another directory now.
				// Other events (attributes) keep the watches as they are.
				rootID, recordsID := identifyDir(h.root), identifyDir(h.records)
				if rootID != h.rootID || recordsID != h.recordsID || ev.Has(fsnotify.Remove|fsnotify.Rename|fsnotify.Create) {
					h.rootID, h.recordsID = rootID, recordsID
					h.rewatch()
				}
			}
			if !armed {
				debounce.Reset(watchDebounce)
				armed = true
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) && !armed {
				// Events were lost: anything may have changed.
				debounce.Reset(watchDebounce)
				armed = true
			} else if !errors.Is(err, fsnotify.ErrEventOverflow) {
				slog.Debug("state directory watch", "err", err)
			}
		case <-debounce.C:
			armed = false
			h.check(ctx)
		case now := <-tick.C:
			rootID, recordsID := identifyDir(h.root), identifyDir(h.records)
			if rootID != h.rootID || recordsID != h.recordsID {
				h.rootID, h.recordsID = rootID, recordsID
				h.rewatch()
				h.check(ctx)
			} else if !now.Before(nextFull) {
				h.fullPoll(ctx)
			}
			if !now.Before(nextFull) {
				nextFull = time.Now().Add(h.fullEvery)
			}
		}
	}
}

// check signals when the revision changed since it was last seen.
func (h *hub) check(ctx context.Context) {
	if rev, ok := h.current(ctx); ok && rev != h.last {
		h.last = rev
		h.fire()
	}
}

// current is the revision now; an unreadable state has a revision of its
// own, so that it is signalled too and the readers report what fails. It
// is not ok once ctx has ended.
func (h *hub) current(ctx context.Context) (string, bool) {
	rev, err := h.d.Revision(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return "", false
		}
		rev = "unreadable: " + err.Error()
	}
	return rev, true
}

// fullPoll is check, timed to space the next one.
func (h *hub) fullPoll(ctx context.Context) {
	start := time.Now()
	h.check(ctx)
	h.space(time.Since(start))
}

// space sets the time between full polls from what one took.
func (h *hub) space(took time.Duration) {
	h.fullEvery = max(min(pollBudget*took, watchPollMax), watchPoll)
}
