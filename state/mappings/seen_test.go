package mappings

import (
	"context"
	"os"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// TestEachSeen: with the identities a walk saw, EachSeen asks seen for
// each stored file instead of a stat, reads nothing a warm memo has, and
// describes what List describes; an identity that is not the memo's (the
// file changed since it was seen, or seen wrong) makes it read the file,
// never trust the memo, and one it was not given is stat'ed.
func TestEachSeen(t *testing.T) {
	_, root := summaryState(t)
	time.Sleep(memoAge)
	listReads(t, root) // fills the memo
	lstat := func(id, file string) (state.FileID, bool) {
		fi, err := os.Lstat(storeFile(root, MappingDir(id)+"/"+file))
		if err != nil || !fi.Mode().IsRegular() {
			return state.FileID{}, false
		}
		return state.FileIDOf(fi)
	}
	tests := []struct {
		desc  string
		seen  Seen
		asked int // how many times seen is asked: each stored file Each looks at
		reads []string
	}{
		{desc: "as lstat sees them", seen: lstat, asked: 5, reads: reads()},
		{desc: "none seen: stat'ed", seen: func(string, string) (state.FileID, bool) { return state.FileID{}, false }, asked: 5, reads: reads()},
		{desc: "a certificate seen otherwise", seen: func(id, file string) (state.FileID, bool) {
			fid, ok := lstat(id, file)
			if id == "ss" && file == CertFileName {
				fid.Size++
			}
			return fid, ok
		}, asked: 5, reads: reads(certName("ss"))},
		{desc: "a meta.toml seen otherwise", seen: func(id, file string) (state.FileID, bool) {
			fid, ok := lstat(id, file)
			if id == "ac" && file == MetaFileName {
				fid.Mtime--
			}
			return fid, ok
		}, asked: 5, reads: reads(metaName("ac"))},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d := state.OpenDir(root, 2*time.Second)
			cfg := mustConfig(t, d)
			want, err := List(context.Background(), d, cfg, "", now0)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var got []string
			asked := 0
			readHook = func(name string) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, name)
			}
			defer func() { readHook = nil }()
			infos := []Info{}
			err = EachSeen(context.Background(), state.OpenDir(root, 2*time.Second), cfg, now0, func(id, file string) (state.FileID, bool) {
				mu.Lock()
				asked++
				mu.Unlock()
				return tc.seen(id, file)
			}, func(info Info) error {
				infos = append(infos, info)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(infos, want) {
				t.Errorf("EachSeen:\n%+v\nList:\n%+v", infos, want)
			}
			if asked != tc.asked {
				t.Errorf("seen asked %d times, want %d", asked, tc.asked)
			}
			if !reflect.DeepEqual(got, tc.reads) {
				t.Errorf("read %q, want %q", got, tc.reads)
			}
		})
	}
}
