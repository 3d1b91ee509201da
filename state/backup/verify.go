package backup

import (
	"context"
	"fmt"
	"slices"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
)

// Verify reads the whole state in s back and compares it with what a
// restore of the archive m describes wrote there (Restore with
// allowMissingCA as given): the same directories with their modes, the
// same files with their modes (as restoredMode gives them), sizes and
// SHA-256, and nothing else. The error names the first entry that
// differs.
func Verify(ctx context.Context, s state.Store, m *Manifest, allowMissingCA bool) error {
	t, err := newTree(s)
	if err != nil {
		return err
	}
	got, err := t.scan(ctx)
	if err != nil {
		return fmt.Errorf("read the state back: %w", err)
	}
	dropRecord := allowMissingCA && !m.HasCA()
	want := make(map[string]string, len(m.Dirs)+len(m.Files))
	for _, d := range m.Dirs {
		want[d.Path] = "directory " + d.Mode
	}
	for _, f := range m.Files {
		if dropRecord && f.Path == management.CARecordFile {
			continue // a restore with allowMissingCA leaves it out
		}
		archived, _ := parseMode(f.Mode) // validated by the restore
		want[f.Path] = fmt.Sprintf("%s, %d bytes, SHA-256 %s", formatMode(restoredMode(f.Path, archived)), f.Size, f.SHA256)
	}
	have := make(map[string]string, len(got.Dirs)+len(got.Files))
	for _, d := range got.Dirs {
		have[d.Path] = "directory " + d.Mode
	}
	for _, f := range got.Files {
		have[f.Path] = fmt.Sprintf("%s, %d bytes, SHA-256 %s", f.Mode, f.Size, f.SHA256)
	}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	for p := range have {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		w, inWant := want[p]
		h, inHave := have[p]
		switch {
		case !inHave:
			return mismatch(t, p, "is missing")
		case !inWant:
			return mismatch(t, p, "is there but not in the source")
		case w != h:
			return mismatch(t, p, fmt.Sprintf("is %s; the source's is %s", h, w))
		}
	}
	if got.CAFingerprintSHA256 != m.CAFingerprintSHA256 {
		return mismatch(t, management.CACertFile, fmt.Sprintf("has the fingerprint %q; the source's is %q", got.CAFingerprintSHA256, m.CAFingerprintSHA256))
	}
	return nil
}

// mismatch is Verify's refusal of one entry.
func mismatch(t tree, rel, what string) error {
	return fault.Failf("check the store it was written to, then write it again",
		"the state read back does not match what was written: %s %s", t.where(rel), what)
}
