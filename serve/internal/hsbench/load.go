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
// the chain is not verified because only the server's cost counts, but
// matched tells whether the certificate covers serverName.
func handshake(addr, serverName string) (matched bool, err error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
	})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	if cs.DidResume {
		return false, errors.New("the handshake resumed a session; it must be a full handshake")
	}
	return len(cs.PeerCertificates) > 0 && cs.PeerCertificates[0].VerifyHostname(serverName) == nil, nil
}

// counts are the outcomes of handshakes.
type counts struct {
	ok int64
	// wrong: a mapped name got a certificate that does not cover it.
	wrong int64
	// unmapped: handshakes for names no mapping covers (served a default).
	unmapped int64
	failed   int64
}

func (c *counts) add(o counts) {
	c.ok, c.wrong, c.unmapped, c.failed = c.ok+o.ok, c.wrong+o.wrong, c.unmapped+o.unmapped, c.failed+o.failed
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

// handshakes runs clients goroutines dialing addr for d and counts what
// completed.
func handshakes(ctx context.Context, addr string, mix sniMix, d time.Duration, clients int) (counts, error) {
	var ok, wrong, unmapped atomic.Int64
	var bad failures
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for ctx.Err() == nil && time.Now().Before(deadline) {
				name, mapped := mix.pick(r)
				matched, err := handshake(addr, name)
				if err != nil {
					bad.add(err)
					continue
				}
				ok.Add(1)
				switch {
				case !mapped:
					unmapped.Add(1)
				case !matched:
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return counts{}, err
	}
	c := counts{ok: ok.Load(), wrong: wrong.Load(), unmapped: unmapped.Load(), failed: bad.n.Load()}
	return c, bad.check(c.ok)
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
				if _, err := handshake(addr, warmName(i)); err != nil {
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
	counts
	usPerHS float64
}

// measure loads the server process tree of pid, listening on addr, for
// one round and returns its CPU time per completed handshake.
func measure(ctx context.Context, pid int, addr string, mix sniMix, o options) (sample, error) {
	before, err := treeTicks(pid)
	if err != nil {
		return sample{}, err
	}
	c, err := handshakes(ctx, addr, mix, o.roundTime, o.clients)
	if err != nil {
		return sample{}, err
	}
	// Let the server finish the last connections (client Finished, close)
	// so their cost lands in this round.
	time.Sleep(100 * time.Millisecond)
	after, err := treeTicks(pid)
	if err != nil {
		return sample{}, err
	}
	if c.ok == 0 {
		return sample{}, errors.New("no handshake completed")
	}
	return sample{counts: c, usPerHS: float64(after-before) / float64(clkTck) * 1e6 / float64(c.ok)}, nil
}

// tree is pid and its children: nginx's master and worker. The servers
// run in their own process group, so no other process is a child.
func tree(pid int) []int {
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if ppid, err := parentPID(child); err == nil && ppid == pid {
			pids = append(pids, child)
		}
	}
	return pids
}

// statFields are the fields of /proc/<pid>/stat from field 3 on.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	// Field 2, the command, is in parentheses and may contain spaces;
	// field 3 follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}

func parentPID(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[4-3])
}

// treeTicks is the CPU time of pid and its children.
func treeTicks(pid int) (int64, error) {
	var sum int64
	for i, p := range tree(pid) {
		t, err := cpuTicks(p)
		if err != nil && i == 0 {
			return 0, err
		}
		sum += t // a child that just exited counts 0
	}
	return sum, nil
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
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return utime + stime, nil
}

// memInfo is the memory of a server's process tree, in kB: hwm is the
// largest VmHWM (peak resident) of one process, rss the sum of VmRSS, pss
// the sum of Pss (pages shared between nginx's master and worker counted
// once), anon and file the sums of RssAnon and RssFile (VmRSS is both, and
// shared memory): what the process allocated against the pages of its
// binary and of files it maps.
type memInfo struct{ hwm, rss, pss, anon, file int64 }

func treeMem(pid int) (memInfo, error) {
	var m memInfo
	for i, p := range tree(pid) {
		st, err := procKB(fmt.Sprintf("/proc/%d/status", p), "VmHWM:", "VmRSS:")
		if err != nil {
			if i == 0 {
				return memInfo{}, err
			}
			continue
		}
		m.hwm = max(m.hwm, st[0])
		m.rss += st[1]
		// RssAnon and RssFile need Linux 4.5; without them both stay 0.
		if split, err := procKB(fmt.Sprintf("/proc/%d/status", p), "RssAnon:", "RssFile:"); err == nil {
			m.anon += split[0]
			m.file += split[1]
		}
		// smaps_rollup needs Linux 4.14; without it pss stays 0.
		if pss, err := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:"); err == nil {
			m.pss += pss[0]
		}
	}
	return m, nil
}

// clockTicks is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture hsbench runs on.
const clockTicks = 100

// procCPU reads the user and system CPU time a process has used from its
// /proc/PID/stat file.
func procCPU(file string) (time.Duration, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis (state is field 3).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("%s: not a /proc stat file", file)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime: fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// procKB reads the "Key:   123 kB" lines named by keys from a /proc file.
func procKB(file string, keys ...string) ([]int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	vals := make([]int64, len(keys))
	found := 0
	for line := range strings.Lines(string(b)) {
		for i, k := range keys {
			if v, ok := strings.CutPrefix(line, k); ok {
				n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %w", file, k, err)
				}
				vals[i] = n
				found++
			}
		}
	}
	if found != len(keys) {
		return nil, fmt.Errorf("%s lacks one of %s", file, strings.Join(keys, " "))
	}
	return vals, nil
}
