package state

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestStatDirIsStat: a StatDir gives the very identity Memo.Stat gives
// (so that memo entries taken either way match), links followed, and
// after Close it stats by path: a directory swapped in (a restore) is seen.
func TestStatDirIsStat(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "public")
	write := func(name, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "a", "cert.pem"), "cert")
	write(filepath.Join(root, "elsewhere.pem"), "linked")
	if err := os.Symlink(filepath.Join(root, "elsewhere.pem"), filepath.Join(dir, "a", "link.pem")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere", filepath.Join(dir, "a", "dangling.pem")); err != nil {
		t.Fatal(err)
	}
	sd := OpenStatDir(dir)
	defer sd.Close()
	for _, rel := range []string{"a/cert.pem", "a/link.pem", "a/dangling.pem", "a/missing.pem", "a", "missing/cert.pem"} {
		want, wantOK := statID(filepath.Join(dir, filepath.FromSlash(rel)))
		got, ok := sd.Stat(rel)
		if got != want || ok != wantOK {
			t.Errorf("Stat(%q) = %+v, %v; os.Stat gives %+v, %v", rel, got, ok, want, wantOK)
		}
	}
	if runtime.GOOS == "linux" && sd.fd < 0 {
		t.Fatal("the directory was not opened: every stat went by path")
	}

	// Swapped: the open directory still shows the old file; once closed,
	// the new one.
	old, _ := sd.Stat("a/cert.pem")
	if err := os.Rename(dir, filepath.Join(root, "public.old")); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "a", "cert.pem"), "new cert, another size")
	now, _ := statID(filepath.Join(dir, "a", "cert.pem"))
	if runtime.GOOS == "linux" {
		if got, _ := sd.Stat("a/cert.pem"); got != old {
			t.Errorf("open: %+v, want the old directory's %+v", got, old)
		}
	}
	sd.Close()
	if got, ok := sd.Stat("a/cert.pem"); !ok || got != now {
		t.Errorf("after Close: %+v, %v; want the new file's %+v", got, ok, now)
	}
	var none *StatDir
	none.Close()
}
