package state

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWatchFollowsExchangedDirectory: restore swaps the staged directory
// and the state in one renameat2(RENAME_EXCHANGE); the watch follows the
// path to the new directory, with fsnotify alone and with the poll alone.
func TestWatchFollowsExchangedDirectory(t *testing.T) {
	for _, mode := range watchModes {
		t.Run(mode.name, func(t *testing.T) {
			w := newWatched(t, mode.poll)
			staged := w.root + ".restore-tmp-2"
			if err := os.MkdirAll(staged, DirMode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(staged, ConfigFile), []byte("schema_version = 1\n"), SecretMode); err != nil {
				t.Fatal(err)
			}
			before := w.rev()
			if err := unix.Renameat2(unix.AT_FDCWD, staged, unix.AT_FDCWD, w.root, unix.RENAME_EXCHANGE); err != nil {
				t.Skipf("renameat2(RENAME_EXCHANGE): %v", err)
			}
			w.signalled("the directories exchanged", before)
			drain(w.ch)
			before = w.rev()
			w.write("mappings/a.toml", "id = 'a'\n")
			w.signalled("a record in the new directory", before)
		})
	}
}
