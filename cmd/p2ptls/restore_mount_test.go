package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/mounttest"
)

// mountArchives are two backups of one state, b with one more mapping,
// and the snapshot each restores to.
type mountArchives struct {
	a, b      string
	want      map[string]map[string]string
	listener  string // the address of their listener
	took      time.Duration
	laterCert string // b's extra mapping's certificate, in the source
}

func newMountArchives(t *testing.T, extra int) mountArchives {
	t.Helper()
	src, _ := newBackupState(t)
	for i := range extra { // enough files that a restore takes a while
		src.must(t, "mapping", "add", "--listener", "web", "--host", fmt.Sprintf("h%d.example.test", i), "--self-signed")
	}
	files := t.TempDir()
	m := mountArchives{a: filepath.Join(files, "a.tar.gz"), b: filepath.Join(files, "b.tar.gz"), want: map[string]map[string]string{}}
	src.must(t, "backup", "--out", m.a)
	src.must(t, "mapping", "add", "--listener", "web", "--host", "later.example.test", "--self-signed", "--id", "later")
	src.must(t, "backup", "--out", m.b)
	m.laterCert = filepath.Join(src.dir, "certs", "public", "later", "cert.pem")
	var listeners []listenerJSON
	if err := json.Unmarshal([]byte(src.must(t, "listener", "list", "--output", "json")), &listeners); err != nil || len(listeners) != 1 {
		t.Fatalf("listeners: %v %v", listeners, err)
	}
	m.listener = listeners[0].Addr
	for name, a := range map[string]string{"a": m.a, "b": m.b} {
		dir := filepath.Join(t.TempDir(), name)
		start := time.Now()
		if r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "restore", a); r.code != 0 {
			t.Fatalf("restore %s: %s", name, r.stderr)
		}
		m.took = max(m.took, time.Since(start))
		m.want[name] = stateSnapshot(t, dir)
	}
	return m
}

// restoreSnapshot is stateSnapshot without what a restore into a mount
// point keeps of its own inside it: previous states, and the staging
// directory of one killed while extracting (the next restore removes it).
func restoreSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := stateSnapshot(t, dir)
	for p := range snap {
		top, _, _ := strings.Cut(p, "/")
		if state.IsRestoreEntry(top) {
			delete(snap, p)
		}
	}
	return snap
}

// TestRestoreIntoMountPoint: restore works when CONFIG_DIR is a mount point
// (a Compose volume, a systemd StateDirectory): into the empty mount
// without --force, over a state with --force keeping the old one inside
// it, where doctor names it and backups leave it out; a running serve
// serves the restored state.
func TestRestoreIntoMountPoint(t *testing.T) {
	t.Parallel()
	m := newMountArchives(t, 0)
	for _, kind := range []string{"tmpfs", "bind"} {
		t.Run(kind, func(t *testing.T) {
			mnt := mounttest.MountPoint(t, kind)
			env := []string{"CONFIG_DIR=" + mnt, "MANAGEMENT_LISTEN=" + freeAddr(t)}
			if r := p2ptls(t, env, "restore", m.a); r.code != 0 {
				t.Fatalf("restore into the empty mount point: exit %d %s", r.code, r.stderr)
			}
			assertSameSnapshot(t, m.want["a"], restoreSnapshot(t, mnt))
			serve := startServe(t, env)
			if r := p2ptls(t, env, "restore", m.b); r.code != 1 || !strings.Contains(r.stderr, "inside it as "+filepath.Join(mnt, "pre-restore-<time>")) {
				t.Errorf("restore over a state without --force: exit %d %s", r.code, r.stderr)
			}
			r := p2ptls(t, env, "restore", m.b, "--force", "--output", "json")
			var res struct {
				PreviousState string `json:"previous_state"`
			}
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
				t.Fatalf("restore --force: exit %d %s %s", r.code, r.stdout, r.stderr)
			}
			if filepath.Dir(res.PreviousState) != mnt || !strings.HasPrefix(filepath.Base(res.PreviousState), "pre-restore-") {
				t.Errorf("previous state kept in %q, want %s/pre-restore-<time>", res.PreviousState, mnt)
			}
			assertSameSnapshot(t, m.want["b"], restoreSnapshot(t, mnt))
			assertSameSnapshot(t, m.want["a"], stateSnapshot(t, res.PreviousState))
			if left, _ := filepath.Glob(filepath.Join(mnt, ".p2ptls-*")); len(left) != 0 {
				t.Errorf("left: %v", left)
			}
			// The running serve picks the swapped content up.
			serial := fileSerial(t, m.laterCert)
			eventually(t, 20*time.Second, func() error { return serves(m.listener, "later.example.test", serial) })

			doc, _ := runDoctor(t, env)
			if status, msg, _ := doc.check(t, "state.restore_staging"); status != "ok" || !strings.Contains(msg, res.PreviousState) {
				t.Errorf("doctor: %s %q", status, msg)
			}
			// A backup of the mount point holds the state, not the kept one.
			again := filepath.Join(t.TempDir(), "again.tar.gz")
			if r := p2ptls(t, env, "backup", "--out", again); r.code != 0 {
				t.Fatalf("backup: %s", r.stderr)
			}
			fresh := filepath.Join(t.TempDir(), "fresh")
			if r := p2ptls(t, []string{"CONFIG_DIR=" + fresh}, "restore", again); r.code != 0 {
				t.Fatalf("restore of the backup: %s", r.stderr)
			}
			assertSameSnapshot(t, m.want["b"], stateSnapshot(t, fresh))
			serve.stop(t)
		})
	}
}

// TestKilledRestoreIntoMountPoint is TestKilledRestoreLeavesALoadableState
// on a mount point: "p2ptls restore --force" SIGKILLed at random moments;
// after the next command the state is exactly the old or the new one.
// (state's TestReplaceMountKilledAtEachStep kills at every step.)
func TestKilledRestoreIntoMountPoint(t *testing.T) {
	t.Parallel()
	m := newMountArchives(t, 20)
	if maps.Equal(m.want["a"], m.want["b"]) {
		t.Fatal("the two archives restore the same state")
	}
	archives := map[string]string{"a": m.a, "b": m.b}
	for _, kind := range []string{"tmpfs", "bind"} {
		t.Run(kind, func(t *testing.T) {
			mnt := mounttest.MountPoint(t, kind)
			env := []string{"CONFIG_DIR=" + mnt}
			if r := p2ptls(t, env, "restore", m.a); r.code != 0 {
				t.Fatal(r.stderr)
			}
			current := "a"
			outcomes := map[string]int{}
			for i := range 20 {
				next := map[string]string{"a": "b", "b": "a"}[current]
				cmd := command(env, "restore", archives[next], "--force")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(rand.N(m.took * 3 / 2))
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if _, err := os.Lstat(filepath.Join(mnt, "p2ptls.restore-journal")); err == nil {
					outcomes["killed mid-swap"]++
				}
				// The next command finishes a swap the kill interrupted.
				if r := p2ptls(t, env, "listener", "list"); r.code != 0 {
					t.Fatalf("attempt %d: listener list after the kill: %s", i, r.stderr)
				}
				got := restoreSnapshot(t, mnt)
				switch {
				case maps.Equal(got, m.want[next]):
					outcomes["new state"]++
					current = next
				case maps.Equal(got, m.want[current]):
					outcomes["old state"]++
				default:
					assertSameSnapshot(t, m.want[next], got)
					t.Fatalf("attempt %d: the state is neither the old nor the new one", i)
				}
				if _, err := os.Lstat(filepath.Join(mnt, "p2ptls.restore-journal")); err == nil {
					t.Fatalf("attempt %d: the swap journal is left after the next command", i)
				}
				for _, args := range [][]string{{"mapping", "list"}, {"ca", "show"}} {
					if r := p2ptls(t, env, args...); r.code != 0 {
						t.Fatalf("attempt %d: %v does not load the state: %s", i, args, r.stderr)
					}
				}
			}
			t.Logf("restore takes %v; after a kill the state was: %v", m.took, outcomes)
			// What the killed restores left is removed by the next one.
			next := map[string]string{"a": "b", "b": "a"}[current]
			if r := p2ptls(t, env, "restore", archives[next], "--force"); r.code != 0 {
				t.Fatalf("restore after the kills: %s", r.stderr)
			}
			assertSameSnapshot(t, m.want[next], restoreSnapshot(t, mnt))
			if left, _ := filepath.Glob(filepath.Join(mnt, ".p2ptls-*")); len(left) != 0 {
				t.Errorf("left after a finished restore: %v", left)
			}
		})
	}
}

// doctor never takes the lock: a swap cut short (its journal there) is
// reported, not finished; the next other command finishes it.
func TestDoctorReportsAnInterruptedSwap(t *testing.T) {
	t.Parallel()
	p, _ := newBackupState(t)
	staged := filepath.Join(p.dir, ".p2ptls-restore-0123456789ab")
	if err := os.MkdirAll(filepath.Join(staged, "extra"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staged, ".restore-staging"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(p.dir, "p2ptls.restore-journal")
	body := `{"version":1,"phase":"swap","staged":".p2ptls-restore-0123456789ab","old":".p2ptls-old-0123456789ab","old_entries":[],"new_entries":["extra"]}`
	if err := os.WriteFile(journal, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, _ := runDoctor(t, p.env)
	if status, msg, hint := doc.check(t, "state.restore_staging"); status != "warn" || !strings.Contains(msg, staged) || !strings.Contains(hint, "finishes the restore") {
		t.Errorf("doctor: %s %q hint %q", status, msg, hint)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("doctor finished the swap: %v", err)
	}
	p.must(t, "ca", "show")
	if _, err := os.Stat(journal); !os.IsNotExist(err) {
		t.Errorf("the next command left the journal: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "extra")); err != nil {
		t.Errorf("the swap was not finished: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(p.dir, ".p2ptls-*")); len(left) != 0 {
		t.Errorf("left: %v", left)
	}
}
