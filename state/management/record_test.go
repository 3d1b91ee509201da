package management

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// caFingerprint is the fingerprint of the CA in s.
func caFingerprint(t *testing.T, s state.Store) string {
	t.Helper()
	_, ca, err := CACertificate(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(ca)
}

// mustRecord reads the record and fails unless it names fp.
func mustRecord(t *testing.T, s state.Store, fp, by string) {
	t.Helper()
	rec, err := ReadCARecord(context.Background(), s)
	if err != nil || rec == nil {
		t.Fatalf("record: %+v, %v", rec, err)
	}
	if rec.FingerprintSHA256 != fp || rec.By != by {
		t.Errorf("record names %s (by %q), want %s (by %q)", rec.FingerprintSHA256, rec.By, fp, by)
	}
	if info, err := s.Stat(context.Background(), CARecordFile); err != nil || info.Mode().Perm() != state.SecretMode {
		t.Errorf("record file: %v %v", info, err)
	}
}

// A fresh state gets its CA silently, and the record names it.
func TestFreshStateRecordsItsCA(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(s state.Store) error
	}{
		{"ensure", func(s state.Store) error { _, _, err := Ensure(context.Background(), s, testNames(), now0); return err }},
		{"init", func(s state.Store) error { return Init(context.Background(), s, testNames(), now0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			if err := tc.do(s); err != nil {
				t.Fatal(err)
			}
			mustRecord(t, s, caFingerprint(t, s), RecordByCreate)
		})
	}
}

// loseCA removes certs/management as a restore of the wrong archive or a
// volume mounted over it does, after a CA was created.
func loseCA(t *testing.T) (s *state.Dir, fp string) {
	t.Helper()
	s, _ = newStore(t)
	mustInit(t, s, testNames(), now0)
	fp = caFingerprint(t, s)
	if err := s.Delete(context.Background(), Dir); err != nil {
		t.Fatal(err)
	}
	return s, fp
}

// With certs/management gone from a state that had a CA, neither serve's
// Ensure nor a plain ca init mints a new one: they fail naming the
// fingerprint agents trust and how to restore or accept a new CA, and
// write nothing.
func TestEnsureRefusesLostCA(t *testing.T) {
	for _, tc := range []struct {
		name string
		do   func(s state.Store) error
	}{
		{"ensure", func(s state.Store) error { _, _, err := Ensure(context.Background(), s, testNames(), now0); return err }},
		{"init", func(s state.Store) error { return Init(context.Background(), s, testNames(), now0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, fp := loseCA(t)
			r := &statetest.Recorder{Dir: s}
			err := tc.do(r)
			wantFault(t, err, fault.Failure, fp, "agents that trust it will not trust a new one")
			wantHint(t, err, "p2ptls restore")
			wantHint(t, err, "ca init --replace --confirm-new-ca")
			if len(r.Applies) != 0 || len(r.Loose) != 0 {
				t.Errorf("wrote %q %q", r.Applies, r.Loose)
			}
			if _, err := s.Stat(context.Background(), CACertFile); err == nil {
				t.Error("a CA was created")
			}
		})
	}
}

// A damaged record still says a CA existed: serve refuses.
func TestEnsureRefusesOnDamagedRecord(t *testing.T) {
	s, _ := loseCA(t)
	if err := s.Write(context.Background(), CARecordFile, []byte("fingerprint = [\n"), state.SecretMode); err != nil {
		t.Fatal(err)
	}
	_, _, err := Ensure(context.Background(), s, testNames(), now0)
	wantFault(t, err, fault.Failure, CARecordFile, "damaged")
	wantHint(t, err, "ca init --replace --confirm-new-ca")
}

// Replace makes a new CA deliberately: the old one (if any) kept byte for
// byte under certs/management/retired/<time>/, the record naming the new
// one, and serve starting on it without more ado.
func TestReplace(t *testing.T) {
	t.Run("over a CA", func(t *testing.T) {
		s, _ := newStore(t)
		mustInit(t, s, testNames(), now0)
		before := snapshot(t, s)
		oldFP := caFingerprint(t, s)
		later := now0.Add(time.Hour)
		r, err := Replace(context.Background(), s, testNames(), later)
		if err != nil {
			t.Fatal(err)
		}
		if r.Old != oldFP || r.New == oldFP || r.New != caFingerprint(t, s) {
			t.Errorf("replaced %+v (old CA %s)", r, oldFP)
		}
		if want := Retired + "/20260301T130000Z"; r.Kept != want {
			t.Errorf("kept in %q, want %q", r.Kept, want)
		}
		for _, name := range allFiles {
			b, err := s.Read(context.Background(), r.Kept+"/"+name[len(Dir)+1:])
			if err != nil || !bytes.Equal(b, before[name]) {
				t.Errorf("retired %s: %v (same bytes: %v)", name, err, bytes.Equal(b, before[name]))
			}
		}
		mustRecord(t, s, r.New, RecordByCreate)
		if _, did, err := Ensure(context.Background(), s, testNames(), later); err != nil || did != "" {
			t.Errorf("Ensure after Replace: %q, %v", did, err)
		}
		// A second replace in the same second keeps both retired CAs.
		r2, err := Replace(context.Background(), s, testNames(), later)
		if err != nil || r2.Kept != r.Kept+"-2" || r2.Old != r.New {
			t.Errorf("second replace: %+v, %v", r2, err)
		}
	})
	t.Run("a lost CA", func(t *testing.T) {
		s, fp := loseCA(t)
		r, err := Replace(context.Background(), s, testNames(), now0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Old != "" || r.Kept != "" || r.New == fp {
			t.Errorf("replaced %+v (lost CA %s)", r, fp)
		}
		mustRecord(t, s, r.New, RecordByCreate)
	})
}

// RecordCA: a CA from before the record is recorded once (then nothing is
// written); handing the CA out (follow) moves the record to the current
// CA, a backup (no follow) leaves another CA's record alone.
func TestRecordCA(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	mustInit(t, s, testNames(), now0)
	fp := caFingerprint(t, s)
	if err := s.Delete(ctx, CARecordFile); err != nil {
		t.Fatal(err)
	}
	if err := RecordCA(ctx, s, RecordByBackup, false, now0); err != nil {
		t.Fatal(err)
	}
	mustRecord(t, s, fp, RecordByBackup)
	r := &statetest.Recorder{Dir: s}
	for _, follow := range []bool{false, true} {
		if err := RecordCA(ctx, r, RecordByExport, follow, now0); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.Applies) != 0 {
		t.Errorf("recording the recorded CA wrote %q", r.Applies)
	}
	other := mustCA(t, "other", now0)
	if err := writeCARecord(ctx, s, other.Cert, RecordByCreate, now0); err != nil {
		t.Fatal(err)
	}
	if err := RecordCA(ctx, s, RecordByBackup, false, now0); err != nil {
		t.Fatal(err)
	}
	mustRecord(t, s, pki.Fingerprint(other.Cert), RecordByCreate)
	if err := RecordCA(ctx, s, RecordByEnv, true, now0); err != nil {
		t.Fatal(err)
	}
	mustRecord(t, s, fp, RecordByEnv)
	// No CA: nothing to record, no error.
	empty, _ := newStore(t)
	if err := RecordCA(ctx, empty, RecordByExport, true, now0); err != nil {
		t.Fatal(err)
	}
	if rec, err := ReadCARecord(ctx, empty); rec != nil || err != nil {
		t.Errorf("record without a CA: %+v %v", rec, err)
	}
}

// serve on a CA from before the record records it at its start, in the
// one change that also re-issues nothing else.
func TestEnsureRecordsAnUnrecordedCA(t *testing.T) {
	s, _ := newStore(t)
	mustInit(t, s, testNames(), now0)
	if err := s.Delete(context.Background(), CARecordFile); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	r := &statetest.Recorder{Dir: s}
	if _, did, err := Ensure(context.Background(), r, testNames(), now0); err != nil || did != "" {
		t.Fatalf("Ensure: %q, %v", did, err)
	}
	assertSame(t, before, snapshot(t, s), allFiles...)
	if len(r.Applies) != 1 || !slices.Contains(r.Applies[0], CARecordFile) ||
		slices.ContainsFunc(r.Applies[0], func(n string) bool { return strings.HasPrefix(n, Dir+"/") }) {
		t.Errorf("applies %q, want one with the record and nothing of %s", r.Applies, Dir)
	}
	mustRecord(t, s, caFingerprint(t, s), RecordByServe)
}
