package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state/fault"
)

// LockFile is held (flock) by the process that mutates the state. It also
// records who holds it, so that a waiting process can name the holder.
const LockFile = "p2ptls.lock"

// RevisionFile changes whenever a process that held the lock changed the
// state, so that Dir.Revision and Dir.Watch see every locked change in one
// file, whatever files it touched.
const RevisionFile = "p2ptls.rev"

// lockPoll is how often a waiting process retries the lock.
const lockPoll = 50 * time.Millisecond

// Holder describes the process holding the lock.
type Holder struct {
	PID     int       `toml:"pid"`
	Host    string    `toml:"host"`
	Since   time.Time `toml:"since"`
	Purpose string    `toml:"purpose"`
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "another process"
	}
	s := fmt.Sprintf("pid %d on %s", h.PID, h.Host)
	if h.Purpose != "" {
		s += fmt.Sprintf(" (%s)", h.Purpose)
	}
	if !h.Since.IsZero() {
		s += " since " + h.Since.Format(time.RFC3339)
	}
	return s
}

// Lock takes the exclusive lock on the state directory, waiting up to the
// directory's lock timeout. The kernel releases a flock when its holder dies,
// so a lock file left by a dead process never blocks anyone: it is taken
// over and its record replaced. purpose is recorded for other processes'
// messages ("listener add").
func (d *Dir) Lock(ctx context.Context, purpose string) (func() error, error) {
	created, err := d.makeRoot()
	if err != nil {
		return nil, err
	}
	p := filepath.Join(d.root, LockFile)
	deadline := time.Now().Add(d.lockTimeout)
	remade := 0
	for {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, SecretMode)
		if errors.Is(err, fs.ErrNotExist) && time.Now().Before(deadline) {
			// A holder that had created the root removed it, unused, as
			// it unlocked (removeUnused): make it again and retry.
			c, err := d.makeRoot()
			if err != nil {
				return nil, err
			}
			if created == "" {
				created = c
			}
			if remade++; remade > 1 { // it keeps vanishing: do not spin
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(lockPoll):
				}
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open lock file: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			stale := staleHolder(p) // read before claim replaces the record
			if unlock, ok, err := d.claim(f, p, purpose); ok || err != nil {
				if ok {
					// A restore into a mount point that died mid-swap is
					// finished before anything reads or cleans the state.
					if err := d.finishContentSwap(); err != nil {
						return nil, errors.Join(err, unlock())
					}
				}
				if ok && stale {
					d.removeLeftovers(ctx)
				}
				return d.finishOnLock(ctx, trackCommit(d, d.removeUnused(created, d.bumpOnChange(unlock))), err)
			}
			continue // a previous holder removed the file we locked: retry on the new one
		}
		holder := readHolder(p)
		_ = f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, &fault.Error{
				Kind: fault.Locked,
				Msg:  fmt.Sprintf("the state directory %s is locked by %s", d.root, holder),
				Hint: fmt.Sprintf("wait for that process to finish, or wait longer with --lock-timeout (now %s)", d.lockTimeout),
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(wait, lockPoll)):
		}
	}
}

// claim finishes taking the lock on f, which is flocked: it checks that the
// path still names the locked file (the previous holder unlinks it on
// unlock), records this process as the holder and returns the unlock func.
func (d *Dir) claim(f *os.File, p, purpose string) (func() error, bool, error) {
	locked, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, false, fmt.Errorf("stat lock file: %w", err)
	}
	current, err := os.Stat(p)
	if err != nil || !os.SameFile(locked, current) {
		_ = f.Close()
		return nil, false, nil
	}
	if old := readHolder(p); old.PID != 0 {
		slog.Debug("taking over a stale lock", "holder", old.String())
	}
	host, _ := os.Hostname()
	rec, err := toml.Marshal(Holder{PID: os.Getpid(), Host: host, Since: time.Now().UTC().Truncate(time.Second), Purpose: purpose})
	if err == nil {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.WriteAt(rec, 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, false, fmt.Errorf("record lock holder: %w", err)
	}
	unlock := func() error {
		// Remove before unlocking so a waiter that then locks the old file
		// sees it is gone (claim's SameFile check) and retries.
		rmErr := os.Remove(p)
		closeErr := f.Close() // releases the flock
		return errors.Join(rmErr, closeErr)
	}
	return unlock, true, nil
}

// readHolder reads the lock record; an unreadable one names nobody.
func readHolder(p string) Holder {
	var h Holder
	if b, err := os.ReadFile(p); err == nil {
		_ = toml.Unmarshal(b, &h)
	}
	return h
}

// bumpOnChange wraps unlock so that it first writes a new revision when
// anything was written while the lock was held. The revision carries the
// names the change wrote or deleted, so that a watcher re-reads only those
// (see revFile).
func (d *Dir) bumpOnChange(unlock func() error) func() error {
	if unlock == nil {
		return nil
	}
	before := d.writes.Load()
	// A dead holder's change that finishOnLock rolls forward names its
	// files as it goes (finishJournal counts them), like any other.
	d.names.reset()
	d.memoNext.Store(nil)
	return func() error {
		var err error
		if d.writes.Load() != before {
			names, full := d.names.take()
			var r revFile
			if r, err = d.writeRevision(names, full); err == nil {
				d.memoRevised(r.Epoch, r.Seq)
			}
		}
		return errors.Join(err, unlock())
	}
}

// The revision file. Every locked change appends one entry with its names
// (or "full" when it changed more than revNamesMax of them) and keeps the
// last ones, so that a watcher that slept through several changes still
// learns each one's names, and one that slept through more learns that it
// must read everything again.
const (
	revNamesMax  = 1000 // per change; beyond, the change is "full"
	revLogMax    = 64   // changes kept
	revLogNames  = 4096 // names kept over all entries, bounding the file
	revFileLimit = 1 << 20
)

// revFile is the content of RevisionFile. Epoch is drawn when the sequence
// starts (no revision file yet, or an unreadable one), so that a sequence
// started afresh is never mistaken for the old one.
type revFile struct {
	Epoch string     `json:"epoch"`
	Seq   uint64     `json:"seq"`
	Log   []revEntry `json:"log"`
}

// revEntry is one locked change: its names, or Full when they are not known.
type revEntry struct {
	Seq   uint64   `json:"seq"`
	Full  bool     `json:"full,omitempty"`
	Names []string `json:"names,omitempty"`
}

// readRevFile reads RevisionFile; ok is false when it is missing or not a
// revision log (a state written before revisions carried names).
func readRevFile(root string) (r revFile, ok bool, err error) {
	f, err := os.Open(filepath.Join(root, RevisionFile))
	if errors.Is(err, fs.ErrNotExist) {
		return r, false, nil
	}
	if err != nil {
		return r, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, revFileLimit))
	if err != nil {
		return r, false, err
	}
	if json.Unmarshal(b, &r) != nil || r.Epoch == "" {
		return revFile{}, false, nil
	}
	return r, true, nil
}

// since returns the names changed after seq, and whether they are all
// known: the log reaches back to seq+1 and no entry in between is full.
func (r revFile) since(seq uint64) (names []string, ok bool) {
	if seq == r.Seq {
		return nil, true
	}
	if seq > r.Seq || len(r.Log) == 0 || r.Log[0].Seq > seq+1 {
		return nil, false
	}
	for _, e := range r.Log {
		if e.Seq <= seq {
			continue
		}
		if e.Full {
			return nil, false
		}
		names = append(names, e.Names...)
	}
	return names, true
}

// writeRevision appends one change to RevisionFile, under the lock.
func (d *Dir) writeRevision(names []string, full bool) (revFile, error) {
	r, ok, err := readRevFile(d.root)
	if err != nil || !ok {
		var b [8]byte
		_, _ = rand.Read(b[:])
		r = revFile{Epoch: hex.EncodeToString(b[:])}
	}
	r.Seq++
	e := revEntry{Seq: r.Seq, Full: full}
	if !full {
		e.Names = names
	}
	r.Log = append(r.Log, e)
	total := 0
	for i := len(r.Log) - 1; i >= 0; i-- {
		total += len(r.Log[i].Names)
		if len(r.Log)-i > revLogMax || total > revLogNames {
			r.Log = r.Log[i+1:]
			break
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		return revFile{}, err
	}
	return r, WriteFileAtomic(filepath.Join(d.root, RevisionFile), append(b, '\n'), SecretMode)
}

// nameLog gathers the names a lock holder changes, for its revision entry.
type nameLog struct {
	mu    sync.Mutex
	names map[string]struct{}
	full  bool
}

func (l *nameLog) note(name string) {
	if IsRuntime(name) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.full {
		return
	}
	if l.names == nil {
		l.names = map[string]struct{}{}
	}
	l.names[path.Clean(name)] = struct{}{}
	if len(l.names) > revNamesMax {
		l.full, l.names = true, nil
	}
}

func (l *nameLog) reset() { l.take() }

// take returns the names gathered, sorted, and forgets them.
func (l *nameLog) take() (names []string, full bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names = slices.Sorted(maps.Keys(l.names))
	full = l.full
	l.names, l.full = nil, false
	return names, full
}

// makeRoot creates the state directory and its missing parents, and
// returns the topmost directory it created ("" when the root existed), so
// that removeUnused can take away what a refused command made.
func (d *Dir) makeRoot() (string, error) {
	top := ""
	for p := d.root; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		top = p
		if filepath.Dir(p) == p {
			break
		}
	}
	// Another process may make the directory and remove it again unused
	// (removeUnused) between os.MkdirAll's mkdir, which then fails with
	// EEXIST, and its look at what is there: try again.
	for attempt := 0; ; attempt++ {
		err := MkdirAll(d.root)
		if err == nil {
			return top, nil
		}
		if !errors.Is(err, fs.ErrExist) || attempt == 100 {
			return "", err
		}
	}
}

// removeUnused wraps unlock so that a lock taken on a state directory that
// did not exist, with nothing written or deleted under it, leaves nothing
// behind: after unlocking (which removes the lock file) it removes the
// directories makeRoot created, deepest first, each only while it is empty.
// A directory another process has put anything in (its own lock file, a
// file) is not empty and stays; a process that opens the lock file while
// the directory goes away gets ENOENT and makes it again (Lock).
func (d *Dir) removeUnused(created string, unlock func() error) func() error {
	if unlock == nil || created == "" {
		return unlock
	}
	before := d.touched.Load()
	return func() error {
		err := unlock()
		if d.touched.Load() != before {
			return err
		}
		for p := d.root; ; p = filepath.Dir(p) {
			if os.Remove(p) != nil || p == created || filepath.Dir(p) == p {
				break
			}
		}
		return err
	}
}
