// Package storecopy moves the whole state from one store to another (a
// state directory into etcd and back, or between directories), the way a
// backup and a restore would, with no archive file in between: a backup
// of the source, taken under its lock, streams into a restore of the
// destination (its verification, its refusals and its one-step Replace),
// and the destination is then read back and compared with the backup's
// manifest, file by file.
package storecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/backup"
	"github.com/p2pstream/p2ptls/state/fault"
)

// Side is one end of a copy: the store and how messages name it (a
// directory's path, a store URL).
type Side struct {
	Name  string
	Store state.Store
}

// Options tune Copy.
type Options struct {
	// DryRun reads the source and checks the whole copy, and says what it
	// would do, writing nothing to either store.
	DryRun bool
	// Force replaces a destination that holds a state; its old content is
	// kept aside (Result.PreviousState).
	Force bool
	// AllowMissingCA copies a source that has no management CA.
	AllowMissingCA bool
	// Version is the p2ptls version, Now the time of the copy.
	Version string
	Now     time.Time
}

// Result is what a copy did, or with DryRun would do.
type Result struct {
	From   string `json:"from"`
	To     string `json:"to"`
	DryRun bool   `json:"dry_run"`
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
	// CAFingerprintSHA256 is the management CA copied, "" for none.
	CAFingerprintSHA256 string `json:"ca_fingerprint_sha256"`
	// CA says how it compares with the destination's (backup.CASame, …).
	CA string `json:"ca"`
	// ReplacesState is true when the destination held a state, which
	// then needs Force; PreviousState is where it was kept.
	ReplacesState bool   `json:"replaces_state"`
	PreviousState string `json:"previous_state"`
	// Verified is true once every value read back from the destination
	// matched the source's SHA-256 and mode.
	Verified bool     `json:"verified"`
	Warnings []string `json:"warnings"`
}

// errStopped ends the backup when the restore stopped reading.
var errStopped = errors.New("the destination stopped reading the copy")

// Copy copies the whole state of from into to. A source that holds no
// state, or a destination that is the source or inside it (or holds it),
// is refused before anything is read; a destination that holds a state is
// refused without Force. A failure leaves the destination as it was,
// except when the read-back finds it holding something else than what was
// copied: that error names the first file that differs.
func Copy(ctx context.Context, from, to Side, opts Options) (*Result, error) {
	if err := distinct(from, to); err != nil {
		return nil, err
	}
	has, err := backup.HasState(ctx, from.Store)
	if err != nil {
		return nil, fmt.Errorf("read the source %s: %w", from.Name, err)
	}
	if !has {
		return nil, fault.Invalidf("check --from: it names the state directory or store URL to copy from",
			"the source %s holds no state", from.Name)
	}
	pr, pw := io.Pipe()
	type made struct {
		m   *backup.Manifest
		err error
	}
	done := make(chan made, 1)
	go func() {
		m, err := backup.Create(ctx, from.Store, pw, backup.CreateOptions{Version: opts.Version, Now: opts.Now, NoRecord: true})
		pw.CloseWithError(err) // nil: the restore reads to the end
		done <- made{m, err}
	}()
	res, rerr := backup.Restore(ctx, to.Store, pr, backup.RestoreOptions{
		DryRun: opts.DryRun, Force: opts.Force, AllowMissingCA: opts.AllowMissingCA, Now: opts.Now,
	})
	pr.CloseWithError(errStopped) // a backup still writing stops
	src := <-done
	// The source's failure is the cause of the restore's (it read a cut
	// archive), unless the restore stopped first.
	if src.err != nil && !errors.Is(src.err, errStopped) {
		return nil, fmt.Errorf("read the source %s: %w", from.Name, src.err)
	}
	if rerr != nil {
		return nil, rerr
	}
	if src.err != nil {
		return nil, src.err
	}
	out := &Result{
		From: from.Name, To: to.Name, DryRun: opts.DryRun, Files: res.Files, Bytes: res.Bytes,
		CAFingerprintSHA256: res.CAFingerprintSHA256, CA: res.CA,
		ReplacesState: res.ReplacesState, PreviousState: res.PreviousState, Warnings: res.Warnings,
	}
	if opts.DryRun {
		return out, nil
	}
	if err := backup.Verify(ctx, to.Store, src.m, opts.AllowMissingCA); err != nil {
		kept := ""
		if res.PreviousState != "" {
			kept = "; its previous state is kept in " + res.PreviousState
		}
		return nil, fmt.Errorf("the copy in %s is not what was copied (copy again with --force once the store is fixed%s): %w", to.Name, kept, err)
	}
	out.Verified = true
	return out, nil
}

// distinct refuses a copy of a store onto itself: the same store, or two
// directories of which one is the other or inside it (a backup of the
// outer one would read the inner one's restore as it is written).
func distinct(from, to Side) error {
	same := fault.Invalidf("give --to another directory or store", "the destination %s is the source %s", to.Name, from.Name)
	a, b := reflect.ValueOf(from.Store), reflect.ValueOf(to.Store)
	if a.Type() == b.Type() && a.Comparable() && from.Store == to.Store {
		return same
	}
	la, ok1 := from.Store.(state.Local)
	lb, ok2 := to.Store.(state.Local)
	if !ok1 || !ok2 {
		return nil
	}
	pa, err := realPath(la.Root())
	if err != nil {
		return err
	}
	pb, err := realPath(lb.Root())
	if err != nil {
		return err
	}
	switch {
	case pa == pb:
		return same
	case within(pb, pa):
		return fault.Invalidf("give --to a directory outside the source", "the destination %s is inside the source %s", to.Name, from.Name)
	case within(pa, pb):
		return fault.Invalidf("give --to a directory that does not hold the source", "the source %s is inside the destination %s", from.Name, to.Name)
	}
	return nil
}

// realPath resolves the links of p, or of its nearest existing parent for
// a directory still to be made.
func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest := ""
	for {
		real, err := filepath.EvalSymlinks(abs)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, os.ErrNotExist) || filepath.Dir(abs) == abs {
			return "", err
		}
		rest = filepath.Join(filepath.Base(abs), rest)
		abs = filepath.Dir(abs)
	}
}

// within reports whether p is inside dir.
func within(p, dir string) bool {
	return strings.HasPrefix(p, dir+string(filepath.Separator))
}
