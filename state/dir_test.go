package state

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

func TestResolveDir(t *testing.T) {
	tests := []struct {
		desc string
		flag string
		env  map[string]string
		want string
	}{
		{"flag first", "/f", map[string]string{"CONFIG_DIR": "/c", "XDG_DATA_HOME": "/x", "HOME": "/h"}, "/f"},
		{"then CONFIG_DIR", "", map[string]string{"CONFIG_DIR": "/c", "XDG_DATA_HOME": "/x", "HOME": "/h"}, "/c"},
		{"then XDG_DATA_HOME", "", map[string]string{"XDG_DATA_HOME": "/x", "HOME": "/h"}, "/x/p2ptls"},
		{"then HOME", "", map[string]string{"HOME": "/h"}, "/h/.local/share/p2ptls"},
		{"cleaned", "/a/../b/", nil, "/b"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ResolveDir(tc.flag, func(k string) string { return tc.env[k] })
			if err != nil || got != tc.want {
				t.Errorf("ResolveDir = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := ResolveDir("", func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "CONFIG_DIR") {
		t.Errorf("no HOME: err = %v, want a hint at CONFIG_DIR", err)
	}
}

func TestWriteFileAtomicModesAndNoLeftovers(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []fs.FileMode{SecretMode, PublicMode} {
		p := filepath.Join(dir, "f")
		if err := WriteFileAtomic(p, []byte(mode.String()), mode); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(p)
		if err != nil || info.Mode().Perm() != mode {
			t.Errorf("mode %v, want %v (%v)", info.Mode().Perm(), mode, err)
		}
		if b, _ := os.ReadFile(p); string(b) != mode.String() {
			t.Errorf("content %q", b)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	// A failed write leaves no temp file and the old content in place.
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), SecretMode); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

func TestDirRefusesEscapingNames(t *testing.T) {
	d := OpenDir(t.TempDir(), time.Second)
	for _, name := range []string{"", ".", "..", "../x", "/etc/passwd", "a/../../x"} {
		if err := d.Write(context.Background(), name, []byte("x"), SecretMode); err == nil {
			t.Errorf("Write(%q) succeeded", name)
		}
		if _, err := d.Read(context.Background(), name); err == nil {
			t.Errorf("Read(%q) succeeded", name)
		}
	}
}

func TestDirStoreOperations(t *testing.T) {
	d := OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	if names, err := d.List(context.Background(), "certs"); err != nil || len(names) != 0 {
		t.Errorf("List of missing dir = %v, %v", names, err)
	}
	if err := d.Write(context.Background(), "certs/public/m1/cert.pem", []byte("c"), PublicMode); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.Root(), filepath.Join(d.Root(), "certs"), filepath.Join(d.Root(), "certs", "public", "m1")} {
		if info, err := os.Stat(p); err != nil || info.Mode().Perm() != DirMode {
			t.Errorf("%s: mode %v (%v), want 0700", p, info.Mode().Perm(), err)
		}
	}
	if names, _ := d.List(context.Background(), "certs/public"); len(names) != 1 || names[0] != "m1" {
		t.Errorf("List = %v", names)
	}
	if err := d.Delete(context.Background(), "certs/public/m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(context.Background(), "certs/public/m1/cert.pem"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Delete: %v", err)
	}
	if err := d.Delete(context.Background(), "certs/public/m1"); err != nil {
		t.Errorf("deleting twice: %v", err)
	}
}

func TestLockExcludesAndTimesOut(t *testing.T) {
	root := t.TempDir()
	unlock, err := OpenDir(root, time.Second).Lock(context.Background(), "first")
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenDir(root, 100*time.Millisecond).Lock(context.Background(), "second")
	if fault.KindOf(err) != fault.Locked || !strings.Contains(err.Error(), "first") {
		t.Fatalf("second lock: %v (kind %v), want Locked naming the holder", err, fault.KindOf(err))
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock, err = OpenDir(root, 100*time.Millisecond).Lock(context.Background(), "third")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestLockHonoursContext(t *testing.T) {
	root := t.TempDir()
	unlock, err := OpenDir(root, time.Second).Lock(context.Background(), "first")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := OpenDir(root, time.Minute).Lock(ctx, "second"); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestRevisionChangesOnlyWithState(t *testing.T) {
	d := OpenDir(t.TempDir(), time.Second)
	rev := func() string { b, _ := d.Read(context.Background(), RevisionFile); return string(b) }
	mutate := func(f func() error) {
		t.Helper()
		unlock, err := d.Lock(context.Background(), "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := f(); err != nil {
			t.Fatal(err)
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
	}
	mutate(func() error { return nil })
	if rev() != "" {
		t.Errorf("a lock without writes made a revision: %q", rev())
	}
	mutate(func() error { return d.Write(context.Background(), "run/status.json", []byte("{}"), SecretMode) })
	if rev() != "" {
		t.Errorf("a write under run/ made a revision: %q", rev())
	}
	mutate(func() error { return d.Write(context.Background(), "certs/public/m/cert.pem", []byte("c"), PublicMode) })
	first := rev()
	if first == "" {
		t.Fatal("a state write made no revision")
	}
	mutate(func() error { return d.Delete(context.Background(), "certs/public/m") })
	if rev() == first {
		t.Error("a delete did not change the revision")
	}
}
