package backup

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// newMemState is newState in a store that is no directory: a listener, a
// management CA, a secret and runtime status.
func newMemState(t *testing.T, name string) *statetest.Mem {
	t.Helper()
	ctx := context.Background()
	m := statetest.NewMem(name, time.Second)
	if _, err := state.AddListener(ctx, m, state.Listener{Name: "web", Addr: ":1443"}); err != nil {
		t.Fatal(err)
	}
	if err := management.Init(ctx, m, pki.ParseNames([]string{"localhost"}), now0); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"secrets/dns/cf.token": "token-" + name, "run/status.json": "{}"} {
		if err := m.Write(ctx, name, []byte(data), state.SecretMode); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// backupOf backs s up into memory, recording nothing.
func backupOf(t *testing.T, s state.Store) ([]byte, *Manifest) {
	t.Helper()
	var buf bytes.Buffer
	m, err := Create(context.Background(), s, &buf, CreateOptions{Version: "v-test", Now: now0, NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m
}

// An archive moves between the backends unchanged: a directory's backup
// restored into a Mem backs up to the same manifest (paths, modes, sizes,
// SHA-256s, CA), which restores into a directory as the original; and the
// same from a Mem through a directory.
func TestArchivesMoveBetweenStores(t *testing.T) {
	ctx := context.Background()
	t.Run("dir to mem to dir", func(t *testing.T) {
		src := newState(t, true, "web")
		archive, want := backupOf(t, src)
		mem := statetest.NewMem("copy", time.Second)
		if _, err := Restore(ctx, mem, bytes.NewReader(archive), RestoreOptions{Now: now0}); err != nil {
			t.Fatal(err)
		}
		if err := Verify(ctx, mem, want, false); err != nil {
			t.Fatal(err)
		}
		again, got := backupOf(t, mem)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the Mem's manifest\n%+v\nwant\n%+v", got, want)
		}
		back := state.OpenDir(t.TempDir()+"/back", time.Second)
		if _, err := Restore(ctx, back, bytes.NewReader(again), RestoreOptions{Now: now0}); err != nil {
			t.Fatal(err)
		}
		sameSnapshot(t, "state back in a directory", snapshot(t, src.Root(), skipped...), snapshot(t, back.Root(), state.RevisionFile))
	})
	t.Run("mem to dir to mem", func(t *testing.T) {
		src := newMemState(t, "src")
		archive, want := backupOf(t, src)
		if !want.HasCA() {
			t.Fatal("the Mem's backup holds no CA")
		}
		dir := state.OpenDir(t.TempDir()+"/state", time.Second)
		if _, err := Restore(ctx, dir, bytes.NewReader(archive), RestoreOptions{Now: now0}); err != nil {
			t.Fatal(err)
		}
		if err := Verify(ctx, dir, want, false); err != nil {
			t.Fatal(err)
		}
		again, got := backupOf(t, dir)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the directory's manifest\n%+v\nwant\n%+v", got, want)
		}
		back := statetest.NewMem("back", time.Second)
		if _, err := Restore(ctx, back, bytes.NewReader(again), RestoreOptions{Now: now0}); err != nil {
			t.Fatal(err)
		}
		if got, want := statetest.SnapshotStore(t, back), statetest.SnapshotStore(t, src, state.RunDir); !reflect.DeepEqual(got, want) {
			t.Errorf("state back in a Mem:\n%v\nwant\n%v", got, want)
		}
	})
}

// A restore into a Mem refuses what it refuses into a directory, leaving
// the Mem as it was; --force keeps the old content aside, where the
// result says.
func TestRestoreIntoMem(t *testing.T) {
	ctx := context.Background()
	archive, _ := backupOf(t, newState(t, true, "web"))
	noCA, _ := backupOf(t, newState(t, false, "web"))
	damagedArchive := bytes.Clone(archive)
	damagedArchive[len(damagedArchive)/2] ^= 0xff
	tests := []struct {
		desc    string
		archive []byte
		opts    RestoreOptions
		kind    fault.Kind
		msg     string
	}{
		{"not empty without --force", archive, RestoreOptions{}, fault.Failure, "the store mem:target is not empty"},
		{"damaged", damagedArchive, RestoreOptions{Force: true}, fault.Invalid, "damaged"},
		{"no management CA", noCA, RestoreOptions{Force: true}, fault.Invalid, "no management CA"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			target := newMemState(t, "target")
			before := statetest.SnapshotStore(t, target)
			rev, _ := target.Revision(ctx)
			_, err := Restore(ctx, target, bytes.NewReader(tc.archive), tc.opts)
			statetest.WantFault(t, err, tc.kind, tc.msg)
			statetest.AssertSame(t, before, statetest.SnapshotStore(t, target))
			if now, _ := target.Revision(ctx); now != rev {
				t.Error("a refused restore changed the revision")
			}
		})
	}
	t.Run("not empty without --force: the hint", func(t *testing.T) {
		_, err := Restore(ctx, newMemState(t, "target"), bytes.NewReader(archive), RestoreOptions{})
		statetest.WantHint(t, err, "--force")
	})
	t.Run("dry run", func(t *testing.T) {
		target := newMemState(t, "target")
		before := statetest.SnapshotStore(t, target)
		res, err := Restore(ctx, target, bytes.NewReader(archive), RestoreOptions{DryRun: true})
		if err != nil {
			t.Fatal(err)
		}
		if !res.ReplacesState || res.Target != "mem:target" || res.CA != CADifferent {
			t.Errorf("result: %+v", res)
		}
		statetest.AssertSame(t, before, statetest.SnapshotStore(t, target))
	})
	t.Run("force keeps the old content", func(t *testing.T) {
		target := newMemState(t, "target")
		before := statetest.SnapshotStore(t, target)
		res, err := Restore(ctx, target, bytes.NewReader(archive), RestoreOptions{Force: true, Now: now0})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(res.PreviousState, "mem:target.pre-restore-") {
			t.Fatalf("PreviousState = %q", res.PreviousState)
		}
		kept, ok := target.Kept(res.PreviousState)
		if !ok {
			t.Fatalf("nothing kept as %s", res.PreviousState)
		}
		statetest.AssertSame(t, before, statetest.SnapshotStore(t, kept))
		if b, err := target.Read(ctx, "run/status.json"); err != nil || string(b) != "{}" {
			t.Errorf("run/ was not carried over: %q, %v", b, err)
		}
	})
}

// Verify names the entry of a store that differs from the manifest.
func TestVerifyNamesTheDifference(t *testing.T) {
	ctx := context.Background()
	archive, m := backupOf(t, newState(t, true, "web"))
	tests := []struct {
		desc   string
		change func(s *statetest.Mem) error
		msg    string
	}{
		{"a flipped byte", func(s *statetest.Mem) error {
			b, _ := s.Read(ctx, "secrets/dns/cf.token")
			b[0] ^= 1
			return s.Write(ctx, "secrets/dns/cf.token", b, state.SecretMode)
		}, "secrets/dns/cf.token is 0600"},
		{"a loosened mode", func(s *statetest.Mem) error {
			b, _ := s.Read(ctx, management.CACertFile)
			return s.Write(ctx, management.CACertFile, b, 0o600)
		}, management.CACertFile + " is 0600"},
		{"a missing file", func(s *statetest.Mem) error { return s.Delete(ctx, "secrets/dns/cf.token") }, "secrets/dns/cf.token is missing"},
		{"an extra file", func(s *statetest.Mem) error { return s.Write(ctx, "secrets/extra", []byte("x"), 0o600) }, "secrets/extra is there but not in the source"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := statetest.NewMem("v", time.Second)
			if _, err := Restore(ctx, s, bytes.NewReader(archive), RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := tc.change(s); err != nil {
				t.Fatal(err)
			}
			statetest.WantFault(t, Verify(ctx, s, m, false), fault.Failure, "does not match", tc.msg)
		})
	}
}
