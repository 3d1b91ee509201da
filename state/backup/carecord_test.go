package backup

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

// recordOf is the fingerprint the CA record of d names, "" for none.
func recordOf(t *testing.T, d state.Store) string {
	t.Helper()
	rec, err := management.ReadCARecord(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil {
		return ""
	}
	return rec.FingerprintSHA256
}

// The CA record is state: a backup carries it (recording a CA from before
// the record first), a restore brings it back, so that a restored state
// whose CA is lost later is still told apart from a fresh one.
func TestBackupCarriesTheCARecord(t *testing.T) {
	ctx := context.Background()
	src := newState(t, true, "web")
	_, ca, err := management.CACertificate(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	fp := pki.Fingerprint(ca)
	// A CA from before the record: the backup records it.
	if err := src.Delete(ctx, management.CARecordFile); err != nil {
		t.Fatal(err)
	}
	archive := archiveOf(t, src, "")
	if got := recordOf(t, src); got != fp {
		t.Errorf("after the backup the state records %q, want %s", got, fp)
	}
	m, _ := unpack(t, archive)
	listed := false
	for _, f := range m.Files {
		listed = listed || f.Path == management.CARecordFile
	}
	if !listed {
		t.Fatalf("the archive lacks %s", management.CARecordFile)
	}
	target := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	if _, err := Restore(ctx, target, bytes.NewReader(archive), RestoreOptions{Now: now0}); err != nil {
		t.Fatal(err)
	}
	if got := recordOf(t, target); got != fp {
		t.Errorf("the restored state records %q, want %s", got, fp)
	}
}

// A backup taken after the CA was lost holds the record but no CA:
// restoring it needs --allow-missing-management-ca, which accepts a new CA
// and so leaves the record out (serve would refuse to create one), saying
// so; without the flag the restore is refused as before.
func TestAllowMissingCADropsTheRecord(t *testing.T) {
	ctx := context.Background()
	src := newState(t, true, "web")
	fp := recordOf(t, src)
	if err := src.Delete(ctx, management.Dir); err != nil {
		t.Fatal(err)
	}
	archive := archiveOf(t, src, "")
	for _, dry := range []bool{true, false} {
		target := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
		res, err := Restore(ctx, target, bytes.NewReader(archive), RestoreOptions{AllowMissingCA: true, DryRun: dry, Now: now0})
		if err != nil || res.CA != CANone {
			t.Fatalf("dry run %v: %v %+v", dry, err, res)
		}
		warned := false
		for _, w := range res.Warnings {
			warned = warned || (strings.Contains(w, "not restored") && (dry || strings.Contains(w, fp)))
		}
		if !warned {
			t.Errorf("dry run %v: warnings %q do not say the record is left out", dry, res.Warnings)
		}
		if dry {
			continue
		}
		if got := recordOf(t, target); got != "" {
			t.Errorf("the record %s was restored", got)
		}
		// serve's Ensure now makes a new CA silently, as the flag asked.
		if _, did, err := management.Ensure(ctx, target, pki.ParseNames([]string{"localhost"}), now0); err != nil || !strings.Contains(did, "created") {
			t.Errorf("Ensure after the restore: %q, %v", did, err)
		}
	}
	target := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	if _, err := Restore(ctx, target, bytes.NewReader(archive), RestoreOptions{Now: now0}); err == nil || !strings.Contains(err.Error(), "no management CA") {
		t.Errorf("without the flag: %v", err)
	}
}
