package statetest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Hostile is a path a user might name by mistake or malice where a
// certificate, key or secret file is expected, and what the refusal says
// about it.
type Hostile struct {
	Desc, Path string
	Says       string // a fragment of the one-sentence refusal
}

// BigFile is larger than every limit of userfile (PEM 1 MiB).
const BigFile = 2 << 20

// HostilePaths creates, under dir, a FIFO without a writer, a directory, a
// 2 MiB regular file and a symlink to /dev/zero, and returns them with
// /dev/zero and /dev/urandom. Without a bounded, regular-only read the FIFO
// blocks forever and the devices grow a read until memory runs out.
func HostilePaths(t testing.TB, dir string) []Hostile {
	t.Helper()
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.pem")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.pem")
	// Valid-looking PEM, so that only the size can refuse it.
	block := "-----BEGIN CERTIFICATE-----\n" + strings.Repeat(strings.Repeat("A", 64)+"\n", 1000) + "-----END CERTIFICATE-----\n"
	if err := os.WriteFile(big, []byte(strings.Repeat(block, BigFile/len(block)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	zeroLink := filepath.Join(dir, "zero.pem")
	if err := os.Symlink("/dev/zero", zeroLink); err != nil {
		t.Fatal(err)
	}
	return []Hostile{
		{"/dev/zero", "/dev/zero", "it is a character device, not a regular file"},
		{"/dev/urandom", "/dev/urandom", "it is a character device, not a regular file"},
		{"a symlink to /dev/zero", zeroLink, "it is a character device, not a regular file"},
		{"a FIFO", fifo, "it is a FIFO (named pipe), not a regular file"},
		{"a directory", sub, "it is a directory, not a regular file"},
		{"a 2 MiB file", big, "it is larger than the"},
	}
}

// Within runs f and fails the test if it has not returned after d: a read
// that blocks (a FIFO) must fail the test, not hang it. A blocked f is
// left behind; the test has failed anyway.
func Within(t testing.TB, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
	}
}
