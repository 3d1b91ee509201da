package main

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// Bounds of the replica benchmark: every wait ends, and a replica that
// misses one fails the run instead of holding it.
const (
	// propagationTimeout bounds one change's wait for one replica (the
	// goal is 2 s; a replica that takes five times that is broken).
	propagationTimeout = 10 * time.Second
	// propagationPoll is the gap between two handshakes of one poller.
	propagationPoll = 5 * time.Millisecond
	// replicaStartTimeout bounds a replica's start until it serves the
	// state's last mapping.
	replicaStartTimeout = 2 * time.Minute
	// settleIdle is how long the replicas must have used (almost) no CPU
	// to count as settled; settleMax bounds the wait for it.
	settleIdle = 200 * time.Millisecond
	settleMax  = 30 * time.Second
)

// BenchmarkReplicaPropagation measures how long a change made with the
// CLI takes to be served by three serve replicas on one etcd (issue 17:
// every replica within 2 s), at a small state and at 10k mappings:
//
//	go test -run '^$' -bench ReplicaPropagation -benchtime 30x ./cmd/p2ptls/
//
// Each iteration is one change (-benchtime bounds their count or time; 30x
// gives 90 samples), made as an operator makes it, through the
// binary against the etcd store, cycling through mapping add
// --self-signed, cert issue (a new certificate for that host, as a
// renewal) and mapping remove. From the moment the command returns, one
// poller per replica does a real TLS handshake for the changed name every
// 5 ms on that replica's own address (--listen-host 127.0.0.2, .3, .4)
// until the replica serves the change. p50, p99 and max are over every
// replica×change sample; ns/op is the command plus the wait for the
// slowest replica. Between changes the timer stops until the replicas'
// CPU is idle: on this machine the three replicas and etcd share the
// cores that separate machines would have, and a change's background work
// (each replica's snapshot re-validates the state) would otherwise be
// counted in the next change.
func BenchmarkReplicaPropagation(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) { benchPropagation(b, n) })
	}
}

func benchPropagation(b *testing.B, n int) {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := lhPortFree(b, append([]string{"127.0.0.1"}, hosts...)...)
	c := etcdtest.Start(b)
	url := c.URL("p2ptls/bench")

	// The state is made in a directory with mapping import, then moved
	// into etcd with store copy, as an operator moves one in.
	dir := filepath.Join(b.TempDir(), "state")
	dirEnv := []string{"CONFIG_DIR=" + dir}
	benchCLI(b, dirEnv, nil, "listener", "add", "web", "--addr", "127.0.0.1:"+port)
	var lines bytes.Buffer
	for i := range n {
		fmt.Fprintf(&lines, `{"listener":"web","hosts":["m%05d.example.test"],"id":"m%05d","source":"self-signed"}`+"\n", i, i)
	}
	_, took := benchCLI(b, dirEnv, &lines, "mapping", "import", "-")
	b.Logf("mapping import of %d self-signed mappings: %v", n, took.Round(time.Millisecond))
	_, took = benchCLI(b, nil, nil, "store", "copy", "--from", dir, "--to", url, "--allow-missing-management-ca")
	b.Logf("store copy of %d mappings into etcd: %v", n, took.Round(time.Millisecond))

	cliEnv := []string{"P2PTLS_STORE=" + url, "CONFIG_DIR=" + filepath.Join(b.TempDir(), "cli")}
	lastHost := fmt.Sprintf("m%05d.example.test", n-1)
	lastFP := normalFP(b, benchCLI1(b, cliEnv, "cert", "show", fmt.Sprintf("m%05d", n-1)))
	var replicas []*benchReplica
	for _, h := range hosts {
		// One at a time: the first creates the management CA in the store.
		env := []string{"P2PTLS_STORE=" + url, "CONFIG_DIR=" + filepath.Join(b.TempDir(), "local"), "MANAGEMENT_LISTEN=" + freeAddr(b)}
		r := startBenchReplica(b, net.JoinHostPort(h, port), env, "--listen-host", h)
		start := time.Now()
		if _, err := r.await(start, replicaStartTimeout, lastHost, func(leaf *x509.Certificate) bool { return leafFP(leaf) == lastFP }); err != nil {
			b.Fatalf("replica on %s: %v\n%s", h, err, r.output())
		}
		b.Logf("replica on %s serves %s after %v", h, lastHost, time.Since(start).Round(time.Millisecond))
		replicas = append(replicas, r)
	}
	// The first sync of each replica's snapshot copies the whole state.
	b.Logf("replicas settled after %v", settle(b, replicas, 10*settleMax).Round(time.Millisecond))

	var samples, cmds []time.Duration
	byKind := map[string][]time.Duration{}
	for i := 0; b.Loop(); i++ {
		k := i / 3
		id, host := fmt.Sprintf("p%04d", k), fmt.Sprintf("p%04d.example.test", k)
		var (
			args []string
			old  string // the fingerprint served for host before the change
			done func(*x509.Certificate) bool
		)
		switch i % 3 {
		case 0:
			args = []string{"mapping", "add", "--listener", "web", "--host", host, "--self-signed", "--id", id}
		case 1:
			args = []string{"cert", "issue", id}
		case 2:
			args = []string{"mapping", "remove", id}
		}
		if i%3 != 0 {
			b.StopTimer()
			old = normalFP(b, benchCLI1(b, cliEnv, "cert", "show", id))
			b.StartTimer()
			done = func(leaf *x509.Certificate) bool { return leafFP(leaf) != old }
		}
		out, took := benchCLI(b, cliEnv, nil, append(args, "--output", "json")...)
		returned := time.Now()
		cmds = append(cmds, took)
		if i%3 == 0 {
			want := normalFP(b, out)
			done = func(leaf *x509.Certificate) bool { return leafFP(leaf) == want }
		}
		got := make([]*x509.Certificate, len(replicas))
		durs := make([]time.Duration, len(replicas))
		errs := make([]error, len(replicas))
		var wg sync.WaitGroup
		for j, r := range replicas {
			wg.Go(func() {
				durs[j], errs[j] = r.await(returned, propagationTimeout, host, func(leaf *x509.Certificate) bool {
					got[j] = leaf
					return done(leaf)
				})
			})
		}
		wg.Wait()
		b.StopTimer()
		samples = append(samples, durs...)
		byKind[args[0]+" "+args[1]] = append(byKind[args[0]+" "+args[1]], durs...)
		for j, err := range errs {
			if err != nil {
				b.Fatalf("change %d (%s): replica on %s: %v\n%s", i+1, strings.Join(args, " "), hosts[j], err, replicas[j].output())
			}
		}
		// What the replicas serve now is the change, not merely "something
		// else": the new certificate, or after a remove one not for host.
		want := ""
		if i%3 == 1 {
			want = normalFP(b, benchCLI1(b, cliEnv, "cert", "show", id))
		}
		for j, leaf := range got {
			switch {
			case i%3 == 1 && leafFP(leaf) != want:
				b.Fatalf("change %d (cert issue %s): replica on %s serves %s, want the new certificate %s", i+1, id, hosts[j], leafFP(leaf), want)
			case i%3 == 2 && leaf.VerifyHostname(host) == nil:
				b.Fatalf("change %d (mapping remove %s): replica on %s still serves a certificate for %s (%s)", i+1, id, hosts[j], host, leafFP(leaf))
			}
		}
		settle(b, replicas, settleMax)
		b.StartTimer()
	}
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	slices.Sort(cmds)
	for _, kind := range slices.Sorted(maps.Keys(byKind)) {
		ds := byKind[kind]
		slices.Sort(ds)
		b.Logf("%s: %d samples, p50 %v, max %v", kind, len(ds), percentile(ds, 0.5).Round(100*time.Microsecond), ds[len(ds)-1].Round(100*time.Microsecond))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(samples, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(samples, 0.99)), "p99-ms")
	b.ReportMetric(ms(samples[len(samples)-1]), "max-ms")
	b.ReportMetric(ms(percentile(cmds, 0.50)), "cmd-p50-ms")
	b.ReportMetric(float64(len(samples)), "samples")
	if p99 := percentile(samples, 0.99); p99 > 2*time.Second {
		b.Logf("p99 %v is over issue 17's 2 s", p99)
	}
}

// percentile is the nearest-rank percentile of sorted xs.
func percentile(xs []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// benchReplica is one serve on the etcd store, on its own address.
type benchReplica struct {
	addr string
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs strings.Builder
	done chan struct{}
}

func (r *benchReplica) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// startBenchReplica is startServe for a benchmark: serve with env and
// args, until it listens; the benchmark's cleanup stops it with SIGTERM.
func startBenchReplica(tb testing.TB, addr string, env []string, args ...string) *benchReplica {
	tb.Helper()
	r := &benchReplica{addr: addr, cmd: command(env, append([]string{"serve"}, args...)...), done: make(chan struct{})}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	r.cmd.Stdout = io.Discard
	if err := r.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stderr)
		var once sync.Once
		for sc.Scan() {
			r.mu.Lock()
			r.logs.WriteString(sc.Text() + "\n")
			r.mu.Unlock()
			if strings.Contains(sc.Text(), "management listening") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	tb.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(45 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
		if err := r.cmd.Wait(); err != nil {
			tb.Errorf("replica on %s did not exit cleanly on SIGTERM: %v\n%s", addr, err, r.output())
		}
	})
	select {
	case <-ready:
	case <-r.done:
		tb.Fatalf("serve exited before listening:\n%s", r.output())
	case <-time.After(replicaStartTimeout):
		tb.Fatalf("serve did not start listening within %v:\n%s", replicaStartTimeout, r.output())
	}
	return r
}

// await does a handshake for sni every propagationPoll until done accepts
// the served leaf, and returns the time since from; it gives up within
// from+timeout.
func (r *benchReplica) await(from time.Time, timeout time.Duration, sni string, done func(*x509.Certificate) bool) (time.Duration, error) {
	deadline := from.Add(timeout)
	var last error
	for {
		leaf, err := servedLeaf(r.addr, sni, time.Until(deadline))
		if err == nil && done(leaf) {
			return time.Since(from), nil
		}
		if err == nil {
			err = fmt.Errorf("serves %s for %s", leafFP(leaf), sni)
		}
		last = err
		if time.Now().Add(propagationPoll).After(deadline) {
			return 0, fmt.Errorf("not served within %v: last: %v", timeout, last)
		}
		select {
		case <-r.done:
			return 0, errors.New("serve exited")
		case <-time.After(propagationPoll):
		}
	}
}

// servedLeaf is the leaf served on addr for sni, not verified: the
// fallback and self-signed certificates are the point.
func servedLeaf(addr, sni string, timeout time.Duration) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: max(100*time.Millisecond, min(timeout, 2*time.Second))}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func leafFP(leaf *x509.Certificate) string {
	sum := sha256.Sum256(leaf.Raw)
	return hex.EncodeToString(sum[:])
}

// normalFP is the fingerprint_sha256 of a mapping's JSON (mapping add or
// cert show), as leafFP writes it.
func normalFP(tb testing.TB, out string) string {
	tb.Helper()
	var m struct {
		FingerprintSHA256 string `json:"fingerprint_sha256"`
		Certificate       struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		} `json:"certificate"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		tb.Fatalf("fingerprint_sha256 from %q: %v", out, err)
	}
	fp := cmp.Or(m.FingerprintSHA256, m.Certificate.FingerprintSHA256)
	if fp == "" {
		tb.Fatalf("no fingerprint_sha256 in %s", out)
	}
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}

// benchCLI runs the binary with env (and stdin), fails unless it exits
// 0, and returns its stdout and how long it ran.
func benchCLI(tb testing.TB, env []string, stdin io.Reader, args ...string) (string, time.Duration) {
	tb.Helper()
	cmd := command(env, args...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		tb.Fatalf("p2ptls %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), took
}

// benchCLI1 is benchCLI with --output json, for its output only.
func benchCLI1(tb testing.TB, env []string, args ...string) string {
	tb.Helper()
	out, _ := benchCLI(tb, env, nil, append(args, "--output", "json")...)
	return out
}

// settle waits until the replicas have used at most one clock tick of
// CPU in settleIdle, or until limit, and returns how long it waited.
func settle(tb testing.TB, replicas []*benchReplica, limit time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	ticks := func() int64 {
		var sum int64
		for _, r := range replicas {
			t, err := procTicks(r.cmd.Process.Pid)
			if err != nil {
				tb.Fatalf("replica on %s: %v\n%s", r.addr, err, r.output())
			}
			sum += t
		}
		return sum
	}
	before := ticks()
	for time.Since(start) < limit {
		time.Sleep(settleIdle)
		now := ticks()
		if now-before <= 1 {
			break
		}
		before = now
	}
	return time.Since(start)
}

// procTicks is utime+stime of pid, in clock ticks (fields 14 and 15 of
// /proc/PID/stat, counted after the command's closing parenthesis).
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	return u + s, errors.Join(err1, err2)
}
