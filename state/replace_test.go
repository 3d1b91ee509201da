package state

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRenameSwap(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "name"), []byte(filepath.Base(p)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, swapFn := range []func(string, string) error{renameSwap, swap} {
		if err := swapFn(a, b); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(a, "name")); string(got) != "b" {
			t.Errorf("a holds %q after the swap", got)
		}
		a, b = b, a // swap back through the next function
	}
	if left, _ := os.ReadDir(dir); len(left) != 2 {
		t.Errorf("left: %v", left)
	}
}
