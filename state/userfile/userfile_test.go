package userfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "ok.pem")
	if err := os.WriteFile(regular, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, 11), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(regular, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.pem")
	if err := os.Symlink(filepath.Join(dir, "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		desc, path string
		want       string // "" for success
	}{
		{"regular file", regular, ""},
		{"symlink to a regular file", link, ""},
		{"larger than the limit", big, "larger than the 10 bytes limit"},
		{"missing", filepath.Join(dir, "missing"), "no such file or directory"},
		{"dangling symlink", dangling, "no such file or directory"},
		{"directory", dir, "a directory, not a regular file"},
		{"FIFO without a writer", fifo, "a FIFO (named pipe), not a regular file"},
		{"/dev/zero", "/dev/zero", "a character device, not a regular file"},
		{"/dev/urandom", "/dev/urandom", "a character device, not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			done := make(chan struct{})
			var b []byte
			var err error
			go func() { defer close(done); b, err = Read(tc.path, 10) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Read blocked")
			}
			if tc.want == "" {
				if err != nil || string(b) != "hello" {
					t.Fatalf("Read = %q, %v; want hello", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read error = %v; want it to say %q", err, tc.want)
			}
			if fault.KindOf(err) != fault.Invalid {
				t.Errorf("error kind = %v; want Invalid (exit 2)", fault.KindOf(err))
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name %s", err, tc.path)
			}
		})
	}
}

func TestReadAllFromAStream(t *testing.T) {
	if _, err := ReadAll(strings.NewReader(strings.Repeat("x", 65)), "standard input", 64); err == nil || !strings.Contains(err.Error(), "standard input is larger") && !strings.Contains(err.Error(), "cannot read standard input") {
		t.Fatalf("ReadAll of 65 bytes with limit 64 = %v", err)
	}
	b, err := ReadAll(strings.NewReader("abc"), "standard input", 64)
	if err != nil || string(b) != "abc" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{MaxPEM: "1 MiB", MaxSecret: "64 KiB", 10: "10 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q; want %q", n, got, want)
		}
	}
}
