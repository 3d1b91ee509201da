// The signal tests watch the command through inotify and /proc.

//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// signalBound is what the tests allow a command between the signal and its
// exit. The promise is one second; the slack is for a loaded CI machine.
const signalBound = 3 * time.Second

// running is a p2ptls started in the background.
type running struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan error
}

func start(t *testing.T, env []string, stdin io.Reader, args ...string) *running {
	t.Helper()
	r := &running{cmd: command(env, args...), done: make(chan error, 1)}
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr = stdin, &r.stdout, &r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// interrupt sends sig once ready is closed and returns the exit code and
// how long the command took to exit after the signal.
func (r *running) interrupt(t *testing.T, ready <-chan struct{}, sig syscall.Signal) (int, time.Duration) {
	t.Helper()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("p2ptls exited before it was interrupted: %v\nstdout %s\nstderr %s", err, r.stdout.String(), r.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatal("p2ptls did not reach the step to interrupt")
	}
	sent := time.Now()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-r.done:
		took := time.Since(sent)
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("p2ptls was killed by %v instead of handling it", ws.Signal())
		}
		return r.cmd.ProcessState.ExitCode(), took
	case <-time.After(signalBound):
		t.Fatalf("p2ptls still runs %v after %v\nstderr %s", signalBound, sig, r.stderr.String())
	}
	return 0, 0
}

// wantInterrupted checks the one line an interrupted command prints, after
// whatever it logged.
func wantInterrupted(t *testing.T, r *running, code, wantCode int, line string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit %d, want %d", code, wantCode)
	}
	var own []string
	for _, l := range strings.Split(strings.TrimSuffix(r.stderr.String(), "\n"), "\n") {
		if strings.HasPrefix(l, "p2ptls: ") {
			own = append(own, l)
		}
	}
	if len(own) != 1 || own[0] != "p2ptls: error: "+line || !strings.HasSuffix(r.stderr.String(), line+"\n") {
		t.Errorf("stderr %q, want it to end with the one line %q", r.stderr.String(), line)
	}
}

// opened is closed when a process opens file: the command reached the lock
// (after it installed its signal handler). inotify makes this exact.
func opened(t *testing.T, file string) <-chan struct{} {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, file, syscall.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	t.Cleanup(func() { f.Close() })
	ch := make(chan struct{})
	go func() {
		if _, err := f.Read(make([]byte, 4096)); err == nil {
			close(ch)
		}
	}()
	return ch
}

// TestSignalEndsLockWait: a command waiting for the lock ends at once on
// SIGTERM (143) and SIGINT (130), and the state is as it was.
func TestSignalEndsLockWait(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
		name string
	}{{syscall.SIGTERM, 143, "SIGTERM"}, {syscall.SIGINT, 130, "SIGINT"}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := seededState(t)
			unlock := holdLock(t, dir)
			defer unlock()
			before := snapshot(t, dir)
			ready := opened(t, filepath.Join(dir, "p2ptls.lock"))
			r := start(t, []string{"CONFIG_DIR=" + dir}, nil, "listener", "add", "api", "--addr", ":9443", "--lock-timeout", "10m")
			code, took := r.interrupt(t, ready, tc.sig)
			t.Logf("exited %v after %s", took, tc.name)
			wantInterrupted(t, r, code, tc.code, "interrupted by "+tc.name+"; the state is unchanged")
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}
}

// hangingServer accepts TCP connections on 127.0.0.1 and never answers;
// accepted is closed at the first connection.
func hangingServer(t *testing.T) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	var (
		mu    sync.Mutex
		conns []net.Conn
		once  sync.Once
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			once.Do(func() { close(ch) })
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), ch
}

// TestSignalEndsSlowNetworkStep: a command stuck on a server that accepts
// and never answers (ACME directory, DNS provider API) ends at once on
// SIGTERM.
func TestSignalEndsSlowNetworkStep(t *testing.T) {
	tests := []struct {
		desc  string
		setup func(t *testing.T, env []string, addr string)
		args  func(addr string) []string
	}{
		{"acme account register", nil, func(addr string) []string {
			return []string{"acme", "account", "register", "--email", "ops@example.test", "--directory", "https://" + addr + "/dir", "--agree-tos"}
		}},
		{"dns-credential test", func(t *testing.T, env []string, addr string) {
			if r := p2ptls(t, append(env, "TOK=tok-1234567890"), "dns-credential", "add", "cf", "--api-token-env", "TOK", "--api-base-url", "http://"+addr); r.code != 0 {
				t.Fatalf("dns-credential add: exit %d: %s", r.code, r.stderr)
			}
		}, func(string) []string { return []string{"dns-credential", "test", "cf"} }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := seededState(t)
			env := []string{"CONFIG_DIR=" + dir}
			addr, accepted := hangingServer(t)
			if tc.setup != nil {
				tc.setup(t, env, addr)
			}
			before := snapshot(t, dir)
			r := start(t, env, nil, tc.args(addr)...)
			code, took := r.interrupt(t, accepted, syscall.SIGTERM)
			t.Logf("exited %v after SIGTERM", took)
			wantInterrupted(t, r, code, 143, "interrupted by SIGTERM; the state is unchanged")
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}
}

// blockedReading is closed once a thread of pid blocks in read(2) on fd 0:
// /proc/PID/task/TID/syscall names the system call a thread waits in.
func blockedReading(t *testing.T, pid int) <-chan struct{} {
	t.Helper()
	readNR := map[string]string{"amd64": "0", "arm64": "63"}[runtime.GOARCH]
	if readNR == "" {
		t.Skipf("no read(2) number for %s", runtime.GOARCH)
	}
	ch := make(chan struct{})
	go func() {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
			for _, f := range tasks {
				if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), readNR+" 0x0 ") {
					close(ch)
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return ch
}

// TestSignalEndsStdinRead: a read of standard input that never ends (the
// token from a pipe nobody writes to) does not keep the command alive.
func TestSignalEndsStdinRead(t *testing.T) {
	dir := seededState(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	before := snapshot(t, dir)
	r := start(t, []string{"CONFIG_DIR=" + dir}, pr, "dns-credential", "add", "cf", "--api-token-file", "-")
	code, took := r.interrupt(t, blockedReading(t, r.cmd.Process.Pid), syscall.SIGTERM)
	t.Logf("exited %v after SIGTERM", took)
	wantInterrupted(t, r, code, 143, "interrupted by SIGTERM; the state is unchanged")
	assertSameSnapshot(t, before, snapshot(t, dir))
}

// txtDropper is a DNS server on 127.0.0.1 that forwards every query to
// upstream except TXT queries, which it never answers: a DNS-01
// propagation check that waits forever. seen is closed at the first TXT
// query.
func txtDropper(t *testing.T, upstream string) (addr string, seen <-chan struct{}) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{})
	var once sync.Once
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		if len(q.Question) > 0 && q.Question[0].Qtype == dns.TypeTXT {
			once.Do(func() { close(ch) })
			return
		}
		resp, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, upstream)
		if err == nil {
			w.WriteMsg(resp)
		}
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String(), ch
}

// TestSignalEndsDNSPropagationWait: "cert issue" waiting for a DNS-01 TXT
// record to show up at the resolvers ends at once on SIGTERM, with no
// failed attempt recorded and the lock released: the state is as before.
func TestSignalEndsDNSPropagationWait(t *testing.T) {
	a := newACMEState(t)
	a.must(t, "mapping", "add", "--listener", "web", "--host", "stuck.example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf", "--id", "stuck")
	resolver, seen := txtDropper(t, a.env.DNSResolver)
	before := snapshot(t, a.dir)
	r := start(t, append(a.env2(), "P2PTLS_DNS_RESOLVERS="+resolver), nil, "cert", "issue", "stuck")
	code, took := r.interrupt(t, seen, syscall.SIGTERM)
	t.Logf("exited %v after SIGTERM", took)
	wantInterrupted(t, r, code, 143, "interrupted by SIGTERM; the state is unchanged")
	assertSameSnapshot(t, before, snapshot(t, a.dir))
	if m := a.mapping(t, "stuck"); m.Attempts != 0 || m.LastError != "" {
		t.Errorf("the interrupted issuance was recorded as an attempt: %+v", m)
	}
}

// fileAppears is closed once file exists.
func fileAppears(file string) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(file); err == nil {
				close(ch)
				return
			}
		}
	}()
	return ch
}

// TestSignalDuringCommitSavesTheChange: SIGTERM while "cert renew" runs its
// deploy hook, after the new certificate was saved and the lock released,
// ends the hook and the command at once, and says that the change was
// saved: a whole new certificate, key and record, never half of them.
func TestSignalDuringCommitSavesTheChange(t *testing.T) {
	a := newACMEState(t)
	a.must(t, "mapping", "add", "--listener", "web", "--host", "hook.example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf", "--id", "hook")
	a.must(t, "cert", "issue", "hook")
	old := a.verifyIssued(t, "hook", "hook.example.test")
	ready := filepath.Join(t.TempDir(), "hook-running")
	r := start(t, a.env2(), nil, "cert", "renew", "--force", "--no-random-sleep", "--deploy-hook", "touch "+ready+"; exec sleep 30")
	code, took := r.interrupt(t, fileAppears(ready), syscall.SIGTERM)
	t.Logf("exited %v after SIGTERM", took)
	wantInterrupted(t, r, code, 143, "interrupted by SIGTERM; the change it made was saved")
	renewed := a.verifyIssued(t, "hook", "hook.example.test")
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("the renewed certificate was not saved")
	}
	if _, err := tls.LoadX509KeyPair(a.mappingCertFile("hook"), filepath.Join(filepath.Dir(a.mappingCertFile("hook")), "key.pem")); err != nil {
		t.Errorf("certificate and key do not belong together: %v", err)
	}
	if m := a.mapping(t, "hook"); m.Status != "valid" || m.IssuedAt == nil || m.LastError != "" {
		t.Errorf("the record of the renewal: %+v", m)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "p2ptls.lock")); !os.IsNotExist(err) {
		t.Errorf("the lock file is left behind: %v", err)
	}
}

// announcer is a writer that closes seen once what was written contains
// want; it keeps everything for later checks.
type announcer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	once sync.Once
	seen chan struct{}
}

func (a *announcer) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf.Write(p)
	if strings.Contains(a.buf.String(), a.want) {
		a.once.Do(func() { close(a.seen) })
	}
	return len(p), nil
}

// TestSignalEndsRenewalSleep: the random sleep of "cert renew" (from cron,
// up to an hour) ends at once on SIGTERM. It sleeps only when a
// certificate is due: here an ACME mapping that has none yet.
func TestSignalEndsRenewalSleep(t *testing.T) {
	dir := seededState(t)
	if r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "mapping", "add", "--listener", "web", "--host", "due.example.com", "--acme", "--challenge", "http-01"); r.code != 0 {
		t.Fatalf("add an ACME mapping: exit %d: %s", r.code, r.stderr)
	}
	before := snapshot(t, dir)
	cmd := command([]string{"CONFIG_DIR=" + dir}, "cert", "renew")
	stderr := &announcer{want: "sleeping before renewal", seen: make(chan struct{})}
	// Not a terminal: the sleep is on, as from cron.
	cmd.Stdin, cmd.Stderr = strings.NewReader(""), stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case <-stderr.seen:
	case <-time.After(60 * time.Second):
		t.Fatal("cert renew did not start its random sleep")
	}
	sent := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(signalBound):
		t.Fatalf("cert renew still sleeps %v after SIGTERM", signalBound)
	}
	t.Logf("exited %v after SIGTERM", time.Since(sent))
	if code := cmd.ProcessState.ExitCode(); code != 143 {
		t.Errorf("exit %d, want 143", code)
	}
	stderr.mu.Lock()
	out := stderr.buf.String()
	stderr.mu.Unlock()
	if !strings.HasSuffix(out, "p2ptls: error: interrupted by SIGTERM; the state is unchanged\n") {
		t.Errorf("stderr %q does not end with the interrupted line", out)
	}
	assertSameSnapshot(t, before, snapshot(t, dir))
}

// TestRenewWithNothingDueDoesNotSleep: from cron (stdin a pipe, the sleep
// on), a pass with nothing due ends at once, without the random sleep:
// cron and monitoring scripts run it every day over states where nearly
// nothing ever is.
func TestRenewWithNothingDueDoesNotSleep(t *testing.T) {
	dir := seededState(t)
	if r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "mapping", "add", "--listener", "web", "--host", "ss.example.com", "--self-signed"); r.code != 0 {
		t.Fatalf("add a mapping: exit %d: %s", r.code, r.stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "cert", "renew", "--output", "json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "CONFIG_DIR=" + dir}
	var stdout, stderr strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(""), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cert renew: %v (a sleep would have been cut short at 60 s): %s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "sleeping before renewal") {
		t.Errorf("cert renew slept with nothing due: %s", stderr.String())
	}
	if !strings.Contains(stdout.String(), `"renewed": []`) {
		t.Errorf("report %s, want nothing renewed", stdout.String())
	}
}
