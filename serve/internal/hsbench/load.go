package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// handshake does one full TLS 1.3 handshake with addr for serverName and
// closes. A fresh tls.Config without a session cache means no resumption;
// X25519 is pinned because Go's default hybrid ML-KEM exchange costs more;
// the certificate is not verified because only the server's cost counts.
func handshake(addr, serverName string) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if conn.ConnectionState().DidResume {
		return errors.New("the handshake resumed a session; it must be a full handshake")
	}
	return nil
}

// failures tolerates a few failed handshakes (a busy loopback can refuse a
// connection now and then) but not a server that fails many.
type failures struct {
	n     atomic.Int64
	first atomic.Pointer[error]
}

func (f *failures) add(err error) {
	f.n.Add(1)
	f.first.CompareAndSwap(nil, &err)
}

func (f *failures) check(ok int64) error {
	if bad := f.n.Load(); bad > 0 && bad*100 > ok {
		return fmt.Errorf("%d of %d handshakes failed, first: %w", bad, bad+ok, *f.first.Load())
	}
	return nil
}

// handshakes runs clients goroutines dialing addr for d and returns how
// many handshakes completed.
func handshakes(ctx context.Context, addr string, mix sniMix, d time.Duration, clients int) (int64, error) {
	var ok atomic.Int64
	var bad failures
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if err := handshake(addr, mix.pick(r)); err != nil {
					bad.add(err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return ok.Load(), bad.check(ok.Load())
}

// warmAll does one handshake per mapping, with names spread over clients.
func warmAll(ctx context.Context, addr string, mix sniMix, clients int) (int64, error) {
	var next, ok atomic.Int64
	var bad failures
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= mix.n {
					return
				}
				if err := handshake(addr, warmName(i)); err != nil {
					bad.add(err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return ok.Load(), bad.check(ok.Load())
}

type sample struct {
	n       int64
	usPerHS float64
}

// measure loads the server pid listening on addr for one round and
// returns its CPU time per completed handshake.
func measure(ctx context.Context, pid int, addr string, mix sniMix, o options) (sample, error) {
	before, err := cpuTicks(pid)
	if err != nil {
		return sample{}, err
	}
	n, err := handshakes(ctx, addr, mix, o.roundTime, o.clients)
	if err != nil {
		return sample{}, err
	}
	// Let the server finish the last connections (client Finished, close)
	// so their cost lands in this round.
	time.Sleep(100 * time.Millisecond)
	after, err := cpuTicks(pid)
	if err != nil {
		return sample{}, err
	}
	if n == 0 {
		return sample{}, errors.New("no handshake completed")
	}
	return sample{n: n, usPerHS: float64(after-before) / float64(clkTck) * 1e6 / float64(n)}, nil
}

// clkTck is the unit of the times in /proc/<pid>/stat.
var clkTck = func() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && v > 0 {
			return v
		}
	}
	return 100 // what Linux reports on every common architecture
}()

// cpuTicks is utime+stime of pid (fields 14 and 15 of /proc/<pid>/stat), in
// clock ticks: user and kernel time, so socket work counts too.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Field 2, the command, is in parentheses and may contain spaces;
	// field 3 follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return utime + stime, nil
}

// rssKB is VmRSS of pid in kB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}
