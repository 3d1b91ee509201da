// Package mounttest makes real mount points for tests of a state
// directory that is itself one (a Compose volume, a systemd
// StateDirectory): restore cannot rename it and must swap its content.
package mounttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// MountPoint makes a fresh mount point, unmounted at cleanup: kind
// "tmpfs", or "bind", a bind mount of a directory of the test's own file
// system (the same device as its parent: only the mount id tells it). It
// needs root; without root the test skips, except with CI=true (CI runs
// as root), where it fails.
func MountPoint(t testing.TB, kind string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but not root: the mount-point restore tests mount a tmpfs and a bind mount")
		}
		t.Skip("not root: the mount-point restore tests mount a tmpfs and a bind mount")
	}
	base := t.TempDir()
	mnt := filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	var args []string
	switch kind {
	case "tmpfs":
		args = []string{"-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", mnt}
	case "bind":
		src := filepath.Join(base, "src")
		if err := os.Mkdir(src, 0o700); err != nil {
			t.Fatal(err)
		}
		args = []string{"--bind", src, mnt}
	default:
		t.Fatalf("mount kind %q", kind)
	}
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount %v: %v\n%s", args, err, out)
		}
		t.Skipf("cannot mount here (%v): %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
			_ = exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt
}
