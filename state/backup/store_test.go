package backup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// remote is a store that is not a local directory: the Dir's methods
// without Root, as a remote backend offers them.
type remote struct{ state.Store }

// A backup reads the state through the Store only: one taken through a
// store that is no directory holds the same manifest and files, and
// restores to the same state.
func TestBackupThroughTheStoreInterface(t *testing.T) {
	src := newState(t, true, "web")
	want, _ := unpack(t, archiveOf(t, src, ""))
	var buf bytes.Buffer
	got, err := Create(context.Background(), remote{src}, &buf, CreateOptions{Version: "v-test", Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("manifest through the interface:\n%+v\nwant\n%+v", got, want)
	}
	dst := state.OpenDir(filepath.Join(t.TempDir(), "restored"), time.Second)
	if _, err := Restore(context.Background(), dst, bytes.NewReader(buf.Bytes()), RestoreOptions{Now: now0}); err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "restored state", snapshot(t, src.Root(), skipped...), snapshot(t, dst.Root(), state.RevisionFile))
}

// Restore reaches the state only through the Store: its reads and its
// Replace, which does the directory swap.
func TestRestoreThroughTheStoreInterface(t *testing.T) {
	src := newState(t, true, "web")
	archive := archiveOf(t, src, "")
	target := newState(t, true, "other")
	res, err := Restore(context.Background(), remote{target}, bytes.NewReader(archive), RestoreOptions{Now: now0, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "restored state", snapshot(t, src.Root(), skipped...), snapshot(t, target.Root(), state.RevisionFile, state.RunDir))
	if res.Target != target.Root() || !res.ReplacesState || !strings.HasPrefix(res.PreviousState, target.Root()+".pre-restore-") {
		t.Errorf("result: %+v", res)
	}
}

// A change under the lock (a Tx) cannot replace the whole state.
func TestRestoreIntoATxIsRefused(t *testing.T) {
	src := newState(t, true, "web")
	archive := archiveOf(t, src, "")
	target := newState(t, true, "other")
	before := snapshot(t, target.Root(), state.LockFile)
	err := state.Update(context.Background(), target, "test", func(tx *state.Tx) error {
		_, err := Restore(context.Background(), tx, bytes.NewReader(archive), RestoreOptions{Now: now0, Force: true})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "cannot replace") {
		t.Errorf("err = %v", err)
	}
	sameSnapshot(t, "target", before, snapshot(t, target.Root(), state.LockFile))
}

// A backup takes the lock, which finishes a change a killed writer had
// committed: the archive holds the change's files under their names, and
// neither the journal nor the staged file.
func TestBackupFinishesAPendingChange(t *testing.T) {
	src := newState(t, true, "web")
	staged := filepath.Join(src.Root(), "secrets", "dns", ".cf.token.tmp-99")
	if err := os.WriteFile(staged, []byte("journaled token"), 0o600); err != nil {
		t.Fatal(err)
	}
	j := `{"version":1,"deletes":[],"writes":[{"temp":"secrets/dns/.cf.token.tmp-99","name":"secrets/dns/cf.token"}]}`
	if err := os.WriteFile(filepath.Join(src.Root(), state.JournalFile), []byte(j), 0o600); err != nil {
		t.Fatal(err)
	}
	m, entries := unpack(t, archiveOf(t, src, ""))
	for _, f := range m.Files {
		if f.Path == state.JournalFile || f.Path == "secrets/dns/.cf.token.tmp-99" {
			t.Errorf("the backup holds %s", f.Path)
		}
	}
	found := false
	for _, e := range entries {
		if e.hdr.Name == statePrefix+"secrets/dns/cf.token" {
			found = string(e.body) == "journaled token"
		}
	}
	if !found {
		t.Errorf("the backup does not hold the pending change's cf.token: %+v", entries)
	}
}
