package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// walkModes is checkPermissions' walk as it was, one entry at a time with
// filepath.WalkDir: the reference scanTree must agree with, order included
// (the message names the first ten). It also returns every entry with a
// temporary name, and the identity of every regular file.
func walkModes(root string) (modeFindings, []state.TempEntry, map[string]state.FileID, error) {
	var f modeFindings
	var temps []state.TempEntry
	ids := map[string]state.FileID{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if p != root && state.IsTempName(de.Name()) {
			temps = append(temps, state.TempEntry{Name: rel, Dir: de.IsDir()})
		}
		if de.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := de.Info()
		if err != nil {
			return nil
		}
		if info.Mode().IsRegular() {
			ids[rel], _ = state.FileIDOf(info)
		}
		perm := info.Mode().Perm()
		shown := fmt.Sprintf("%s (%04o)", rel, perm)
		switch {
		case de.IsDir():
			if perm&0o077 != 0 {
				f.dirs = append(f.dirs, shown)
			}
		case isSecret(rel):
			if perm&0o077 != 0 {
				f.secrets = append(f.secrets, shown)
				f.secretPaths = append(f.secretPaths, p)
			}
		default:
			if perm&0o022 != 0 {
				f.files = append(f.files, shown)
			}
		}
		return nil
	})
	return f, temps, ids, err
}

// TestScanTreeIsWalkDir: the parallel walk finds what WalkDir finds, in
// WalkDir's order, over a tree of many directories (so that workers take
// subtrees) with open modes at every depth, names that sort differently
// as paths than as names ("a.b" and "a/b"), and symlinks, which are not
// followed: the open modes, every temporary name, and the identities of
// the mappings' certificates and keys that are regular files.
func TestScanTreeIsWalkDir(t *testing.T) {
	tests := []struct {
		desc  string
		build func(t *testing.T, root string)
	}{
		{desc: "empty", build: func(t *testing.T, root string) {}},
		{desc: "a state of 300 mappings with open modes", build: func(t *testing.T, root string) {
			for i := range 300 {
				dir := filepath.Join(root, "certs", "public", fmt.Sprintf("m%03d", i))
				mode := os.FileMode(0o700)
				if i%7 == 0 {
					mode = 0o755
				}
				mustMkdir(t, dir, mode)
				keyMode, certMode := os.FileMode(0o600), os.FileMode(0o644)
				if i%5 == 0 {
					keyMode = 0o640
				}
				if i%11 == 0 {
					certMode = 0o666
				}
				writeMode(t, filepath.Join(dir, "key.pem"), keyMode)
				writeMode(t, filepath.Join(dir, "cert.pem"), certMode)
				writeMode(t, filepath.Join(dir, "meta.toml"), 0o644)
				writeMode(t, filepath.Join(root, "mappings", fmt.Sprintf("m%03d.toml", i)), 0o600)
			}
			mustMkdir(t, filepath.Join(root, "a"), 0o777)
			writeMode(t, filepath.Join(root, "a", "b"), 0o666)
			writeMode(t, filepath.Join(root, "a.b"), 0o666)
			mustMkdir(t, filepath.Join(root, "a", "c", "d"), 0o755)
			writeMode(t, filepath.Join(root, "a", "c", "d", "secret"), 0o644)
			if err := os.Symlink(filepath.Join(root, "a"), filepath.Join(root, "link")); err != nil {
				t.Fatal(err)
			}
		}},
		{desc: "temporary names everywhere, a FIFO, a symlinked certificate", build: func(t *testing.T, root string) {
			for i := range 40 {
				dir := filepath.Join(root, "certs", "public", fmt.Sprintf("m%02d", i))
				mustMkdir(t, dir, 0o700)
				writeMode(t, filepath.Join(dir, "key.pem"), 0o600)
				writeMode(t, filepath.Join(dir, "cert.pem"), 0o644)
				if i%4 == 0 {
					writeMode(t, filepath.Join(dir, ".key.pem.tmp-123"), 0o600)
				}
			}
			writeMode(t, filepath.Join(root, ".p2ptls.toml.tmp-42"), 0o600)
			writeMode(t, filepath.Join(root, "mappings", ".m01.toml.tmp-7"), 0o644)
			aside := filepath.Join(root, "certs", "public", ".m03.tmp-99")
			mustMkdir(t, aside, 0o755)
			writeMode(t, filepath.Join(aside, "key.pem"), 0o640)
			writeMode(t, filepath.Join(aside, ".cert.pem.tmp-5"), 0o600)
			mustMkdir(t, filepath.Join(root, "run", "cache"), 0o700)
			writeMode(t, filepath.Join(root, "run", "cache", ".records.tmp-1"), 0o600)
			if err := syscall.Mkfifo(filepath.Join(root, "certs", "public", "m05", "fifo"), 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(root, "certs", "public", "m06", "cert.pem")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(root, "certs", "public", "m07", "cert.pem"), filepath.Join(root, "certs", "public", "m06", "cert.pem")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	roots := make([]string, len(tests))
	for i, tc := range tests {
		roots[i] = t.TempDir()
		mustMkdir(t, filepath.Join(roots[i], "mappings"), 0o700)
		tc.build(t, roots[i])
	}
	// Directories changed within the racy window are not trusted by
	// their identity: wait it out once, so that the memo's listings are
	// used below.
	time.Sleep(time.Second + 100*time.Millisecond)
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := roots[i]
			for range 5 { // workers take different subtrees in each run
				compareScan(t, root, nil)
			}
			if want, _, _, _ := walkModes(root); tc.desc != "empty" && len(want.secrets)+len(want.files)+len(want.dirs) == 0 {
				t.Fatal("the tree has no open modes: the test compares nothing")
			}
			// With the memo of listings: the first walk fills it, the
			// next ones read no directory whose listing it has, and see
			// the same.
			memo := state.OpenMemo(state.OpenDir(root, time.Second), pairMemoKind)
			if first := compareScan(t, root, memo); tc.desc != "empty" && first.stored == 0 {
				t.Fatal("the first walk memoized no listing")
			}
			if again := compareScan(t, root, memo); again.stored != 0 {
				t.Fatalf("the second walk listed %d directories again: the memo is not used", again.stored)
			}
			if tc.desc == "empty" {
				return
			}
			// What changes inside directories whose listings are
			// memoized is seen: a new file (the directory's times move),
			// a new temporary file, a chmod (the directory's do not).
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
				if err == nil && de.IsDir() && p != root && !strings.HasPrefix(p, filepath.Join(root, "run")) {
					dirs = append(dirs, p)
				}
				return nil
			})
			for j, d := range dirs {
				switch j % 3 {
				case 0:
					writeMode(t, filepath.Join(d, "new.txt"), 0o666)
				case 1:
					writeMode(t, filepath.Join(d, ".new.tmp-1"), 0o600)
				case 2:
					if err := os.Chmod(d, 0o750); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := os.Chmod(filepath.Join(root, "mappings"), 0o755); err != nil {
				t.Fatal(err)
			}
			compareScan(t, root, memo)
		})
	}
}

// compareScan walks root with scanTree (through memo, when not nil) and
// fails unless it finds what walkModes finds.
func compareScan(t *testing.T, root string, memo *state.Memo) treeScan {
	t.Helper()
	want, wantTemps, ids, werr := walkModes(root)
	got, err := scanTree(root, memo)
	if memo != nil {
		// The mapping directories' listings go in with their outcomes,
		// when doctor saves its memo.
		got.putMappingDirs(memo)
	}
	if !reflect.DeepEqual(got.modes, want) || (err == nil) != (werr == nil) {
		t.Fatalf("scanTree:\n%+v, %v\nWalkDir:\n%+v, %v", got.modes, err, want, werr)
	}
	if !reflect.DeepEqual(got.temps, wantTemps) {
		t.Fatalf("scanTree's temporary names:\n%+v\nWalkDir's:\n%+v", got.temps, wantTemps)
	}
	kept := 0
	for k, f := range got.pubFiles {
		mid := got.pubNames[k].name
		for _, hint := range []int{k, -1, k + 1, len(got.pubFiles)} {
			if got.filesOf(mid, hint) != &got.pubFiles[k] {
				t.Fatalf("filesOf(%s, %d) is not the walk's entry %d", mid, hint, k)
			}
		}
		for i, file := range storedFiles {
			if !f.ok[i] {
				continue
			}
			kept++
			name := "certs/public/" + mid + "/" + file
			if ids[name] != f.ids[i] {
				t.Fatalf("scanTree: identity of %s %+v, lstat's %+v", name, f.ids[i], ids[name])
			}
			if id, ok := got.fileID(mid, file); !ok || id != f.ids[i] {
				t.Fatalf("fileID(%s, %s) = %+v, %v", mid, file, id, ok)
			}
		}
	}
	if pairs := countPairs(ids); kept != pairs {
		t.Fatalf("scanTree keeps %d identities, want %d", kept, pairs)
	}
	// checkOrphans takes certs/public's names from the walk: they are
	// what listing it gives.
	pub := filepath.Join(root, "certs", "public")
	var listed []string
	des, rerr := os.ReadDir(pub)
	for _, de := range des {
		listed = append(listed, de.Name())
	}
	names, ok := got.publicNames()
	if fi, lerr := os.Lstat(pub); lerr == nil && fi.IsDir() && rerr == nil {
		if !ok || !slices.Equal(names, listed) {
			t.Fatalf("the walk's names in certs/public: %q, %v; ReadDir's %q", names, ok, listed)
		}
	} else if ok && err == nil {
		t.Fatalf("the walk says it read certs/public, which is no directory it can read: %q", names)
	}
	return got
}

// countPairs counts the mappings' certificates, keys and metadata among
// the regular files.
func countPairs(ids map[string]state.FileID) int {
	n := 0
	for name := range ids {
		if strings.HasPrefix(name, "certs/public/") && strings.Count(name, "/") == 3 && slices.Contains(storedFiles[:], path.Base(name)) {
			n++
		}
	}
	return n
}

func mustMkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func writeMode(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}
