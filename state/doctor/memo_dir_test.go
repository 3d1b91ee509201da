package doctor

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// TestMappingDirEntryRefusesDamage: a mapping directory's entry and its
// listing part round-trip, and a truncated one, one with bytes after it or
// of another version is refused, never a panic or a value.
func TestMappingDirEntryRefusesDamage(t *testing.T) {
	id := state.FileID{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5}
	des := []dirent{{name: "cert.pem"}, {name: "key.pem"}, {name: "sub", typ: typeDir}}
	listing := encodeDirListing(id, des)
	outcome := encodePairOutcome(&pairOutcome{MappingID: "a", Source: "self-signed", Key: "certs/public/a/key.pem", CertID: id, KeyID: id, DNSNames: []string{"a.example.com"}})
	tests := []struct {
		name             string
		listing, outcome []byte
	}{
		{"both", listing, outcome},
		{"listing only", listing, nil},
		{"outcome only", nil, outcome},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := mappingDirEntry(tc.listing, tc.outcome)
			l, o, err := splitMappingDir(v)
			if err != nil || string(l) != string(tc.listing) || string(o) != string(tc.outcome) {
				t.Fatalf("split = %q, %q, %v", l, o, err)
			}
			for n := range len(v) {
				if _, _, err := splitMappingDir(v[:n]); err == nil {
					t.Fatalf("the first %d of %d bytes split", n, len(v))
				}
			}
			if _, _, err := splitMappingDir(append(v[:len(v):len(v)], 0)); err == nil {
				t.Fatal("an entry with a byte after it splits")
			}
			if _, _, err := splitMappingDir(append([]byte{mappingDirVersion - 1}, v[1:]...)); err == nil {
				t.Fatal("an entry of another version splits (a listing of version 1)")
			}
		})
	}
	gotID, got, err := decodeDirListing(listing)
	if err != nil || gotID != id || !reflect.DeepEqual(got, des) {
		t.Fatalf("listing round trip = %v, %+v, %v", gotID, got, err)
	}
	for n := range len(listing) {
		if _, _, err := decodeDirListing(listing[:n]); err == nil {
			t.Fatalf("the first %d of %d bytes of a listing decode", n, len(listing))
		}
	}
}

// TestMappingDirChangedPairNot: a mapping directory whose listing changed
// (meta.toml replaced by a rename, as every ACME attempt does) is listed
// again, but its pair, unchanged, is not loaded again; the next run reads
// nothing again and does not rewrite the memo.
func TestMappingDirChangedPairNot(t *testing.T) {
	s := acmeState(t)
	for _, id := range []string{"a", "b"} {
		addMapping(t, s, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned})
	}
	root := s.Root()
	dir := filepath.Join(root, "certs", "public", "a")
	if _, err := os.Stat(filepath.Join(dir, "meta.toml")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second + 100*time.Millisecond) // past the racy window
	loads := countLoads(t)
	report := func() Report { return Run(context.Background(), input(state.OpenDir(root, 2*time.Second))) }
	before := report()
	if n := loads.Load(); n != 2 {
		t.Fatalf("the first run loaded %d pairs, want 2", n)
	}
	// meta.toml replaced by a rename: the directory's times move, the
	// pair's files do not.
	b, err := os.ReadFile(filepath.Join(dir, "meta.toml"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, ".meta.toml.tmp-1")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "meta.toml")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second + 100*time.Millisecond)
	loads.Store(0)
	if got := report(); !reflect.DeepEqual(got, before) {
		t.Fatalf("after the rename doctor reports\n%+v\nnot\n%+v", got, before)
	}
	if n := loads.Load(); n != 0 {
		t.Fatalf("a directory whose listing changed had its unchanged pair loaded again (%d loads)", n)
	}
	memoFile := filepath.Join(root, filepath.FromSlash(state.MemoDir), pairMemoKind)
	saved, err := os.Stat(memoFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := report(); !reflect.DeepEqual(got, before) || loads.Load() != 0 {
		t.Fatalf("the next run reports\n%+v\n(%d loads)", got, loads.Load())
	}
	if now, err := os.Stat(memoFile); err != nil || !os.SameFile(now, saved) {
		t.Fatalf("the next run wrote the memo again: the new listing was not kept (%v)", err)
	}
}
