package state

import (
	"context"
	"io/fs"
	"maps"
	"slices"
	"sync"
)

// Store is what commands and serve need from the state: read, write
// atomically, list, delete and lock. Names are slash-separated and relative
// to the state root. It is kept this narrow so that a distributed backend
// can stand in for Dir.
//
// Every method takes the caller's context: a remote backend bounds its
// requests by it, and a command told to stop reads no further. A change
// already begun under the lock is finished whatever the context says, so
// that an interrupted command leaves the state as it was or as changed.
type Store interface {
	Reader
	// Write and Delete change one file; under the lock they are for
	// runtime status and challenges; a change of the desired state is one
	// Apply, through Update.
	Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error
	Delete(ctx context.Context, name string) error
	// Apply makes every write and delete of c as one change: a reader or a
	// crash sees all of it or none of it, once the store has recovered
	// (the next Lock finishes or undoes an Apply a crash cut short).
	Apply(ctx context.Context, c Change) error
	// Replace makes the store's whole content what fill stages, in one
	// step that a crash cannot cut in two, under the lock (restore; see
	// Dir.Replace and ReplaceOptions).
	Replace(ctx context.Context, fill func(Staging) error, opts ReplaceOptions) (*Replaced, error)
	Lock(ctx context.Context, purpose string) (unlock func() error, err error)
	// Revision is an opaque token that changes whenever the desired state
	// changed: a change made under the lock, or a hand edit of the config
	// or of a mapping's record. Equal tokens mean nothing that decides what
	// is served changed; runtime status and challenges are not part of it.
	Revision(ctx context.Context) (string, error)
	// Watch returns a channel that receives whenever the revision may have
	// changed. Signals are coalesced (the channel holds at most one and the
	// store never blocks on a slow reader), so a reader that wakes reads
	// the current state once. The channel is closed when ctx ends. Each
	// caller gets its own channel; a reader that must not miss a change
	// made before it subscribed compares Revision after subscribing.
	Watch(ctx context.Context) <-chan struct{}
	// WatchChanges is Watch that also tells what changed: after a signal
	// on Feed.C, Feed.Take returns the names of the files changed since
	// the last Take (by a locked change or by hand), or Full when the
	// store cannot tell which (events lost, the root replaced, a change
	// of more than a thousand files). A reader that keeps what it loaded
	// re-reads only those names.
	WatchChanges(ctx context.Context) *Feed
}

// Changed is what a Feed reports.
type Changed struct {
	Names []string // store names, sorted, each once
	Full  bool     // anything may have changed: read everything again
}

// feedNamesMax bounds the names a Feed holds for a reader that does not
// take them: past it the reader is told Full instead.
const feedNamesMax = revNamesMax

// Feed is one subscription of WatchChanges. C receives (coalesced, at
// most one pending signal) whenever Take has something new; it is closed
// when the subscription's context ends.
type Feed struct {
	C  <-chan struct{}
	ch chan struct{}

	names bool // keeps names; Watch's subscriptions only signal
	mu    sync.Mutex
	got   map[string]struct{}
	full  bool
}

func newFeed(names bool) *Feed {
	ch := make(chan struct{}, 1)
	return &Feed{C: ch, ch: ch, names: names, got: map[string]struct{}{}}
}

// add gathers names (or full) for the next Take and signals.
func (f *Feed) add(names []string, full bool) {
	if f.names {
		f.mu.Lock()
		if full || f.full {
			f.full = true
			clear(f.got)
		} else {
			for _, n := range names {
				f.got[n] = struct{}{}
			}
			if len(f.got) > feedNamesMax {
				f.full = true
				clear(f.got)
			}
		}
		f.mu.Unlock()
	}
	select {
	case f.ch <- struct{}{}:
	default: // a signal is pending already
	}
}

// NewFeed returns a subscription for a Store kept outside this package (a
// remote backend, a test store): it Publishes what changed and Closes the
// feed once, when the subscriber's context ends. names false makes a
// Watch subscription, which only signals.
func NewFeed(names bool) *Feed { return newFeed(names) }

// Publish records names (or, with full, everything) for the next Take and
// signals C.
func (f *Feed) Publish(names []string, full bool) { f.add(names, full) }

// Close closes C; call it once.
func (f *Feed) Close() { close(f.ch) }

// Take returns what changed since the last Take and forgets it.
func (f *Feed) Take() Changed {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := Changed{Full: f.full}
	if !f.full && len(f.got) > 0 {
		c.Names = slices.Sorted(maps.Keys(f.got))
	}
	clear(f.got)
	f.full = false
	return c
}

// Reader is the part of a Store that loading the desired state needs, so
// that it loads from files in memory too (a backup's, before a restore).
type Reader interface {
	Read(ctx context.Context, name string) ([]byte, error)
	Stat(ctx context.Context, name string) (fs.FileInfo, error)
	List(ctx context.Context, dir string) ([]string, error)
}

// Change is a set of deletes and writes made together by Store.Apply.
// Deletes remove a file or a whole directory and come first, so that a
// change may replace a directory with new content.
type Change struct {
	Deletes []string
	Writes  []FileWrite
}

// FileWrite is one file of a Change.
type FileWrite struct {
	Name string
	Data []byte
	Perm fs.FileMode
}

// Empty reports whether c changes nothing.
func (c Change) Empty() bool { return len(c.Writes) == 0 && len(c.Deletes) == 0 }

// Local is what a store kept in a local directory (Dir) offers beyond
// Store: the directory's absolute path, for what only a directory has
// (file modes and types, the lock file, paths handed to a hook or shown to
// a person). Code outside state reaches a directory through it, never
// through *Dir; a remote store does not implement it, and what needs it
// is then not applicable. A Tx does not implement it either: its files
// are not on disk yet.
type Local interface {
	Store
	Root() string
}
