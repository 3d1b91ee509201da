package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// walkModes is checkPermissions' walk as it was, one entry at a time: the
// reference scanModes must agree with, order included (the message names
// the first ten).
func walkModes(root string) (modeFindings, error) {
	w := &modeWalk{root: root}
	var f modeFindings
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		w.classify(&f, p, de)
		return nil
	})
	return f, err
}

// TestScanModesIsWalkDir: the parallel walk finds what WalkDir finds, in
// WalkDir's order, over a tree of many directories (so that workers take
// subtrees) with open modes at every depth, names that sort differently
// as paths than as names ("a.b" and "a/b"), and symlinks, which are not
// followed.
func TestScanModesIsWalkDir(t *testing.T) {
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
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := t.TempDir()
			mustMkdir(t, filepath.Join(root, "mappings"), 0o700)
			tc.build(t, root)
			want, werr := walkModes(root)
			for range 5 { // workers take different subtrees in each run
				got, err := scanModes(root)
				if !reflect.DeepEqual(got, want) || (err == nil) != (werr == nil) {
					t.Fatalf("scanModes:\n%+v, %v\nWalkDir:\n%+v, %v", got, err, want, werr)
				}
			}
			if tc.desc != "empty" && len(want.secrets)+len(want.files)+len(want.dirs) == 0 {
				t.Fatal("the tree has no open modes: the test compares nothing")
			}
		})
	}
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
