package doctor

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// leftover creates a directory beside s's root at a staging name, as a
// restore leaves it: with its marker (staging) or without (the previous
// state after a crash right after the swap). With hold the marker is
// flocked, as by a restore running now, until the test ends.
func leftover(t *testing.T, s *state.Dir, name string, marker, hold bool) string {
	t.Helper()
	dir := s.Root() + state.RestoreStagingInfix + name
	if err := os.MkdirAll(filepath.Join(dir, "certs", "management"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "certs", "management", "ca.key"), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !marker {
		return dir
	}
	f, err := os.OpenFile(filepath.Join(dir, state.RestoreStagingMarker), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if !hold {
		f.Close()
		return dir
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRestoreStaging(t *testing.T) {
	t.Run("nothing left", func(t *testing.T) {
		s := healthy(t)
		want(t, run(input(s), checkRestoreStaging), IDRestoreStaging, OK, "no restore left a staging directory")
	})
	t.Run("a restore killed while extracting", func(t *testing.T) {
		s := healthy(t)
		dir := leftover(t, s, "0123456789ab", true, false)
		c := run(input(s), checkRestoreStaging)
		want(t, c, IDRestoreStaging, Warn, dir, "interrupted while extracting", "private keys")
		wantHint(t, c, "rm -rf "+dir)
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("doctor changed the leftover: %v", err)
		}
	})
	t.Run("a restore running now", func(t *testing.T) {
		s := healthy(t)
		leftover(t, s, "live", true, true)
		want(t, run(input(s), checkRestoreStaging), IDRestoreStaging, OK, "right now")
	})
	t.Run("the previous state after a crash right after the swap", func(t *testing.T) {
		s := healthy(t)
		dir := leftover(t, s, "fedcba987654", false, false)
		c := run(input(s), checkRestoreStaging)
		want(t, c, IDRestoreStaging, Warn, dir, "may hold the state from before it")
		wantHint(t, c, "mv "+dir+" "+s.Root()+".pre-restore-")
	})
	t.Run("no state directory yet", func(t *testing.T) {
		s := newStore(t)
		dir := leftover(t, s, "0123456789ab", true, false)
		c := run(input(s), checkRestoreStaging)
		want(t, c, IDRestoreStaging, Warn, dir)
	})
	t.Run("a file at such a name is no restore's", func(t *testing.T) {
		s := healthy(t)
		if err := os.WriteFile(s.Root()+state.RestoreStagingInfix+"x", nil, 0o600); err != nil {
			t.Fatal(err)
		}
		want(t, run(input(s), checkRestoreStaging), IDRestoreStaging, OK)
	})
}
