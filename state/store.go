package state

import (
	"context"
	"io/fs"
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
