// Command hsbench measures the server CPU that one full TLS handshake costs
// in "p2ptls serve" with N mappings on one listener, against a bare
// crypto/tls server with one certificate, following
// /work/shared/notes/benchmarking.md:
//
//	go run ./serve/internal/hsbench [-mappings 1,10000,100000] [-rounds 6] [-round-time 4s] [-clients 8] [-peers haproxy,nginx,caddy] [-store etcd]
//	go run ./serve/internal/hsbench -start-only [-starts 3] [-state-dir DIR] [-mappings 10000,100000]
//
// It builds the real binary, prepares a state directory per mapping count
// (distinct ECDSA P-256 certificates: parsed certificates live on the heap,
// and a large heap is one of the costs to see), runs the servers with one
// worker each, loads them in turn from a Go client and divides each
// server's CPU time (utime+stime from /proc/<pid>/stat, children included)
// by the handshakes it completed. Ratios to the one-certificate bare
// server in the same round are the figures; absolute rates drift too much
// on a shared machine. In the same rounds: the bare server holding the
// same N certificates, the one-certificate server behind net/http (see
// serveBaseline), and the peers users would pick instead, each configured
// from the same certificates (peers.go): HAProxy and nginx when installed,
// Caddy built from the Go module proxy. For each server it also reports
// the time from exec until the last mapping's name is served, its memory
// (VmHWM, VmRSS, PSS) and the handshakes that got a certificate not
// covering their name. With -store etcd it also runs p2ptls serve on an
// etcd store holding the same state, in the same rounds (etcd.go). It
// contacts only 127.0.0.1 (and 127.0.0.2 with -store etcd).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	counts    []int
	rounds    int
	roundTime time.Duration
	clients   int
	peers     []peer
	serveEnv  []string // -serve-env: more of p2ptls serve's environment
	bin       string   // -bin: a p2ptls build to run instead of building one
	etcd      bool     // -store etcd: p2ptls on an etcd store too
}

func main() {
	baseline := flag.String("baseline-server", "", "internal: serve the baseline on `ADDR` (hsbench re-executes itself with it)")
	baselineState := flag.String("baseline-state", "", "internal: with -baseline-server, hold every certificate of this p2ptls state `DIR`")
	baselineHTTP := flag.Bool("baseline-http", false, "internal: with -baseline-server, serve through net/http as p2ptls does")
	etcdServer := flag.String("etcd-server", "", "internal: run an etcd member serving clients on `ADDR` (hsbench re-executes itself with it)")
	etcdDir := flag.String("etcd-dir", "", "internal: with -etcd-server, the member's data `DIR`")
	store := flag.String("store", "dir", "`BACKEND`s p2ptls serve reads its state from: dir, or etcd for both the directory and an etcd store holding the same state (an etcd member on 127.0.0.1, serve on "+etcdHost+"), side by side in the same rounds")
	counts := flag.String("mappings", "1,10000,100000", "mapping counts to measure, comma-separated")
	rounds := flag.Int("rounds", 6, "measured rounds per mapping count (each: baseline, then every other server)")
	roundTime := flag.Duration("round-time", 4*time.Second, "load duration of each server in a round")
	clients := flag.Int("clients", 8, "client goroutines dialing concurrently")
	peers := flag.String("peers", "", "peers to run beside p2ptls, comma-separated `LIST` of haproxy, nginx, caddy, or none (default: those installed, and caddy when cached)")
	caddyVersion := flag.String("caddy-version", "v2.11.9", "Caddy `VERSION` to build from the Go module proxy for -peers caddy")
	cache, _ := os.UserCacheDir()
	peerCache := flag.String("peer-cache", filepath.Join(cache, "p2ptls-hsbench"), "`DIR` where built peers (caddy) are kept between runs")
	startOnlyMode := flag.Bool("start-only", false, "measure only p2ptls serve's start and memory, -starts times per count, without handshake rounds or peers")
	starts := flag.Int("starts", 3, "with -start-only, starts per mapping count")
	stateDir := flag.String("state-dir", "", "with -start-only, keep the generated states in `DIR` and reuse them in later runs")
	bin := flag.String("bin", "", "run this p2ptls `BINARY` instead of building one: two builds compared on the same machine and load")
	serveEnv := flag.String("serve-env", "", "more `VARS` for p2ptls serve's environment, comma-separated NAME=VALUE (GOGC=100,GOMEMLIMIT=60MiB): a pacing tried without a build")
	flag.Parse()

	if *baseline != "" {
		// The baseline keeps the default signal handling: the parent stops it with SIGTERM.
		if err := serveBaseline(context.Background(), *baseline, *baselineState, *baselineHTTP); err != nil {
			fmt.Fprintln(os.Stderr, "hsbench baseline:", err)
			os.Exit(1)
		}
		return
	}
	if *etcdServer != "" {
		if err := serveEtcd(*etcdServer, *etcdDir); err != nil {
			fmt.Fprintln(os.Stderr, "hsbench etcd:", err)
			os.Exit(1)
		}
		return
	}
	o := options{rounds: *rounds, roundTime: *roundTime, clients: *clients, bin: *bin}
	switch *store {
	case "dir":
	case "etcd":
		o.etcd = true
	default:
		fmt.Fprintf(os.Stderr, "hsbench: -store: %q is neither dir nor etcd\n", *store)
		os.Exit(2)
	}
	for _, kv := range strings.Split(*serveEnv, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		if name, _, ok := strings.Cut(kv, "="); !ok || name == "" {
			fmt.Fprintf(os.Stderr, "hsbench: -serve-env: %q is not NAME=VALUE\n", kv)
			os.Exit(2)
		}
		o.serveEnv = append(o.serveEnv, kv)
	}
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 999999 {
			fmt.Fprintf(os.Stderr, "hsbench: -mappings: %q is not a number from 1 to 999999\n", s)
			os.Exit(2)
		}
		o.counts = append(o.counts, n)
	}
	if o.rounds < 1 || o.clients < 1 || o.roundTime <= 0 {
		fmt.Fprintln(os.Stderr, "hsbench: -rounds, -clients and -round-time must be positive")
		os.Exit(2)
	}
	if *startOnlyMode {
		if o.etcd {
			fmt.Fprintln(os.Stderr, "hsbench: -store etcd applies to the handshake rounds, not to -start-only; drop one of them")
			os.Exit(2)
		}
		if *starts < 1 {
			fmt.Fprintln(os.Stderr, "hsbench: -starts must be positive")
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := startOnly(ctx, o, *stateDir, *starts)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "hsbench:", err)
			os.Exit(1)
		}
		return
	}
	if o.rounds < 6 || o.roundTime < 3*time.Second || o.roundTime > 5*time.Second {
		logf("note: the method asks for at least 6 rounds of 3-5 s")
	}

	// Ctrl-C and SIGTERM cancel ctx; run's deferred cleanup then stops the
	// servers and removes the temporary directory.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	o.peers, err = findPeers(ctx, *peers, *caddyVersion, *peerCache)
	if err == nil {
		err = run(ctx, o)
	}
	stop()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "hsbench: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hsbench:", err)
		os.Exit(1)
	}
}

// target is one server in the rounds and what it measured at one count.
type target struct {
	name string // column header
	addr string
	p    *proc
	// holdsN: it holds the N certificates, so a mapped name must get its
	// own; the one-certificate references serve every name the same one.
	holdsN bool
	// lazy: it parses a certificate on its first handshake (p2ptls), so
	// the warm-up gives every mapping one.
	lazy bool

	start time.Duration // from exec until the last mapping's name is served
	// For p2ptls on etcd: the first start's time (no snapshot yet), the
	// memory when the restart served the last name, and the time from
	// then until its CPU went idle.
	firstStart time.Duration
	atStart    memInfo
	settled    time.Duration
	us         []float64 // CPU µs per handshake, per round
	ratios     []float64 // us over the one-certificate baseline's, per round
	cpu, hs    float64   // totals over the rounds, for the pooled ratio
	c          counts
	mem        memInfo
}

func (t *target) add(s sample, baseUS float64) {
	t.us = append(t.us, s.usPerHS)
	t.ratios = append(t.ratios, s.usPerHS/baseUS)
	t.cpu += s.usPerHS * float64(s.ok)
	t.hs += float64(s.ok)
	t.c.add(s.counts)
}

// result is what one mapping count measured: the one-certificate baseline
// first, then every other server.
type result struct {
	n        int
	generate time.Duration
	copied   time.Duration // with -store etcd: the store copy into etcd
	targets  []*target
}

func run(ctx context.Context, o options) error {
	tmp, err := os.MkdirTemp("", "hsbench-")
	if err != nil {
		return err
	}
	defer func() {
		logf("removing %s", tmp)
		os.RemoveAll(tmp)
	}()

	bin, err := p2ptlsBinary(ctx, o, tmp)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// The one-certificate references do not depend on the mapping count.
	base, err := startTarget(ctx, "bare 1 cert", self, []string{"-baseline-server"}, nil, tmp, "baseline", "baseline.example.com")
	if err != nil {
		return err
	}
	defer base.p.stop()
	httpBase, err := startTarget(ctx, "bare net/http 1 cert", self, []string{"-baseline-server"}, []string{"-baseline-http"}, tmp, "baseline-http", "baseline.example.com")
	if err != nil {
		return err
	}
	defer httpBase.p.stop()

	var results []result
	for _, n := range o.counts {
		r, err := measureCount(ctx, o, tmp, bin, self, []*target{base, httpBase}, n)
		if err != nil {
			if len(results) > 0 && ctx.Err() == nil {
				printTables(o, results)
			}
			return fmt.Errorf("%d mappings: %w", n, err)
		}
		results = append(results, r)
	}
	printTables(o, results)
	return nil
}

// startTarget starts bin with args, the address as the last of pre (a
// flag taking it) then post, and waits until it serves name.
func startTarget(ctx context.Context, name, bin string, pre, post []string, tmp, log, serves string) (*target, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := append(append(slices.Clone(pre), addr), post...)
	t := &target{name: name, addr: addr}
	start := time.Now()
	if t.p, err = startProc(bin, args, []string{"GOMAXPROCS=1"}, filepath.Join(tmp, log+".log")); err != nil {
		return nil, err
	}
	if err := t.p.waitServed(ctx, addr, serves, 5*time.Minute); err != nil {
		t.p.stop()
		return nil, err
	}
	t.start = time.Since(start)
	return t, nil
}

// measureCount runs p2ptls serve, the bare server holding the same n
// certificates and every peer, and interleaves them with the references
// for o.rounds rounds.
func measureCount(ctx context.Context, o options, tmp, bin, self string, refs []*target, n int) (result, error) {
	r := result{n: n}
	dir := filepath.Join(tmp, fmt.Sprintf("state-%d", n))
	defer os.RemoveAll(dir) // at 100k, a few hundred MiB per count
	pickAddr := freeAddr
	if o.etcd {
		pickAddr = freePortAddr // the etcd-backed serve binds the same port on etcdHost
	}
	addr, err := pickAddr()
	if err != nil {
		return r, err
	}
	mgmt, err := freeAddr()
	if err != nil {
		return r, err
	}

	logf("%d mappings: generating %d distinct certificates in %s", n, n, dir)
	start := time.Now()
	mix, err := prepareState(ctx, dir, addr, n)
	if err != nil {
		return r, err
	}
	var store *etcdStore
	if o.etcd {
		// Copied before any serve runs on dir: the copy is the generated
		// state, without serve's run/ and memos.
		if store, err = startEtcd(ctx, self, tmp, n); err != nil {
			return r, err
		}
		defer store.p.stop()
		t0 := time.Now()
		if err := store.copyInto(ctx, bin, dir); err != nil {
			return r, err
		}
		r.copied = time.Since(t0)
		logf("%d mappings: p2ptls store copy into %s took %v", n, store.url, r.copied.Round(time.Millisecond))
	}
	cs := certSet{n: n, stateDir: dir, bundleDir: filepath.Join(dir, "bundles")}
	if len(o.peers) > 0 {
		if err := writeBundles(ctx, cs); err != nil {
			return r, fmt.Errorf("certificate bundles for the peers: %w", err)
		}
	}
	r.generate = time.Since(start) - r.copied
	logf("%d mappings: certificates ready in %v", n, r.generate.Round(time.Millisecond))

	// Fresh copies of the references: their figures are per count. The
	// first is the baseline every ratio divides by; the others follow the
	// servers that hold N, in the table's column order.
	var copies []*target
	for _, ref := range refs {
		copies = append(copies, &target{name: ref.name, addr: ref.addr, p: ref.p, start: ref.start})
	}
	r.targets = append(r.targets, copies[0])
	last := warmName(n - 1)

	// One server starts at a time, so each start is timed on a machine
	// that is otherwise idle (of hsbench's work).
	serve := &target{name: "p2ptls", addr: addr, holdsN: true, lazy: true}
	start = time.Now()
	env := append([]string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + mgmt, "GOMAXPROCS=1"}, o.serveEnv...)
	if serve.p, err = startProc(bin, []string{"serve"}, env, filepath.Join(tmp, fmt.Sprintf("serve-%d.log", n))); err != nil {
		return r, err
	}
	defer serve.p.stop()
	if err := serve.p.waitServed(ctx, addr, last, startTimeout(n)); err != nil {
		return r, err
	}
	serve.start = time.Since(start)
	logf("%d mappings: p2ptls serves %s after %v", n, last, serve.start.Round(time.Millisecond))
	r.targets = append(r.targets, serve)
	if store != nil {
		t, err := startOnEtcd(ctx, tmp, bin, store, addr, last, n)
		if err != nil {
			return r, err
		}
		defer t.p.stop()
		r.targets = append(r.targets, t)
	}

	baseN, err := startTarget(ctx, "bare holding N", self, []string{"-baseline-server"}, []string{"-baseline-state", dir}, tmp, fmt.Sprintf("baseline-%d", n), last)
	if err != nil {
		return r, err
	}
	defer baseN.p.stop()
	baseN.holdsN, baseN.lazy = true, false
	logf("%d mappings: bare holding N serves %s after %v", n, last, baseN.start.Round(time.Millisecond))
	r.targets = append(r.targets, baseN)
	r.targets = append(r.targets, copies[1:]...)

	for _, p := range o.peers {
		t := &target{name: p.name + " " + shortVersion(p.version), holdsN: true}
		if t.addr, err = freeAddr(); err != nil {
			return r, err
		}
		start := time.Now()
		if t.p, err = startPeer(p, filepath.Join(tmp, fmt.Sprintf("%s-%d", p.name, n)), t.addr, cs); err != nil {
			return r, err
		}
		defer t.p.stop()
		if err := t.p.waitServed(ctx, t.addr, last, startTimeout(n)); err != nil {
			return r, err
		}
		t.start = time.Since(start)
		// nginx's worker outlives a master killed by Pdeathsig when hsbench
		// is killed with -9: the group id is what to kill then.
		logf("%d mappings: %s serves %s after %v (process group %d)", n, t.name, last, t.start.Round(time.Millisecond), t.p.pid())
		r.targets = append(r.targets, t)
	}

	// Warm-up. p2ptls parses a certificate on its first handshake, so every
	// mapping gets one: afterwards all certificates are on the heap, as in
	// a serve that has run for a while, and the rounds see no first-touch
	// parsing. The others load everything at start. Then one short mixed
	// round for each.
	start = time.Now()
	for _, t := range r.targets {
		if t.lazy {
			if _, err := warmAll(ctx, t.addr, mix, o.clients); err != nil {
				return r, fmt.Errorf("warm-up of %s: %w", t.name, err)
			}
		}
	}
	warmRound := min(o.roundTime, time.Second)
	for _, t := range r.targets {
		if _, err := handshakes(ctx, t.addr, mix, warmRound, o.clients); err != nil {
			return r, fmt.Errorf("warm-up of %s: %w", t.name, err)
		}
	}
	logf("%d mappings: warm-up done in %v", n, time.Since(start).Round(time.Millisecond))

	for i := range o.rounds {
		var baseUS float64
		line := fmt.Sprintf("%d mappings: round %d:", n, i+1)
		for j, t := range r.targets {
			s, err := measure(ctx, t.p.pid(), t.addr, mix, o)
			if err != nil {
				return r, fmt.Errorf("%s: %w (its log: %s)", t.name, err, t.p.logFile)
			}
			if j == 0 {
				baseUS = s.usPerHS
			}
			t.add(s, baseUS)
			line += fmt.Sprintf(" %s %.0f µs/hs (%d hs, ratio %.3f);", t.name, s.usPerHS, s.ok, s.usPerHS/baseUS)
		}
		logf("%s", strings.TrimSuffix(line, ";"))
	}
	for _, t := range r.targets {
		if t.mem, err = treeMem(t.p.pid()); err != nil {
			return r, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return r, nil
}

// shortVersion is a package version without Debian's revision:
// "2.6.12-1+deb12u4" -> "2.6.12".
func shortVersion(v string) string {
	v, _, _ = strings.Cut(v, "-")
	return v
}

func printTables(o options, rs []result) {
	fmt.Printf("\nserver CPU per full TLS 1.3 handshake (ECDSA P-256, X25519), as a ratio to the bare crypto/tls server with one\ncertificate in the same round: median (min-max) of %d rounds of %v, %d clients, one worker per server\n\n",
		o.rounds, o.roundTime, o.clients)
	var cols []string
	for _, r := range rs {
		for _, t := range r.targets[1:] {
			if !slices.Contains(cols, t.name) {
				cols = append(cols, t.name)
			}
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "| N\t| %s\t|\n", strings.Join(cols, "\t| "))
	fmt.Fprintf(w, "|---\t%s|\n", strings.Repeat("|---\t", len(cols)))
	for _, r := range rs {
		row := []string{countName(r.n)}
		for _, c := range cols {
			cell := "-"
			for _, t := range r.targets[1:] {
				if t.name == c {
					cell = fmt.Sprintf("%.2f (%.2f-%.2f)", median(t.ratios), slices.Min(t.ratios), slices.Max(t.ratios))
				}
			}
			row = append(row, cell)
		}
		fmt.Fprintf(w, "| %s\t|\n", strings.Join(row, "\t| "))
	}
	w.Flush()

	fmt.Printf("\nper server: start = from exec until the last mapping's name is served its certificate; memory after the rounds\n\n")
	w = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "N\tserver\tstart\tVmHWM MiB\tVmRSS MiB\tPSS MiB\tµs/hs\tpooled\thandshakes\twrong cert\tunmapped\tfailed\t")
	for _, r := range rs {
		base := r.targets[0]
		for _, t := range r.targets {
			wrong := "-"
			if t.holdsN {
				wrong = strconv.FormatInt(t.c.wrong, 10)
			}
			fmt.Fprintf(w, "%s\t%s\t%v\t%d\t%d\t%d\t%.0f\t%.3f\t%d\t%s\t%d\t%d\t\n",
				countName(r.n), t.name, t.start.Round(10*time.Millisecond), t.mem.hwm/1024, t.mem.rss/1024, t.mem.pss/1024,
				median(t.us), (t.cpu/t.hs)/(base.cpu/base.hs), t.c.ok, wrong, t.c.unmapped, t.c.failed)
		}
	}
	w.Flush()
	printEtcd(rs)
	fmt.Println("\nµs/hs is the median per round; pooled = total CPU over total handshakes of all rounds, over the baseline's (a GC\ncycle over a large heap lands in one round; the median can hide it, this cannot); wrong cert = handshakes for a\nmapped name that got a certificate not covering it (must be 0; the one-certificate references serve one for all);\nunmapped = handshakes for names nobody maps (served a default); VmHWM is the largest process's peak, VmRSS and PSS\nare summed over the server's processes (PSS counts pages nginx's master and worker share once).")
}

// countName writes 10000 as 10k, as the table does.
func countName(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// logf reports progress on stderr; the tables go to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
