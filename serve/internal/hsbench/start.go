package main

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// The start-only mode (-start-only) measures what serve's start costs
// without the handshake rounds: for each count, -starts times, from exec
// until the last mapping's name is served its certificate, and the memory
// right then and after every mapping served one handshake (all
// certificates parsed, as in a serve that has run a while), against what
// the certificates weigh themselves: their PEM files and their DER. With
// -state-dir the generated states are kept and reused by later runs, so
// that a change can be measured against the same certificates.

// startRun is one start of p2ptls serve.
type startRun struct {
	start     time.Duration
	atStart   memInfo
	afterWarm memInfo
	// serve's CPU time (user+system) until it served the last name, and
	// for the warm-up: what a memory policy costs shows here.
	startCPU, warmCPU time.Duration
	// steadyMin and steadyMax bound VmRSS (kB) over a second pass of
	// handshakes after the warm-up: VmRSS warm is one reading at wherever
	// the collector's cycle happened to be (between the live heap and the
	// heap goal), these are the range it moves in while serving.
	steadyMin, steadyMax int64
}

// steadyHandshakes is the second pass's length: its allocations are many
// times any heap goal, so VmRSS reaches its peak in it.
const steadyHandshakes = 20000

// certBytes is what a state's certificates weigh.
type certBytes struct {
	pem, der int64 // cert.pem + key.pem; the DER inside them
}

func (c certBytes) ratio(kB int64) (pem, der float64) {
	return float64(kB*1024) / float64(c.pem), float64(kB*1024) / float64(c.der)
}

// measureCertBytes sums the certificate and key files of mappings 0..n-1.
func measureCertBytes(dir string, n int) (certBytes, error) {
	var c certBytes
	for i := range n {
		md := filepath.Join(dir, filepath.FromSlash(mappings.MappingDir(mappingID(i))))
		for _, f := range []string{mappings.CertFileName, mappings.KeyFileName} {
			b, err := os.ReadFile(filepath.Join(md, f))
			if err != nil {
				return c, err
			}
			c.pem += int64(len(b))
			for {
				var blk *pem.Block
				if blk, b = pem.Decode(b); blk == nil {
					break
				}
				c.der += int64(len(blk.Bytes))
			}
		}
	}
	if c.der == 0 {
		return c, errors.New("the state holds no certificate")
	}
	return c, nil
}

// reusableState returns the state of n mappings under keep, generated on
// first use and listening on addr: a kept state's listener address is
// rewritten, since the port it had may be taken now.
func reusableState(ctx context.Context, keep, addr string, n int) (dir string, err error) {
	dir = filepath.Join(keep, fmt.Sprintf("state-%d", n))
	addrFile := filepath.Join(dir, "hsbench.addr")
	old, err := os.ReadFile(addrFile)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.RemoveAll(dir); err != nil { // a generation cut short
			return "", err
		}
		logf("%d mappings: generating %d distinct certificates in %s (kept for later runs)", n, n, dir)
		start := time.Now()
		if _, err := prepareState(ctx, dir, addr, n); err != nil {
			return "", err
		}
		logf("%d mappings: certificates ready in %v", n, time.Since(start).Round(time.Millisecond))
		return dir, os.WriteFile(addrFile, []byte(addr), 0o600)
	}
	if err != nil {
		return "", err
	}
	cfgFile := filepath.Join(dir, "p2ptls.toml")
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		return "", err
	}
	from := fmt.Sprintf("addr = '%s'", old)
	if strings.Count(string(b), from) != 1 {
		return "", fmt.Errorf("%s: the listener address %s is not where hsbench wrote it; remove %s to generate the state again", cfgFile, old, dir)
	}
	b = []byte(strings.Replace(string(b), from, fmt.Sprintf("addr = '%s'", addr), 1))
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		return "", err
	}
	logf("%d mappings: reusing %s", n, dir)
	return dir, os.WriteFile(addrFile, []byte(addr), 0o600)
}

// startOnly runs the start-only mode for every count and prints its table.
func startOnly(ctx context.Context, o options, keep string, starts int) error {
	tmp, err := os.MkdirTemp("", "hsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := p2ptlsBinary(ctx, o, tmp)
	if err != nil {
		return err
	}
	type row struct {
		n     int
		bytes certBytes
		runs  []startRun
		warm  startRun // the last start, the one warmed up
	}
	var rows []row
	for _, n := range o.counts {
		r := row{n: n}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		var dir string
		if keep != "" {
			dir, err = reusableState(ctx, keep, addr, n)
		} else {
			dir = filepath.Join(tmp, fmt.Sprintf("state-%d", n))
			logf("%d mappings: generating %d distinct certificates in %s", n, n, dir)
			_, err = prepareState(ctx, dir, addr, n)
		}
		if err != nil {
			return fmt.Errorf("%d mappings: %w", n, err)
		}
		if r.bytes, err = measureCertBytes(dir, n); err != nil {
			return fmt.Errorf("%d mappings: %w", n, err)
		}
		for i := range starts {
			// Warming 100k mappings takes minutes on one core: the last
			// start only.
			run, err := startOnce(ctx, o, tmp, bin, dir, addr, n, i, i == starts-1)
			if err != nil {
				return fmt.Errorf("%d mappings: start %d: %w", n, i+1, err)
			}
			r.runs = append(r.runs, run)
		}
		if keep == "" {
			os.RemoveAll(dir)
		}
		r.warm = r.runs[len(r.runs)-1] // before the runs are sorted
		rows = append(rows, r)
	}

	fmt.Printf("\np2ptls serve start (from exec until the last mapping's name is served its certificate) and memory, %d starts\nper count: median (min-max) of the starts; memory at start of the median start, warm of the last\n\n", starts)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "N\tstart\tCPU start\tCPU warm-up\tcert PEM MiB\tcert DER MiB\tVmHWM at start\tVmRSS at start\tVmHWM warm\tVmRSS warm\tRSS warm / PEM\tRSS warm / DER\t")
	for _, r := range rows {
		warm := r.warm.afterWarm
		slices.SortFunc(r.runs, func(a, b startRun) int { return int(a.start - b.start) })
		m := r.runs[len(r.runs)/2]
		pemR, derR := r.bytes.ratio(warm.rss)
		fmt.Fprintf(w, "%s\t%v (%v-%v)\t%v\t%v\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t\n", countName(r.n),
			m.start.Round(10*time.Millisecond), r.runs[0].start.Round(10*time.Millisecond), r.runs[len(r.runs)-1].start.Round(10*time.Millisecond),
			m.startCPU.Round(10*time.Millisecond), r.warm.warmCPU.Round(10*time.Millisecond),
			float64(r.bytes.pem)/(1<<20), float64(r.bytes.der)/(1<<20),
			m.atStart.hwm/1024, m.atStart.rss/1024, warm.hwm/1024, warm.rss/1024, pemR, derR)
	}
	w.Flush()
	fmt.Println("\nmemory in MiB; warm = after one handshake for every mapping (every certificate parsed and kept);\nCPU = serve's user+system time: until the last name was served (median start), during the warm-up (last start)")
	fmt.Println()
	for _, r := range rows {
		fmt.Println(rssGoalLine(r.n, r.warm.afterWarm.rss, r.bytes))
		if r.warm.steadyMax > 0 {
			lo, _ := r.bytes.ratio(r.warm.steadyMin)
			hi, _ := r.bytes.ratio(r.warm.steadyMax)
			fmt.Printf("%s mappings: over a second pass of handshakes VmRSS is %d-%d MiB, %.2f-%.2f x certificate PEM\n",
				countName(r.n), r.warm.steadyMin/1024, r.warm.steadyMax/1024, lo, hi)
		}
	}
	return nil
}

// rssGoal is issue 14's memory goal: serve's RSS, warm, at most this many
// times the certificates' own bytes (their PEM files).
const rssGoal = 1.2

// rssGoalLine states the memory goal's verdict for one count, so that a
// run checks it rather than a reader's arithmetic.
func rssGoalLine(n int, rssKB int64, c certBytes) string {
	if rssKB <= 0 {
		return fmt.Sprintf("%s mappings: RSS warm not measured", countName(n))
	}
	ratio, _ := c.ratio(rssKB)
	verdict := "met"
	if ratio > rssGoal {
		verdict = "NOT met"
	}
	return fmt.Sprintf("%s mappings: RSS warm / certificate PEM = %.2f (goal <= %.2f: %s; %d MiB against %.1f MiB)",
		countName(n), ratio, rssGoal, verdict, rssKB/1024, rssGoal*float64(c.pem)/(1<<20))
}

// startOnce starts serve on dir once, times it and reads its memory.
func startOnce(ctx context.Context, o options, tmp, bin, dir, addr string, n, i int, warm bool) (startRun, error) {
	var r startRun
	mgmt, err := freeAddr()
	if err != nil {
		return r, err
	}
	env := append([]string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + mgmt, "GOMAXPROCS=1"}, o.serveEnv...)
	start := time.Now()
	p, err := startProc(bin, []string{"serve"}, env, filepath.Join(tmp, fmt.Sprintf("serve-%d-%d.log", n, i)))
	if err != nil {
		return r, err
	}
	defer p.stop()
	if err := p.waitServed(ctx, addr, warmName(n-1), startTimeout(n)); err != nil {
		return r, err
	}
	r.start = time.Since(start)
	if r.atStart, err = treeMem(p.pid()); err != nil {
		return r, err
	}
	stat := fmt.Sprintf("/proc/%d/stat", p.pid())
	if r.startCPU, err = procCPU(stat); err != nil {
		return r, err
	}
	logf("%d mappings: start %d: served %s after %v; VmRSS %d MiB (VmHWM %d MiB)", n, i+1, warmName(n-1),
		r.start.Round(time.Millisecond), r.atStart.rss/1024, r.atStart.hwm/1024)
	if !warm {
		return r, nil
	}
	if _, err := warmAll(ctx, addr, sniMix{n: n}, o.clients); err != nil {
		return r, fmt.Errorf("warm-up: %w", err)
	}
	if r.afterWarm, err = treeMem(p.pid()); err != nil {
		return r, err
	}
	cpu, err := procCPU(stat)
	if err != nil {
		return r, err
	}
	r.warmCPU = cpu - r.startCPU
	logf("%d mappings: every mapping served: VmRSS %d MiB (anonymous %d MiB, file-backed %d MiB; VmHWM %d MiB)", n,
		r.afterWarm.rss/1024, r.afterWarm.anon/1024, r.afterWarm.file/1024, r.afterWarm.hwm/1024)
	if r.steadyMin, r.steadyMax, err = steadyRSS(ctx, p.pid(), addr, min(n, steadyHandshakes), o.clients); err != nil {
		return r, fmt.Errorf("second pass: %w", err)
	}
	logf("%d mappings: over a second pass of %d handshakes: VmRSS %d-%d MiB", n, min(n, steadyHandshakes), r.steadyMin/1024, r.steadyMax/1024)
	return r, nil
}

// steadyRSS runs k more handshakes (names already served) and returns the
// least and the most VmRSS of pid read meanwhile, every 50 ms.
func steadyRSS(ctx context.Context, pid int, addr string, k, clients int) (lo, hi int64, err error) {
	done := make(chan struct{})
	var samples []int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if m, err := treeMem(pid); err == nil {
				samples = append(samples, m.rss)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	// Bounded in time as well as count: a server that stalls fails the
	// run instead of hanging it.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, err = warmAll(ctx, addr, sniMix{n: k}, clients)
	close(done)
	<-sampled
	if err != nil {
		return 0, 0, err
	}
	if len(samples) == 0 {
		return 0, 0, fmt.Errorf("no VmRSS of process %d could be read", pid)
	}
	return slices.Min(samples), slices.Max(samples), nil
}
