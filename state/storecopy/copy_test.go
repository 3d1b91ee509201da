package storecopy

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/backup"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

var now0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fill gives s a state: a listener, the management CA, a DNS token, an
// ACME account key, and runtime status that a copy leaves out.
func fill(t testing.TB, s state.Store, withCA bool) {
	t.Helper()
	ctx := context.Background()
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: ":1443"}); err != nil {
		t.Fatal(err)
	}
	if withCA {
		if err := management.Init(ctx, s, pki.ParseNames([]string{"localhost"}), now0); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		"secrets/dns/cf.token":                "cf-token",
		"acme/accounts/a@example.com/key.pem": "account key",
		"run/status.json":                     "{}",
	} {
		if err := s.Write(ctx, name, []byte(data), state.SecretMode); err != nil {
			t.Fatal(err)
		}
	}
}

func newDir(t testing.TB, name string) Side {
	root := filepath.Join(t.TempDir(), name)
	return Side{Name: root, Store: state.OpenDir(root, 200*time.Millisecond)}
}

func newMem(name string) Side {
	m := statetest.NewMem(name, 200*time.Millisecond)
	return Side{Name: m.Name(), Store: m}
}

// content is what a copy carries: everything but runtime status and a
// directory's bookkeeping.
func content(t *testing.T, s state.Store) map[string]string {
	t.Helper()
	return statetest.SnapshotStore(t, s, state.RunDir, state.LockFile, state.RevisionFile, state.MemoDir)
}

func caFingerprint(t *testing.T, s state.Store) string {
	t.Helper()
	_, ca, err := management.CACertificate(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(ca)
}

var opts0 = Options{Version: "v-test", Now: now0}

// Every pair of backends: the destination holds exactly the source's
// files and directories, modes (secrets 0600) and management CA, and the
// source is only read.
func TestCopyBetweenBackends(t *testing.T) {
	kinds := map[string]func(t testing.TB, name string) Side{
		"dir": newDir,
		"mem": func(_ testing.TB, name string) Side { return newMem(name) },
	}
	for _, pair := range [][2]string{{"dir", "dir"}, {"dir", "mem"}, {"mem", "dir"}, {"mem", "mem"}} {
		t.Run(pair[0]+" to "+pair[1], func(t *testing.T) {
			ctx := context.Background()
			from, to := kinds[pair[0]](t, "from"), kinds[pair[1]](t, "to")
			fill(t, from.Store, true)
			before := statetest.SnapshotStore(t, from.Store, state.MemoDir)
			res, err := Copy(ctx, from, to, opts0)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := content(t, to.Store), content(t, from.Store); !reflect.DeepEqual(got, want) {
				t.Errorf("destination\n%v\nsource\n%v", got, want)
			}
			statetest.AssertSame(t, before, statetest.SnapshotStore(t, from.Store, state.MemoDir))
			info, err := to.Store.Stat(ctx, management.CAKeyFile)
			if err != nil || info.Mode().Perm() != state.SecretMode {
				t.Errorf("copied CA key: %v, %v", info, err)
			}
			fp := caFingerprint(t, from.Store)
			if caFingerprint(t, to.Store) != fp {
				t.Error("the destination has another management CA")
			}
			want := &Result{From: from.Name, To: to.Name, Files: len(content(t, from.Store)) - dirs(t, from.Store), Bytes: res.Bytes,
				CAFingerprintSHA256: fp, CA: backup.CARestored, Verified: true, Warnings: []string{}}
			if !reflect.DeepEqual(res, want) || res.Bytes <= 0 {
				t.Errorf("result %+v, want %+v", res, want)
			}
			if _, err := to.Store.Read(ctx, "run/status.json"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("runtime status was copied: %v", err)
			}
		})
	}
}

// dirs counts the directories of what a copy carries.
func dirs(t *testing.T, s state.Store) int {
	n := 0
	for _, v := range content(t, s) {
		if strings.HasPrefix(v, "d") {
			n++
		}
	}
	return n
}

// faulty is a Mem whose restores write something else than they are given:
// flip damages one file's bytes, failAt fails the n-th file created.
type faulty struct {
	*statetest.Mem
	flip   string
	failAt int
}

func (f *faulty) Replace(ctx context.Context, fill func(state.Staging) error, opts state.ReplaceOptions) (*state.Replaced, error) {
	return f.Mem.Replace(ctx, func(st state.Staging) error { return fill(&faultyStaging{Staging: st, f: f}) }, opts)
}

type faultyStaging struct {
	state.Staging
	f       *faulty
	created int
}

func (s *faultyStaging) Create(name string, perm fs.FileMode) (io.WriteCloser, error) {
	if s.created++; s.created == s.f.failAt {
		return nil, errors.New("no space left on device")
	}
	w, err := s.Staging.Create(name, perm)
	if err != nil || name != s.f.flip {
		return w, err
	}
	return flipper{w}, nil
}

type flipper struct{ io.WriteCloser }

func (f flipper) Write(p []byte) (int, error) {
	q := append([]byte(nil), p...)
	if len(q) > 0 {
		q[0] ^= 1
	}
	return f.WriteCloser.Write(q)
}

// A destination that keeps something else than it was given fails the
// copy, naming the file.
func TestCopyDetectsADamagedDestination(t *testing.T) {
	from := newDir(t, "from")
	fill(t, from.Store, true)
	to := &faulty{Mem: statetest.NewMem("to", time.Second), flip: "secrets/dns/cf.token"}
	_, err := Copy(context.Background(), from, Side{Name: "mem:to", Store: to}, opts0)
	statetest.WantFault(t, err, fault.Failure, "the copy in mem:to is not what was copied", "secrets/dns/cf.token is 0600")
}

// A destination that cannot be written fails the copy and keeps what it
// held; so does one that holds a state, without Force.
func TestCopyRefusalsChangeNothing(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		desc string
		to   func(t *testing.T) Side
		opts Options
		kind fault.Kind
		msg  string
	}{
		{"a write fails", func(t *testing.T) Side {
			m := &faulty{Mem: statetest.NewMem("to", time.Second), failAt: 3}
			fill(t, m, false)
			return Side{Name: "mem:to", Store: m}
		}, Options{Force: true}, fault.Failure, "no space left on device"},
		{"a state without --force (mem)", func(t *testing.T) Side {
			s := newMem("to")
			fill(t, s.Store, true)
			return s
		}, Options{}, fault.Failure, "the store mem:to is not empty"},
		{"a state without --force (dir)", func(t *testing.T) Side {
			s := newDir(t, "to")
			fill(t, s.Store, true)
			return s
		}, Options{}, fault.Failure, "is not empty"},
		{"a destination whose parent is a file", func(t *testing.T) Side {
			file := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return Side{Name: file + "/state", Store: state.OpenDir(file+"/state", time.Second)}
		}, Options{}, fault.Failure, "not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			from := newDir(t, "from")
			fill(t, from.Store, true)
			to := tc.to(t)
			beforeFrom, beforeTo := snap(t, from), snap(t, to)
			_, err := Copy(ctx, from, to, Options{Version: "v-test", Now: now0, Force: tc.opts.Force})
			statetest.WantFault(t, err, tc.kind, tc.msg)
			statetest.AssertSame(t, beforeFrom, snap(t, from))
			statetest.AssertSame(t, beforeTo, snap(t, to))
		})
	}
}

// snap records a side: a directory's parent, so that what a copy might
// leave beside it shows too; another store through its interface.
func snap(t *testing.T, s Side) map[string]string {
	t.Helper()
	if l, ok := s.Store.(state.Local); ok {
		return statetest.Snapshot(t, filepath.Dir(l.Root()))
	}
	return statetest.SnapshotStore(t, s.Store)
}

// Force replaces a destination's state and keeps the old one aside, where
// the result says.
func TestCopyForceKeepsTheOldState(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"dir", "mem"} {
		t.Run(kind, func(t *testing.T) {
			from := newDir(t, "from")
			fill(t, from.Store, true)
			to := newMem("to")
			if kind == "dir" {
				to = newDir(t, "to")
			}
			fill(t, to.Store, true)
			old := content(t, to.Store)
			res, err := Copy(ctx, from, to, Options{Force: true, Now: now0})
			if err != nil {
				t.Fatal(err)
			}
			if !res.ReplacesState || res.CA != backup.CADifferent || !res.Verified {
				t.Errorf("result %+v", res)
			}
			var kept state.Store
			if m, ok := to.Store.(*statetest.Mem); ok {
				k, found := m.Kept(res.PreviousState)
				if !found {
					t.Fatalf("nothing kept as %q", res.PreviousState)
				}
				kept = k
			} else {
				if res.PreviousState != to.Name+".pre-restore-20260301T120000Z" {
					t.Fatalf("PreviousState = %q", res.PreviousState)
				}
				kept = state.OpenDir(res.PreviousState, time.Second)
			}
			statetest.AssertSame(t, old, content(t, kept))
			if got, want := content(t, to.Store), content(t, from.Store); !reflect.DeepEqual(got, want) {
				t.Errorf("destination\n%v\nsource\n%v", got, want)
			}
		})
	}
}

// A dry run reads the whole source and writes to neither store.
func TestCopyDryRunWritesNothing(t *testing.T) {
	ctx := context.Background()
	from := newDir(t, "from")
	fill(t, from.Store, true)
	for _, withState := range []bool{false, true} {
		to := newDir(t, "to")
		if withState {
			fill(t, to.Store, false)
		}
		beforeFrom, beforeTo := snap(t, from), snap(t, to)
		res, err := Copy(ctx, from, to, Options{DryRun: true, Now: now0})
		if err != nil {
			t.Fatal(err)
		}
		if !res.DryRun || res.Verified || res.Files == 0 || res.ReplacesState != withState {
			t.Errorf("result %+v", res)
		}
		statetest.AssertSame(t, beforeFrom, snap(t, from))
		statetest.AssertSame(t, beforeTo, snap(t, to))
	}
}

// What cannot be a copy is refused before anything is read or written.
func TestCopyRefusesBadSides(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	full := Side{Name: filepath.Join(base, "full"), Store: state.OpenDir(filepath.Join(base, "full"), time.Second)}
	fill(t, full.Store, true)
	if err := os.Symlink(full.Name, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	dir := func(p string) Side { return Side{Name: p, Store: state.OpenDir(p, time.Second)} }
	noCA := newMem("noca")
	fill(t, noCA.Store, false)
	mem := newMem("m")
	fill(t, mem.Store, true)
	locked := newMem("locked")
	fill(t, locked.Store, true)
	unlock, err := locked.Store.Lock(ctx, "cert renew")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	tests := []struct {
		desc     string
		from, to Side
		kind     fault.Kind
		msg      string
	}{
		{"missing source", dir(filepath.Join(base, "missing")), dir(filepath.Join(base, "new")), fault.Invalid, "holds no state"},
		{"empty source", newMem("empty"), dir(filepath.Join(base, "new")), fault.Invalid, "the source mem:empty holds no state"},
		{"the same directory", full, dir(full.Name + "/"), fault.Invalid, "is the source"},
		{"the same directory through a link", full, dir(filepath.Join(base, "link")), fault.Invalid, "is the source"},
		{"the same Mem", mem, mem, fault.Invalid, "is the source"},
		{"destination inside the source", full, dir(filepath.Join(full.Name, "sub", "new")), fault.Invalid, "inside the source"},
		{"source inside the destination", full, dir(base), fault.Invalid, "inside the destination"},
		{"a source without a management CA", noCA, dir(filepath.Join(base, "new")), fault.Invalid, "no management CA"},
		{"a locked source", locked, dir(filepath.Join(base, "new")), fault.Locked, "locked by \"cert renew\""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := statetest.Snapshot(t, base)
			beforeFrom := statetest.SnapshotStore(t, tc.from.Store, state.MemoDir)
			_, err := Copy(ctx, tc.from, tc.to, opts0)
			statetest.WantFault(t, err, tc.kind, tc.msg)
			statetest.AssertSame(t, before, statetest.Snapshot(t, base))
			statetest.AssertSame(t, beforeFrom, statetest.SnapshotStore(t, tc.from.Store, state.MemoDir))
		})
	}
	t.Run("a source without a management CA, allowed", func(t *testing.T) {
		to := newMem("to")
		res, err := Copy(ctx, noCA, to, Options{AllowMissingCA: true, Now: now0})
		if err != nil || res.CA != backup.CANone || !res.Verified {
			t.Fatalf("%+v, %v", res, err)
		}
	})
}
