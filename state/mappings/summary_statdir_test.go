package mappings

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// TestSummariesSaveLetsGoOfTheDirectory: Summaries stat relative to the
// mappings directory they opened (state.StatDir); Save ends that, so that a
// directory swapped in since (a restore) is what they read afterwards,
// not the memo's summary of the old one's file.
func TestSummariesSaveLetsGoOfTheDirectory(t *testing.T) {
	ctx := context.Background()
	_, root := summaryState(t)
	time.Sleep(memoAge)
	m := state.Mapping{ID: "ss", Source: state.SourceSelfSigned}
	c := NewSummaries(state.OpenDir(root, time.Second))
	for range 2 { // the second from the memo
		if _, err := c.Usable(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c.Save()

	// Swap in a copy of the mappings' files whose "ss" certificate is
	// another one (its key kept, so that Usable checks the pair again).
	pub := storeFile(root, PublicDir)
	swapped := pub + ".new"
	if err := os.CopyFS(swapped, os.DirFS(pub)); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(pub, pub+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(swapped, pub); err != nil {
		t.Fatal(err)
	}
	kp := issue(t, now0, 30*day, "ss.example.com")
	dir := filepath.Join(pub, "ss")
	writeFile(t, dir, CertFileName, kp.CertPEM)
	writeFile(t, dir, KeyFileName, kp.KeyPEM)

	sum, err := c.Usable(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if want := kp.Cert.NotAfter.UTC(); !sum.NotAfter.Equal(want) {
		t.Errorf("after the swap: not after %v, want the new certificate's %v", sum.NotAfter, want)
	}
}

// TestStoredNameIsTheFileNames: the names Summaries look files up by are
// the ones the memo is written with.
func TestStoredNameIsTheFileNames(t *testing.T) {
	for _, id := range []string{"a", "m000050", "x.example.com"} {
		for _, tc := range []struct{ file, want string }{
			{CertFileName, certName(id)}, {KeyFileName, keyName(id)}, {MetaFileName, metaName(id)},
		} {
			if got := storedName(id, tc.file); got != tc.want {
				t.Errorf("storedName(%q, %q) = %q, want %q", id, tc.file, got, tc.want)
			}
		}
	}
}
