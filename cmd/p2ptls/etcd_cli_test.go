package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/etcdstore"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// etcdEnv is the environment of a CLI run on the etcd store at url, with
// a local directory of its own (which must stay without state).
func etcdEnv(t *testing.T, url string) (env []string, local string) {
	t.Helper()
	local = filepath.Join(t.TempDir(), "local")
	return []string{"P2PTLS_STORE=" + url, "CONFIG_DIR=" + local}, local
}

func TestCLIOnEtcdStore(t *testing.T) {
	c := etcdtest.Start(t)
	url := c.URL("p2ptls")
	env, local := etcdEnv(t, url)
	run := func(args ...string) result {
		t.Helper()
		r := p2ptls(t, env, args...)
		if r.code != 0 {
			t.Fatalf("p2ptls %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r
	}
	run("listener", "add", "web", "--addr", ":8443", "--http-addr", ":8080")
	run("mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--id", "app")

	// Two writers at once on different machines' worth of processes: the
	// etcd lock serialises them and neither change is lost.
	var wg sync.WaitGroup
	errs := make(chan string, 2)
	for _, id := range []string{"one", "two"} {
		wg.Go(func() {
			r := p2ptls(t, env, "mapping", "add", "--listener", "web", "--host", id+".example.test", "--self-signed", "--id", id)
			if r.code != 0 {
				errs <- fmt.Sprintf("%s: exit %d: %s", id, r.code, r.stderr)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	var list []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(run("mapping", "list", "--output", "json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range list {
		got[m.ID] = m.Status
	}
	for _, id := range []string{"app", "one", "two"} {
		if got[id] == "" {
			t.Errorf("mapping %s missing from %v", id, got)
		}
	}
	// The certificate is in etcd, not in the local directory.
	if _, err := os.Stat(filepath.Join(local, "p2ptls.toml")); err == nil {
		t.Errorf("the state was written to the local directory %s too", local)
	}
	run("cert", "show", "app")

	// Removing is seen by the next reader.
	run("mapping", "remove", "one")
	if out := run("mapping", "list").stdout; strings.Contains(out, "one.example.test") {
		t.Errorf("removed mapping still listed:\n%s", out)
	}
}

func TestCLIOnEtcdStoreLockTimesOutWithExit3(t *testing.T) {
	c := etcdtest.Start(t)
	url := c.URL("p2ptls")
	env, _ := etcdEnv(t, url)
	if r := p2ptls(t, env, "listener", "add", "web", "--addr", ":8443"); r.code != 0 {
		t.Fatalf("seed: %s", r.stderr)
	}
	ctx := context.Background()
	holder, err := etcdstore.OpenURL(ctx, url, os.Getenv, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	unlock, err := holder.Lock(ctx, "test holder")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	start := time.Now()
	r := p2ptls(t, env, "listener", "add", "api", "--addr", ":9443", "--lock-timeout", "400ms")
	if r.code != 3 {
		t.Fatalf("exit %d, want 3; stderr %s", r.code, r.stderr)
	}
	if waited := time.Since(start); waited < 400*time.Millisecond {
		t.Errorf("gave up after %v, before --lock-timeout", waited)
	}
	if !strings.Contains(r.stderr, "test holder") || !strings.Contains(r.stderr, "--lock-timeout") {
		t.Errorf("stderr %q should name the holder and --lock-timeout", r.stderr)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if r := p2ptls(t, env, "listener", "list"); r.code != 0 || strings.Contains(r.stdout, "api") {
		t.Errorf("the timed-out change was applied, or list failed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestCLIOnEtcdStoreRefusals(t *testing.T) {
	down := "127.0.0.1:" + strings.Split(freeAddr(t), ":")[1]
	tests := []struct {
		desc   string
		store  string
		args   []string
		code   int
		stderr string
	}{
		{"no prefix", "etcd://127.0.0.1:2379", []string{"mapping", "list"}, 2, "etcd://HOST:PORT"},
		{"another scheme", "http://127.0.0.1:2379/p", []string{"mapping", "list"}, 2, "etcd://"},
		{"unreachable endpoints", "etcd://" + down + "/p", []string{"mapping", "list"}, 1, down},
		{"unreachable, a change", "etcd://" + down + "/p", []string{"listener", "add", "web", "--addr", ":8443"}, 1, down},
		{"a command that reads no state", "etcd://" + down + "/p", []string{"version"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			env, local := etcdEnv(t, tt.store)
			r := p2ptls(t, env, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.stderr)
			}
			if tt.code != 0 && strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
				t.Errorf("more than a sentence and a hint:\n%s", r.stderr)
			}
			if _, err := os.Stat(local); err == nil && tt.code != 0 {
				t.Errorf("a refused command created %s", local)
			}
		})
	}
}
