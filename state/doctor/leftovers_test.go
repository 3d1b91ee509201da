package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

func TestCheckOrphans(t *testing.T) {
	seed := func(t *testing.T) *state.Dir {
		s := newStore(t)
		addListener(t, s, state.Listener{Name: "web", Addr: ":443"})
		addMapping(t, s, state.Mapping{ID: "keep", Listener: "web", Hosts: []string{"a.example.com"}, Source: state.SourceSelfSigned})
		return s
	}
	orphan := func(t *testing.T, s *state.Dir) {
		// What a mapping add killed before it saved p2ptls.toml leaves.
		mustWrite(t, s, "certs/public/ghost/key.pem", []byte("key"), state.SecretMode)
		mustWrite(t, s, "certs/public/ghost/.cert.pem.tmp-123", []byte("half"), state.PublicMode)
	}
	t.Run("none", func(t *testing.T) {
		want(t, run(input(seed(t)), checkOrphans), IDOrphans, OK, "no orphan mapping directories or temporary files")
	})
	t.Run("no state", func(t *testing.T) {
		want(t, run(input(newStore(t)), checkOrphans), IDOrphans, OK, "no state directory")
	})
	t.Run("orphan and temporary files", func(t *testing.T) {
		s := seed(t)
		orphan(t, s)
		mustWrite(t, s, ".p2ptls.toml.tmp-77", []byte("half"), state.SecretMode)
		mustWrite(t, s, "run/.status.json.tmp-5", []byte("serve's"), state.SecretMode) // serve writes run/ unlocked: not a leftover
		c := run(input(s), checkOrphans)
		want(t, c, IDOrphans, Warn, "2 leftovers left by an interrupted change: certs/public/ghost (with a private key), .p2ptls.toml.tmp-77")
		root := s.Root()
		wantHint(t, c, "run: rm -rf "+filepath.Join(root, "certs/public/ghost")+" "+filepath.Join(root, ".p2ptls.toml.tmp-77"))
		if strings.Contains(c.Message, "run/") {
			t.Errorf("serve's temporary file is reported: %s", c.Message)
		}
	})
	t.Run("a writer that finished after the walk left nothing", func(t *testing.T) {
		s := seed(t)
		mustWrite(t, s, ".p2ptls.toml.tmp-78", []byte("half"), state.SecretMode)
		ctx := context.Background()
		e := newEnvWalking(ctx, input(s), true) // the walk sees the writer's temporary file
		if _, err := e.tree(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(s.Root(), ".p2ptls.toml.tmp-78")); err != nil { // the writer renames it and unlocks
			t.Fatal(err)
		}
		want(t, checkOrphans(ctx, e), IDOrphans, OK, "no orphan mapping directories or temporary files")
	})
	t.Run("stale lock: the next change removes them", func(t *testing.T) {
		s := seed(t)
		orphan(t, s)
		if err := os.WriteFile(filepath.Join(s.Root(), state.LockFile), []byte("pid = 4194399\nhost = 'h'\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := run(input(s), checkOrphans)
		want(t, c, IDOrphans, Warn, "certs/public/ghost")
		wantHint(t, c, "rm -rf", "or make any change with p2ptls: it removes them when it takes over the stale lock")
	})
	t.Run("locked: a change in progress is not a leftover", func(t *testing.T) {
		s := seed(t)
		orphan(t, s)
		p := filepath.Join(s.Root(), state.LockFile)
		if err := os.WriteFile(p, []byte("pid = 1\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		want(t, run(input(s), checkOrphans), IDOrphans, OK, "not checked: a change is in progress")
	})
	t.Run("config does not load", func(t *testing.T) {
		s := seed(t)
		orphan(t, s)
		writeConfig(t, s, "schema_version = 1\n[[listeners]]\nname = 'web'\naddr = 'bad'\n")
		c := run(input(s), checkOrphans)
		want(t, c, IDOrphans, Warn, "certs/public/ghost/.cert.pem.tmp-123", "orphan mapping directories are not looked for")
		if strings.Contains(c.Message, "with a private key") {
			t.Errorf("an orphan was guessed without p2ptls.toml: %s", c.Message)
		}
	})
}
