package acme

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// remote is a store that is not a local directory.
type remote struct{ state.Store }

// The deploy hook gets absolute paths to the mapping's certificate and
// key: the files themselves in a state directory, and private copies read
// through the store otherwise (they were relative paths into nowhere
// before), removed once the hook has run.
func TestDeployHookFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := state.OpenDir(root, time.Second)
	ctx := context.Background()
	dir := mappings.MappingDir("m1")
	if err := d.Write(ctx, dir+"/"+mappings.CertFileName, []byte("CERT"), state.PublicMode); err != nil {
		t.Fatal(err)
	}
	if err := d.Write(ctx, dir+"/"+mappings.KeyFileName, []byte("KEY"), state.SecretMode); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc   string
		s      state.Store
		inRoot bool
	}{{"state directory", d, true}, {"not a directory", remote{d}, false}} {
		t.Run(tc.desc, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			hook := `{ echo "$P2PTLS_CERT_FILE"; echo "$P2PTLS_KEY_FILE"; cat "$P2PTLS_CERT_FILE" "$P2PTLS_KEY_FILE"; echo; stat -c %a "$P2PTLS_KEY_FILE"; } > ` + out
			if err := deploy(ctx, Hook{Command: hook}, quiet.Log, tc.s, state.Mapping{ID: "m1", Listener: "web", Hosts: []string{"a.example.com"}}); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 4 || lines[2] != "CERTKEY" || lines[3] != "600" {
				t.Fatalf("hook saw %q", lines)
			}
			cert, key := lines[0], lines[1]
			if !filepath.IsAbs(cert) || !filepath.IsAbs(key) || strings.HasPrefix(cert, root+"/") != tc.inRoot {
				t.Errorf("paths %q %q (in the state directory: want %v)", cert, key, tc.inRoot)
			}
			_, err = os.Stat(key)
			if gone := os.IsNotExist(err); gone == tc.inRoot {
				t.Errorf("key file after the hook: %v (a copy must be removed, the state's own kept)", err)
			}
		})
	}
}

// The hook's environment names the state directory, so that a p2ptls it
// runs finds the same state however this process was given it.
func TestDeployHookEnvironment(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := state.OpenDir(root, time.Second)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "out")
	hook := `echo "$CONFIG_DIR|$P2PTLS_MAPPING_ID|$P2PTLS_LISTENER|$P2PTLS_HOSTS" > ` + out
	m := state.Mapping{ID: "m1", Listener: "web", Hosts: []string{"a.example.com", "b.example.com"}}
	if err := deploy(ctx, Hook{Command: hook}, quiet.Log, d, m); err != nil {
		t.Fatal(err)
	}
	want := root + "|m1|web|a.example.com b.example.com"
	if got := strings.TrimSpace(string(mustReadFile(t, out))); got != want {
		t.Errorf("hook saw %q, want %q", got, want)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alive reports whether process pid (read from file) still runs.
func alive(t *testing.T, file string) bool {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(string(mustReadFile(t, file))))
	if err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie is dead: it only waits for init (or a container's first
	// process, which may be slow to reap) to collect it.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// A hook that runs past its timeout is stopped with what it started: its
// process group gets SIGTERM, then SIGKILL when it ignores that, and the
// error says it timed out. Before, a hook ran as long as it liked, with
// serve's renewals waiting behind it.
func TestDeployHookTimeout(t *testing.T) {
	defer func(g time.Duration) { hookGrace = g }(hookGrace)
	hookGrace = 300 * time.Millisecond
	tests := []struct {
		desc, hook string
		killedBy   string
	}{
		{"stops on SIGTERM", `sleep 60 & echo $! > "$PIDFILE"; echo started; wait`, "SIGTERM"},
		{"ignores SIGTERM", `trap '' TERM; sleep 60 & echo $! > "$PIDFILE"; echo started; while :; do sleep 1; done`, "SIGKILL"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			t.Setenv("PIDFILE", pidFile)
			start := time.Now()
			out, err := runHook(context.Background(), Hook{Command: tc.hook, Timeout: 500 * time.Millisecond}, os.Environ())
			if !errors.Is(err, errHookTimeout) || out != "started" {
				t.Fatalf("runHook = %q, %v; want the output and a timeout", out, err)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("took %v", took)
			}
			// The group is gone: the background sleep too. It may take a
			// moment to be reaped by init.
			deadline := time.Now().Add(10 * time.Second)
			for alive(t, pidFile) {
				if time.Now().After(deadline) {
					t.Fatalf("the hook's child outlived the hook (%s)", tc.killedBy)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// A hook that ends in time reports its exit status with its output; the
// output kept for the log is bounded however much the hook prints.
func TestDeployHookResult(t *testing.T) {
	tests := []struct {
		desc, hook string
		err        string
		out        string
	}{
		{"success", `echo done`, "", "done"},
		{"failure", `echo oops >&2; exit 3`, "exit status 3", "oops"},
		{"killed", `kill -9 $$`, "ended by signal 9 (killed)", ""},
		{"chatty", `i=0; while [ $i -lt 20000 ]; do echo "line $i of much output"; i=$((i+1)); done; echo last`, "", "last"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			out, err := runHook(context.Background(), Hook{Command: tc.hook, Timeout: time.Minute}, os.Environ())
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("err %v, want %q", err, tc.err)
			}
			if !strings.HasSuffix(out, tc.out) || len(out) > hookLogMax+8 {
				t.Errorf("output of %d bytes ending %q, want at most %d ending %q", len(out), out[max(0, len(out)-40):], hookLogMax, tc.out)
			}
		})
	}
}

// A hook whose context ends (serve stopping, cron's signal) is stopped
// the same way, at once.
func TestDeployHookStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := runHook(ctx, Hook{Command: `sleep 60`, Timeout: time.Hour}, os.Environ())
	if err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("err %v, want stopped", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("took %v", took)
	}
}
