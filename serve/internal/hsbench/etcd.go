package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// With -store etcd, hsbench also runs p2ptls serve on an etcd store that
// holds the same state as the directory, beside the directory's serve in
// the same rounds: a single etcd member, its own process (hsbench
// re-executed with -etcd-server, so that its heap and CPU are neither
// hsbench's client's nor serve's), data on TMPDIR, on 127.0.0.1 free
// ports, one per mapping count. The state gets into it as an operator's
// would, with "p2ptls store copy"; serve runs with --store and
// --listen-host etcdHost, so that it binds the listener's port on an
// address of its own while the directory's serve holds 127.0.0.1.

// etcdHost is the address the etcd-backed serve is rebound onto.
const etcdHost = "127.0.0.2"

// etcdReady is the line the etcd child prints once it serves clients.
const etcdReady = "hsbench etcd ready"

// serveEtcd runs one etcd member with its data in dir, clients on addr,
// until SIGTERM or SIGINT.
func serveEtcd(addr, dir string) error {
	peer, err := freeAddr()
	if err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = "hsbench"
	cfg.Dir = dir
	client := url.URL{Scheme: "http", Host: addr}
	peerURL := url.URL{Scheme: "http", Host: peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
	cfg.InitialCluster = cfg.Name + "=" + peerURL.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-time.After(time.Minute):
		return fmt.Errorf("etcd not ready within a minute")
	}
	fmt.Println(etcdReady)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	}
}

// etcdStore is a running etcd child and the store URL of one state in it.
type etcdStore struct {
	p   *proc
	url string
}

// startEtcd re-executes hsbench as an etcd member with its data under
// tmp and waits until it serves clients.
func startEtcd(ctx context.Context, self, tmp string, n int) (*etcdStore, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmp, fmt.Sprintf("etcd-%d", n))
	p, err := startProc(self, []string{"-etcd-server", addr, "-etcd-dir", dir}, nil, filepath.Join(tmp, fmt.Sprintf("etcd-%d.log", n)))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if b, _ := os.ReadFile(p.logFile); strings.Contains(string(b), etcdReady) {
			return &etcdStore{p: p, url: fmt.Sprintf("etcd://%s/hsbench", addr)}, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("etcd on %s not ready within a minute:\n%s", addr, tail(p.logFile))
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("etcd exited (%v):\n%s", p.waitErr, tail(p.logFile))
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// copyInto copies the state in dir into the store with the binary, as
// "p2ptls store copy" does it for an operator (the generated state has no
// management CA: serve makes one in the store).
func (s *etcdStore) copyInto(ctx context.Context, bin, dir string) error {
	cmd := exec.CommandContext(ctx, bin, "store", "copy", "--from", dir, "--to", s.url, "--allow-missing-management-ca", "--quiet")
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("p2ptls store copy --from %s --to %s: %w: %s", dir, s.url, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freePortAddr returns 127.0.0.1:PORT with a port that was free just now
// on 127.0.0.1 and on etcdHost, so that both serves bind it.
func freePortAddr() (string, error) {
	for range 50 {
		addr, err := freeAddr()
		if err != nil {
			return "", err
		}
		_, port, _ := net.SplitHostPort(addr)
		ln, err := net.Listen("tcp", net.JoinHostPort(etcdHost, port))
		if err == nil {
			ln.Close()
			return addr, nil
		}
	}
	return "", fmt.Errorf("no port free on both 127.0.0.1 and %s in 50 tries", etcdHost)
}

// settleAfterStart waits until the process pid has used at most one clock
// tick of CPU over a second, or until limit, and returns how long it
// waited: what serve on etcd still does once it serves the last name
// (the first writes of its status and snapshot) must not land in the
// next start timed or in a round.
func settleAfterStart(ctx context.Context, pid int, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	before, err := treeTicks(pid)
	if err != nil {
		return 0, err
	}
	for time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
		now, err := treeTicks(pid)
		if err != nil {
			return 0, err
		}
		if now-before <= 1 {
			return time.Since(start), nil
		}
		before = now
	}
	return 0, fmt.Errorf("still busy after %v", limit)
}

// etcdTarget is the name of the etcd-backed serve in the tables.
const etcdTarget = "p2ptls etcd"

// startOnEtcd starts p2ptls serve on the store, rebound onto etcdHost
// with the port of addr (the state's listener), twice: a first start, on
// an empty CONFIG_DIR, makes the replica's local snapshot of the store
// before it serves; it is timed until it serves last, waited for until it
// is idle and stopped. The second start, on that snapshot, is how a
// replica restarts, and is the target of the rounds.
func startOnEtcd(ctx context.Context, tmp, bin string, store *etcdStore, addr, last string, n int) (*target, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	mgmt, err := freeAddr()
	if err != nil {
		return nil, err
	}
	t := &target{name: etcdTarget, addr: net.JoinHostPort(etcdHost, port), holdsN: true, lazy: true}
	// Its own CONFIG_DIR: with --store it holds only this replica's
	// snapshot of the store.
	env := []string{"P2PTLS_STORE=" + store.url, "CONFIG_DIR=" + filepath.Join(tmp, fmt.Sprintf("etcd-local-%d", n)), "MANAGEMENT_LISTEN=" + mgmt, "GOMAXPROCS=1"}
	for i, what := range []string{"first start", "restart"} {
		start := time.Now()
		if t.p, err = startProc(bin, []string{"serve", "--listen-host", etcdHost}, env, filepath.Join(tmp, fmt.Sprintf("serve-etcd-%d-%d.log", n, i))); err != nil {
			return nil, err
		}
		if err := t.p.waitServed(ctx, t.addr, last, startTimeout(n)); err != nil {
			t.p.stop()
			return nil, err
		}
		t.start = time.Since(start)
		if t.atStart, err = treeMem(t.p.pid()); err != nil {
			t.p.stop()
			return nil, err
		}
		logf("%d mappings: %s (%s) serves %s after %v (VmRSS %d MiB)", n, t.name, what, last, t.start.Round(time.Millisecond), t.atStart.rss/1024)
		if t.settled, err = settleAfterStart(ctx, t.p.pid(), startTimeout(n)); err != nil {
			t.p.stop()
			return nil, fmt.Errorf("%s after its %s: %w (its log: %s)", t.name, what, err, t.p.logFile)
		}
		logf("%d mappings: %s (%s) idle %v after serving", n, t.name, what, t.settled.Round(time.Millisecond))
		if i == 0 {
			t.p.stop()
			if t.p.waitErr != nil {
				return nil, fmt.Errorf("%s did not stop cleanly after its first start: %w:\n%s", t.name, t.p.waitErr, tail(t.p.logFile))
			}
			t.firstStart = t.start
		}
	}
	return t, nil
}

// printEtcd compares p2ptls on etcd with p2ptls on the directory, round
// by round, when the results hold both.
func printEtcd(rs []result) {
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := false
	for _, r := range rs {
		var dir, etcd *target
		for _, t := range r.targets {
			switch t.name {
			case "p2ptls":
				dir = t
			case etcdTarget:
				etcd = t
			}
		}
		if dir == nil || etcd == nil || len(dir.us) != len(etcd.us) || len(etcd.us) == 0 {
			continue
		}
		if !header {
			fmt.Printf("\np2ptls serve on etcd against p2ptls serve on the directory, the same state and rounds\n\n")
			fmt.Fprintln(w, "N\tstore copy\tfirst start etcd\tstart etcd\tstart dir\tidle after\tVmRSS at start\tVmRSS etcd\tVmRSS dir\tetcd/dir CPU per hs\tpooled\t")
			header = true
		}
		per := make([]float64, len(etcd.us))
		for i := range per {
			per[i] = etcd.us[i] / dir.us[i]
		}
		fmt.Fprintf(w, "%s\t%v\t%v\t%v\t%v\t%v\t%d\t%d\t%d\t%.2f (%.2f-%.2f)\t%.3f\t\n", countName(r.n),
			r.copied.Round(10*time.Millisecond), etcd.firstStart.Round(10*time.Millisecond), etcd.start.Round(10*time.Millisecond), dir.start.Round(10*time.Millisecond),
			etcd.settled.Round(10*time.Millisecond), etcd.atStart.rss/1024, etcd.mem.rss/1024, dir.mem.rss/1024,
			median(per), slices.Min(per), slices.Max(per), (etcd.cpu/etcd.hs)/(dir.cpu/dir.hs))
	}
	if !header {
		return
	}
	w.Flush()
	fmt.Println("\nstart = from exec until the last mapping's name is served: first start = on an empty CONFIG_DIR, start = the\nrestart on the snapshot the first start made, the one measured in the rounds; idle after = from then until it used\nunder 10 ms of CPU in a second; VmRSS in MiB at that start and after the rounds; etcd/dir = the two serves' CPU\nper handshake in the same round, median (min-max), and pooled over all rounds")
}
