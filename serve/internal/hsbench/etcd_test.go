package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildHsbench builds this command: -store etcd re-executes it as the
// etcd member.
func buildHsbench(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "hsbench")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestEtcdTargetServesTheState: the state hsbench generates, copied into
// its etcd member with store copy, is served by p2ptls serve on the store,
// rebound onto etcdHost with the listener's port, after a first start
// that made its snapshot and a restart on it, every mapping its own
// certificate and the rounds' mix without a wrong one; a second copy into
// the same prefix fails naming the command; stopping the member leaves
// no process of its group.
func TestEtcdTargetServesTheState(t *testing.T) {
	if testing.Short() {
		t.Skip("builds p2ptls and runs etcd and serve")
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	self := buildHsbench(t, tmp)
	bin := filepath.Join(tmp, "p2ptls")
	if err := buildP2ptls(ctx, bin); err != nil {
		t.Fatal(err)
	}
	addr, err := freePortAddr()
	if err != nil {
		t.Fatal(err)
	}
	if h, _, _ := net.SplitHostPort(addr); h != "127.0.0.1" {
		t.Fatalf("freePortAddr %s, want 127.0.0.1", addr)
	}
	const n = 8
	dir := filepath.Join(tmp, "state")
	mix, err := prepareState(ctx, dir, addr, n)
	if err != nil {
		t.Fatal(err)
	}
	store, err := startEtcd(ctx, self, tmp, n)
	if err != nil {
		t.Fatal(err)
	}
	defer store.p.stop()
	if err := store.copyInto(ctx, bin, dir); err != nil {
		t.Fatal(err)
	}
	srv, err := startOnEtcd(ctx, tmp, bin, store, addr, warmName(n-1), n)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.p.stop()
	_, port, _ := net.SplitHostPort(addr)
	if srv.addr != net.JoinHostPort(etcdHost, port) || srv.firstStart <= 0 || srv.start <= 0 || srv.atStart.rss <= 0 {
		t.Errorf("target on %s, first start %v, restart %v, VmRSS at start %d kB; want %s:%s and all measured", srv.addr, srv.firstStart, srv.start, srv.atStart.rss, etcdHost, port)
	}
	// The restart serves from the snapshot the first start made.
	if _, err := os.Stat(filepath.Join(tmp, fmt.Sprintf("etcd-local-%d", n), "snapshot")); err != nil {
		t.Errorf("no snapshot after the first start: %v", err)
	}
	for i := range n {
		if matched, err := handshake(srv.addr, warmName(i)); err != nil || !matched {
			t.Errorf("%s on %s: matched %v, %v", warmName(i), srv.addr, matched, err)
		}
	}
	c, err := handshakes(ctx, srv.addr, mix, 300*time.Millisecond, 2)
	if err != nil || c.ok == 0 || c.wrong != 0 {
		t.Errorf("the rounds' mix on etcd: %+v, %v; want handshakes, none with a wrong certificate", c, err)
	}

	if err := store.copyInto(ctx, bin, dir); err == nil || !strings.Contains(err.Error(), "p2ptls store copy --from "+dir) {
		t.Errorf("a second copy into the same prefix: %v, want a failure naming the command", err)
	}

	pgid := store.p.pid()
	store.p.stop()
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("after stop, etcd's process group %d: %v; want it gone", pgid, err)
	}
}

// TestStoreFlagRefusals: a -store that is neither backend, or -store etcd
// with -start-only (which it does not apply to), exits 2 with one line
// naming the flag, before anything is built or started.
func TestStoreFlagRefusals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hsbench")
	}
	self := buildHsbench(t, t.TempDir())
	tests := []struct {
		desc string
		args []string
		says string
	}{
		{"an unknown backend", []string{"-store", "nfs"}, `hsbench: -store: "nfs" is neither dir nor etcd`},
		{"etcd with -start-only", []string{"-store", "etcd", "-start-only"}, "hsbench: -store etcd applies to the handshake rounds, not to -start-only"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cmd := exec.Command(self, tc.args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.HasPrefix(stderr.String(), tc.says) || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("%v: %v, stderr %q; want exit 2 and one line starting %q", tc.args, err, stderr.String(), tc.says)
			}
		})
	}
}

// TestSettleAfterStart: an idle process is settled after the first
// second; one that keeps a core busy is reported still busy at the limit.
func TestSettleAfterStart(t *testing.T) {
	tmp := t.TempDir()
	tests := []struct {
		desc, script string
		wantBusy     bool
	}{
		{"idle", "sleep 30", false},
		{"busy", "while :; do :; done", true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p, err := startProc("/bin/sh", []string{"-c", tc.script}, nil, filepath.Join(tmp, tc.desc+".log"))
			if err != nil {
				t.Fatal(err)
			}
			defer p.stop()
			waited, err := settleAfterStart(context.Background(), p.pid(), 2500*time.Millisecond)
			switch {
			case tc.wantBusy && (err == nil || !strings.Contains(err.Error(), "still busy")):
				t.Errorf("waited %v, %v; want still busy", waited, err)
			case !tc.wantBusy && (err != nil || waited < time.Second):
				t.Errorf("waited %v, %v; want settled after about a second", waited, err)
			}
		})
	}
}
