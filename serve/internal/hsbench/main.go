// Command hsbench measures the server CPU that one full TLS handshake costs
// in "p2ptls serve" with N mappings on one listener, against a bare
// crypto/tls server with one certificate, following
// /work/shared/notes/benchmarking.md:
//
//	go run ./serve/internal/hsbench [-mappings 1,10000,100000] [-rounds 6] [-round-time 4s] [-clients 8]
//
// It builds the real binary, prepares a state directory per mapping count
// (distinct ECDSA P-256 certificates: parsed certificates live on the heap,
// and a large heap is one of the costs to see), runs the servers with
// GOMAXPROCS=1, loads them alternately from a Go client and divides each
// server's CPU time (utime+stime from /proc/<pid>/stat) by the handshakes
// it completed. The ratio p2ptls/baseline is the figure; absolute rates
// drift too much on a shared machine. Two more references run in the same
// rounds: the bare server holding the same N certificates, and the
// one-certificate server behind net/http (see serveBaseline). It contacts
// only 127.0.0.1.
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
}

func main() {
	baseline := flag.String("baseline-server", "", "internal: serve the baseline on `ADDR` (hsbench re-executes itself with it)")
	baselineState := flag.String("baseline-state", "", "internal: with -baseline-server, hold every certificate of this p2ptls state `DIR`")
	baselineHTTP := flag.Bool("baseline-http", false, "internal: with -baseline-server, serve through net/http as p2ptls does")
	counts := flag.String("mappings", "1,10000,100000", "mapping counts to measure, comma-separated")
	rounds := flag.Int("rounds", 6, "measured rounds per mapping count (each: baseline, then p2ptls)")
	roundTime := flag.Duration("round-time", 4*time.Second, "load duration of each server in a round")
	clients := flag.Int("clients", 8, "client goroutines dialing concurrently")
	flag.Parse()

	if *baseline != "" {
		// The baseline keeps the default signal handling: the parent stops it with SIGTERM.
		if err := serveBaseline(context.Background(), *baseline, *baselineState, *baselineHTTP); err != nil {
			fmt.Fprintln(os.Stderr, "hsbench baseline:", err)
			os.Exit(1)
		}
		return
	}
	o := options{rounds: *rounds, roundTime: *roundTime, clients: *clients}
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "hsbench: -mappings: %q is not a positive number\n", s)
			os.Exit(2)
		}
		o.counts = append(o.counts, n)
	}
	if o.rounds < 1 || o.clients < 1 || o.roundTime <= 0 {
		fmt.Fprintln(os.Stderr, "hsbench: -rounds, -clients and -round-time must be positive")
		os.Exit(2)
	}
	if o.rounds < 6 || o.roundTime < 3*time.Second || o.roundTime > 5*time.Second {
		logf("note: the method asks for at least 6 rounds of 3-5 s")
	}

	// Ctrl-C and SIGTERM cancel ctx; run's deferred cleanup then stops the
	// servers and removes the temporary directory.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
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

// result is what one mapping count measured.
type result struct {
	n                       int
	generate, ready, warm   time.Duration
	ratios, baseUS, serveUS []float64
	// ratiosN compare p2ptls with the bare server holding the same N
	// certificates, ratiosH with the one-certificate server behind net/http.
	ratiosN, baseNUS []float64
	ratiosH, baseHUS []float64
	serveRate        float64 // p2ptls handshakes per second, median
	// pooled is total CPU over total handshakes of all rounds, p2ptls over
	// baseline. A GC cycle over a large heap lands in one round and makes
	// the per-round ratios lumpy; the median can hide it, this cannot.
	pooled                  float64
	rssAfterStart, rssAfter int64 // kB
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

	bin := filepath.Join(tmp, "p2ptls")
	if err := buildP2ptls(ctx, bin); err != nil {
		return err
	}

	baseAddr, err := freeAddr()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	base, err := startProc(self, []string{"-baseline-server", baseAddr}, []string{"GOMAXPROCS=1"}, filepath.Join(tmp, "baseline.log"))
	if err != nil {
		return err
	}
	defer base.stop()
	if err := base.waitAccept(ctx, baseAddr, 30*time.Second); err != nil {
		return err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	httpBase, err := startProc(self, []string{"-baseline-server", httpAddr, "-baseline-http"}, []string{"GOMAXPROCS=1"}, filepath.Join(tmp, "baseline-http.log"))
	if err != nil {
		return err
	}
	defer httpBase.stop()
	if err := httpBase.waitAccept(ctx, httpAddr, 30*time.Second); err != nil {
		return err
	}
	refs := references{base: base, baseAddr: baseAddr, http: httpBase, httpAddr: httpAddr}

	var results []result
	for _, n := range o.counts {
		r, err := measureCount(ctx, o, tmp, bin, self, refs, n)
		if err != nil {
			if len(results) > 0 && ctx.Err() == nil {
				printTable(o, results)
			}
			return fmt.Errorf("%d mappings: %w", n, err)
		}
		results = append(results, r)
	}
	printTable(o, results)
	return nil
}

// references are the servers that do not depend on the mapping count.
type references struct {
	base, http         *proc
	baseAddr, httpAddr string
}

// measureCount runs serve with n mappings and interleaves it with the
// baselines for o.rounds rounds.
func measureCount(ctx context.Context, o options, tmp, bin, self string, refs references, n int) (result, error) {
	base, baseAddr := refs.base, refs.baseAddr
	r := result{n: n}
	dir := filepath.Join(tmp, fmt.Sprintf("state-%d", n))
	addr, err := freeAddr()
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
	r.generate = time.Since(start)
	logf("%d mappings: state ready in %v", n, r.generate.Round(time.Millisecond))

	start = time.Now()
	env := []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + mgmt, "GOMAXPROCS=1"}
	serve, err := startProc(bin, []string{"serve"}, env, filepath.Join(tmp, fmt.Sprintf("serve-%d.log", n)))
	if err != nil {
		return r, err
	}
	defer serve.stop()
	if err := serve.waitAccept(ctx, addr, 5*time.Minute); err != nil {
		return r, err
	}
	r.ready = time.Since(start)
	r.rssAfterStart, _ = rssKB(serve.pid())
	baseNAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	baseNProc, err := startProc(self, []string{"-baseline-server", baseNAddr, "-baseline-state", dir}, []string{"GOMAXPROCS=1"}, filepath.Join(tmp, fmt.Sprintf("baseline-%d.log", n)))
	if err != nil {
		return r, err
	}
	defer baseNProc.stop()
	if err := baseNProc.waitAccept(ctx, baseNAddr, 5*time.Minute); err != nil {
		return r, err
	}
	logf("%d mappings: serve accepts after %v (RSS %d MiB)", n, r.ready.Round(time.Millisecond), r.rssAfterStart/1024)

	// Warm-up. Serve parses a certificate on its first handshake, so every
	// mapping gets one handshake: afterwards all certificates are on the
	// heap, as in a serve that has run for a while, and the measured rounds
	// see no first-touch parsing. Then one short mixed round for each.
	start = time.Now()
	if _, err := warmAll(ctx, addr, mix, o.clients); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	warmRound := min(o.roundTime, time.Second)
	if _, err := warmAll(ctx, baseNAddr, mix, o.clients); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	for _, a := range []string{baseAddr, refs.httpAddr, baseNAddr, addr} {
		if _, err := handshakes(ctx, a, mix, warmRound, o.clients); err != nil {
			return r, fmt.Errorf("warm-up: %w", err)
		}
	}
	r.warm = time.Since(start)
	logf("%d mappings: warm-up done in %v", n, r.warm.Round(time.Millisecond))

	var rates []float64
	var baseCPU, serveCPU, baseN, serveN float64
	for i := range o.rounds {
		b, err := measure(ctx, base.pid(), baseAddr, mix, o)
		if err != nil {
			return r, fmt.Errorf("baseline: %w", err)
		}
		bn, err := measure(ctx, baseNProc.pid(), baseNAddr, mix, o)
		if err != nil {
			return r, fmt.Errorf("baseline with %d certificates: %w", n, err)
		}
		bh, err := measure(ctx, refs.http.pid(), refs.httpAddr, mix, o)
		if err != nil {
			return r, fmt.Errorf("baseline behind net/http: %w", err)
		}
		s, err := measure(ctx, serve.pid(), addr, mix, o)
		if err != nil {
			return r, fmt.Errorf("p2ptls serve: %w (its log: %s)", err, serve.logFile)
		}
		r.baseNUS = append(r.baseNUS, bn.usPerHS)
		r.ratiosN = append(r.ratiosN, s.usPerHS/bn.usPerHS)
		r.baseHUS = append(r.baseHUS, bh.usPerHS)
		r.ratiosH = append(r.ratiosH, s.usPerHS/bh.usPerHS)
		r.baseUS = append(r.baseUS, b.usPerHS)
		r.serveUS = append(r.serveUS, s.usPerHS)
		r.ratios = append(r.ratios, s.usPerHS/b.usPerHS)
		baseCPU, baseN = baseCPU+b.usPerHS*float64(b.n), baseN+float64(b.n)
		serveCPU, serveN = serveCPU+s.usPerHS*float64(s.n), serveN+float64(s.n)
		rates = append(rates, float64(s.n)/o.roundTime.Seconds())
		logf("%d mappings: round %d: baseline %.0f µs/hs (%d hs), baseline-N %.0f µs/hs, baseline-http %.0f µs/hs, p2ptls %.0f µs/hs (%d hs), ratio %.3f, ratio-N %.3f, ratio-H %.3f",
			n, i+1, b.usPerHS, b.n, bn.usPerHS, bh.usPerHS, s.usPerHS, s.n, s.usPerHS/b.usPerHS, s.usPerHS/bn.usPerHS, s.usPerHS/bh.usPerHS)
	}
	r.serveRate = median(rates)
	r.pooled = (serveCPU / serveN) / (baseCPU / baseN)
	if r.rssAfter, err = rssKB(serve.pid()); err != nil {
		return r, err
	}
	return r, nil
}

func printTable(o options, rs []result) {
	fmt.Printf("\nserver CPU per full TLS 1.3 handshake (ECDSA P-256, X25519), %d rounds of %v, %d clients, GOMAXPROCS=1 servers\n\n",
		o.rounds, o.roundTime, o.clients)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "mappings\tratio median\tmin\tmax\tpooled\tratio-N median\tmin\tmax\tratio-H median\tmin\tmax\tbaseline µs/hs\tbaseline-N µs/hs\tbaseline-http µs/hs\tp2ptls µs/hs\tp2ptls hs/s\tp2ptls RSS MiB\tstate built\tserve ready\twarm-up\t")
	for _, r := range rs {
		fmt.Fprintf(w, "%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%v\t%v\t%v\t\n",
			r.n, median(r.ratios), slices.Min(r.ratios), slices.Max(r.ratios), r.pooled,
			median(r.ratiosN), slices.Min(r.ratiosN), slices.Max(r.ratiosN),
			median(r.ratiosH), slices.Min(r.ratiosH), slices.Max(r.ratiosH),
			median(r.baseUS), median(r.baseNUS), median(r.baseHUS), median(r.serveUS), r.serveRate, r.rssAfter/1024,
			r.generate.Round(100*time.Millisecond), r.ready.Round(10*time.Millisecond), r.warm.Round(100*time.Millisecond))
	}
	w.Flush()
	fmt.Println("\nratio = p2ptls/baseline (bare crypto/tls, one certificate) per round; pooled = the same over all rounds' CPU and\nhandshakes; ratio-N = p2ptls/baseline-N (bare crypto/tls holding the same N certificates); ratio-H =\np2ptls/baseline-http (the one-certificate server behind net/http, as p2ptls serves); µs/hs and hs/s are medians;\nRSS of p2ptls serve after the rounds.")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// logf reports progress on stderr; the table goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}
