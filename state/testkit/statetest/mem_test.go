package statetest

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// walk snapshots s, leaving out a directory's own bookkeeping.
func walk(t *testing.T, s state.Store) map[string]string {
	t.Helper()
	return SnapshotStore(t, s, state.LockFile, state.RevisionFile)
}

// Mem and Dir given the same operations show the same tree, and refuse
// the same names.
func TestMemListsLikeDir(t *testing.T) {
	ctx := context.Background()
	type op struct {
		write, del string
		perm       fs.FileMode
		apply      *state.Change
		wantErr    bool
	}
	ops := []op{
		{write: "p2ptls.toml", perm: 0o600},
		{write: "certs/management/ca.crt", perm: 0o644},
		{write: "certs/management/ca.key", perm: 0o600},
		{write: "certs/public/web/cert.pem", perm: 0o644},
		{write: "a//b/../c.txt", perm: 0o600}, // cleaned to a/c.txt
		{write: "certs/management/ca.crt/x", perm: 0o600, wantErr: true},
		{write: "certs", perm: 0o600, wantErr: true},
		{write: "../escape", perm: 0o600, wantErr: true},
		{write: "/abs", perm: 0o600, wantErr: true},
		{del: "certs/public"},
		{del: "not/there"},
		{apply: &state.Change{Deletes: []string{"a"}, Writes: []state.FileWrite{{Name: "a/new", Data: []byte("n"), Perm: 0o600}}}},
	}
	d := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	m := NewMem("t", time.Second)
	for i, o := range ops {
		for _, s := range []state.Store{d, m} {
			var err error
			switch {
			case o.apply != nil:
				err = s.Apply(ctx, *o.apply)
			case o.del != "":
				err = s.Delete(ctx, o.del)
			default:
				err = s.Write(ctx, o.write, []byte("content of "+o.write), o.perm)
			}
			if (err != nil) != o.wantErr {
				t.Errorf("op %d on %T: err = %v, want error %v", i, s, err, o.wantErr)
			}
		}
	}
	want, got := walk(t, d), walk(t, m)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Mem shows\n%v\nDir shows\n%v", got, want)
	}
	for _, s := range []state.Store{d, m} {
		if names, err := s.List(ctx, "missing/dir"); err != nil || len(names) != 0 {
			t.Errorf("%T: List of a missing directory = %v, %v", s, names, err)
		}
		if _, err := s.List(ctx, "p2ptls.toml"); err == nil {
			t.Errorf("%T: List of a file did not fail", s)
		}
		if _, err := s.Read(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%T: Read of a missing file: %v", s, err)
		}
		if _, err := s.Stat(ctx, "missing"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%T: Stat of a missing file: %v", s, err)
		}
	}
}

// A refused Apply changes nothing, not even its writes before the bad one.
func TestMemApplyIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	m := NewMem("t", time.Second)
	if err := m.Write(ctx, "keep", []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := walk(t, m)
	rev, _ := m.Revision(ctx)
	err := m.Apply(ctx, state.Change{
		Deletes: []string{"keep"},
		Writes:  []state.FileWrite{{Name: "new/one", Data: []byte("1"), Perm: 0o600}, {Name: "keep/under", Perm: 0o600}, {Name: "..", Perm: 0o600}},
	})
	if err == nil {
		t.Fatal("an Apply with a bad name succeeded")
	}
	if after := walk(t, m); !reflect.DeepEqual(after, before) {
		t.Errorf("after a refused Apply: %v, want %v", after, before)
	}
	if now, _ := m.Revision(ctx); now != rev {
		t.Errorf("a refused Apply changed the revision")
	}
}

// The revision changes exactly when the desired state does; runtime status
// and challenges, a rewrite of the same bytes and a delete of nothing are
// no change.
func TestMemRevision(t *testing.T) {
	ctx := context.Background()
	m := NewMem("t", time.Second)
	tests := []struct {
		desc   string
		do     func() error
		change bool
	}{
		{"write the config", func() error { return m.Write(ctx, "p2ptls.toml", []byte("a"), 0o600) }, true},
		{"write it again unchanged", func() error { return m.Write(ctx, "p2ptls.toml", []byte("a"), 0o600) }, false},
		{"change its mode", func() error { return m.Write(ctx, "p2ptls.toml", []byte("a"), 0o644) }, true},
		{"write run/", func() error { return m.Write(ctx, "run/status.json", []byte("{}"), 0o600) }, false},
		{"write a challenge", func() error { return m.Write(ctx, "acme/challenges/http-01/tok", []byte("x"), 0o600) }, false},
		{"delete what is not there", func() error { return m.Delete(ctx, "secrets") }, false},
		{"delete a runtime directory", func() error { return m.Delete(ctx, "run") }, false},
		{"delete the config", func() error { return m.Delete(ctx, "p2ptls.toml") }, true},
		{"replace the whole store", func() error {
			_, err := m.Replace(ctx, func(state.Staging) error { return nil }, state.ReplaceOptions{})
			return err
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before, _ := m.Revision(ctx)
			if err := tc.do(); err != nil {
				t.Fatal(err)
			}
			after, _ := m.Revision(ctx)
			if (before != after) != tc.change {
				t.Errorf("revision %s -> %s, want a change: %v", before, after, tc.change)
			}
		})
	}
}

// WatchChanges names the changed files of the desired state, a Replace
// says Full, and the feed closes when its context ends.
func TestMemWatchChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMem("t", time.Second)
	f := m.WatchChanges(ctx)
	w := m.Watch(ctx)
	wait := func(c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatal("no signal")
		}
	}
	bg := context.Background()
	if err := m.Write(bg, "run/status.json", []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(bg, state.Change{Writes: []state.FileWrite{{Name: "mappings/b.toml", Perm: 0o600}, {Name: "mappings/a.toml", Perm: 0o600}}}); err != nil {
		t.Fatal(err)
	}
	wait(f.C)
	wait(w)
	if got := f.Take(); got.Full || !reflect.DeepEqual(got.Names, []string{"mappings/a.toml", "mappings/b.toml"}) {
		t.Errorf("Take = %+v", got)
	}
	if _, err := m.Replace(bg, func(state.Staging) error { return nil }, state.ReplaceOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(f.C)
	if got := f.Take(); !got.Full {
		t.Errorf("after a Replace, Take = %+v, want Full", got)
	}
	cancel()
	for range f.C { // drains a pending signal, then ends as the feed closes
	}
	for range w {
	}
}

// Lock excludes a second holder until unlocked and fails with
// fault.Locked, naming the holder, after the timeout.
func TestMemLock(t *testing.T) {
	ctx := context.Background()
	m := NewMem("t", 50*time.Millisecond)
	unlock, err := m.Lock(ctx, "mapping add")
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Lock(ctx, "second")
	WantFault(t, err, fault.Locked, "mem:t", `"mapping add"`)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Lock(cctx, "cancelled"); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with an ended context: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err == nil {
		t.Error("a second unlock did not fail")
	}
	again, err := m.Lock(ctx, "again")
	if err != nil {
		t.Fatal(err)
	}
	if err := again(); err != nil {
		t.Fatal(err)
	}
}

// Replace swaps the whole content under the lock: a dry run and a refused
// Check change nothing; kept content stays readable; run/ carries over.
func TestMemReplace(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fill := func(st state.Staging) error {
		if err := st.Mkdir("certs", 0o700); err != nil {
			return err
		}
		w, err := st.Create("certs/new.pem", 0o644)
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte("new")); err != nil {
			return err
		}
		return w.Close()
	}
	newMem := func(t *testing.T) *Mem {
		m := NewMem("t", time.Second)
		for name, data := range map[string]string{"p2ptls.toml": "old", "run/status.json": "{}"} {
			if err := m.Write(ctx, name, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	t.Run("dry run", func(t *testing.T) {
		m := newMem(t)
		before := walk(t, m)
		rep, err := m.Replace(ctx, fill, state.ReplaceOptions{DryRun: true, Check: func(context.Context, state.Store) (bool, error) {
			t.Error("a dry run ran Check")
			return false, nil
		}})
		if err != nil || rep.Kept != "" {
			t.Fatalf("Replace = %+v, %v", rep, err)
		}
		if after := walk(t, m); !reflect.DeepEqual(after, before) {
			t.Errorf("a dry run changed %v to %v", before, after)
		}
	})
	t.Run("refused by Check", func(t *testing.T) {
		m := newMem(t)
		before := walk(t, m)
		refusal := errors.New("no")
		if _, err := m.Replace(ctx, fill, state.ReplaceOptions{Check: func(context.Context, state.Store) (bool, error) { return false, refusal }}); !errors.Is(err, refusal) {
			t.Fatalf("err = %v", err)
		}
		if after := walk(t, m); !reflect.DeepEqual(after, before) {
			t.Errorf("a refused Replace changed %v to %v", before, after)
		}
	})
	t.Run("fill fails", func(t *testing.T) {
		m := newMem(t)
		before := walk(t, m)
		bad := func(st state.Staging) error {
			if _, err := st.Create("no/parent", 0o600); err == nil {
				t.Error("Create without the parent directory succeeded")
			}
			if err := st.Mkdir("d", 0o700); err != nil {
				return err
			}
			if err := st.Mkdir("d", 0o700); !errors.Is(err, fs.ErrExist) {
				t.Errorf("Mkdir twice: %v", err)
			}
			return errors.New("archive damaged")
		}
		if _, err := m.Replace(ctx, bad, state.ReplaceOptions{}); err == nil {
			t.Fatal("no error")
		}
		if after := walk(t, m); !reflect.DeepEqual(after, before) {
			t.Errorf("a failed fill changed %v to %v", before, after)
		}
	})
	t.Run("keep", func(t *testing.T) {
		m := newMem(t)
		before := walk(t, m)
		checked := false
		rep, err := m.Replace(ctx, fill, state.ReplaceOptions{Now: now, Check: func(ctx context.Context, cur state.Store) (bool, error) {
			checked = true
			if _, err := m.Lock(ctx, "inside"); err == nil {
				t.Error("Check ran without the lock held")
			}
			b, err := cur.Read(ctx, "p2ptls.toml")
			return string(b) == "old", err
		}})
		if err != nil || !checked {
			t.Fatalf("Replace = %+v, %v (checked %v)", rep, err, checked)
		}
		if rep.Kept != "mem:t.pre-restore-20260301T120000Z" {
			t.Errorf("Kept = %q", rep.Kept)
		}
		want := NewMem("want", time.Second)
		for _, w := range []state.FileWrite{{Name: "certs/new.pem", Data: []byte("new"), Perm: 0o644}, {Name: "run/status.json", Data: []byte("{}"), Perm: 0o600}} {
			if err := want.Write(ctx, w.Name, w.Data, w.Perm); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := walk(t, m), walk(t, want); !reflect.DeepEqual(got, want) {
			t.Errorf("after Replace: %v, want %v", got, want)
		}
		kept, ok := m.Kept(rep.Kept)
		if !ok {
			t.Fatal("the kept content is not there")
		}
		if got := walk(t, kept); !reflect.DeepEqual(got, before) {
			t.Errorf("kept %v, want %v", got, before)
		}
		rep2, err := m.Replace(ctx, fill, state.ReplaceOptions{Now: now, Check: func(context.Context, state.Store) (bool, error) { return true, nil }})
		if err != nil || rep2.Kept != rep.Kept+"-2" {
			t.Errorf("a second Replace in the same second kept %+v, %v", rep2, err)
		}
	})
}

// Claims exclude each other by name until released.
func TestMemClaims(t *testing.T) {
	ctx := context.Background()
	m := NewMem("t", time.Second)
	release, ok, err := m.TryClaim(ctx, "web")
	if err != nil || !ok {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if _, ok, _ := m.TryClaim(ctx, "web"); ok {
		t.Error("a held claim was taken again")
	}
	if r, ok, _ := m.TryClaim(ctx, "other"); !ok {
		t.Error("another name was refused")
	} else {
		r()
	}
	release()
	release() // twice is harmless
	if r, ok, _ := m.TryClaim(ctx, "web"); !ok {
		t.Error("a released claim was refused")
	} else {
		r()
	}
}

// The state package's transactions and loading work on a Mem.
func TestMemCarriesTheState(t *testing.T) {
	ctx := context.Background()
	m := NewMem("t", time.Second)
	if _, err := state.AddListener(ctx, m, state.Listener{Name: "web", Addr: ":8443"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := state.LoadConfig(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 1 || cfg.Listeners[0].Name != "web" {
		t.Errorf("listeners = %+v", cfg.Listeners)
	}
	b, err := m.Read(ctx, state.ConfigFile)
	if err != nil || !bytes.Contains(b, []byte("web")) {
		t.Errorf("config = %q, %v", b, err)
	}
	info, err := m.Stat(ctx, state.ConfigFile)
	if err != nil || info.Mode() != state.SecretMode {
		t.Errorf("config mode = %v, %v", info, err)
	}
	err = state.Update(ctx, m, "fail", func(tx *state.Tx) error {
		tx.Config.Listeners = nil
		return errors.New("refused")
	})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("Update = %v", err)
	}
	if cfg, _ := state.LoadConfig(ctx, m); len(cfg.Listeners) != 1 {
		t.Errorf("a failed Update changed the listeners: %+v", cfg.Listeners)
	}
}
