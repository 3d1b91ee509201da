package issuance

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// BenchmarkIssueAllConcurrentVsSerial issues ACME mappings (HTTP-01, no
// serve: the shared challenge socket) against one pebble
// (PEBBLE_VA_NOSLEEP), first P2PTLS_ACMEBENCH_SERIAL of them one at a
// time (today's behaviour before issue 16: concurrency 1), then
// P2PTLS_ACMEBENCH_N others at the default concurrency, in the same run,
// and reports wall and CPU time per mapping of each and the speed-up.
// Run it once: go test -run '^$' -bench IssueAllConcurrentVsSerial
// -benchtime 1x ./state/issuance/ (defaults: 20 serial, 100 concurrent).
func BenchmarkIssueAllConcurrentVsSerial(b *testing.B) {
	serialN, concN := envInt(b, "P2PTLS_ACMEBENCH_SERIAL", 20), envInt(b, "P2PTLS_ACMEBENCH_N", 100)
	conc := envInt(b, "P2PTLS_ACMEBENCH_CONCURRENCY", 0) // 0: the default
	p := newPebbleState(b)
	serialIDs := p.add(b, "s", state.ChallengeHTTP01, serialN)
	concIDs := p.add(b, "c", state.ChallengeHTTP01, concN)
	run := func(ids []string, n int) (wall, cpu time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
		defer cancel()
		c0, t0 := cpuTime(), time.Now()
		r, err := Run(ctx, p.Dir, ids, time.Now, Options{ACME: quietACME(nil, n)}, nil)
		wall, cpu = time.Since(t0), cpuTime()-c0
		if err != nil || len(r.Issued) != len(ids) {
			b.Fatalf("issued %d of %d: %v %v", len(r.Issued), len(ids), err, r.Errors)
		}
		return wall, cpu
	}
	b.ResetTimer()
	for range b.N {
		sw, sc := run(serialIDs, 1)
		cw, cc := run(concIDs, conc)
		perS, perC := sw/time.Duration(serialN), cw/time.Duration(concN)
		b.Logf("serial: %d mappings in %v (%v each, CPU %v); concurrent (%d at once): %d in %v (%v each, CPU %v); %.1fx faster",
			serialN, sw.Round(time.Millisecond), perS.Round(time.Millisecond), sc.Round(time.Millisecond),
			quietACME(nil, conc).Limit(nil), concN, cw.Round(time.Millisecond), perC.Round(time.Millisecond), cc.Round(time.Millisecond),
			float64(perS)/float64(perC))
		b.ReportMetric(perS.Seconds(), "s/serial-mapping")
		b.ReportMetric(perC.Seconds(), "s/concurrent-mapping")
		b.ReportMetric(float64(perS)/float64(perC), "speedup")
	}
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q is not a count", name, v)
	}
	return n
}

// cpuTime is this process's user+system time (pebble's is not in it).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
