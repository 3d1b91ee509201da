// Package etcdtest runs real etcd servers in the test process
// (go.etcd.io/etcd/server/v3/embed) on 127.0.0.1 free ports: one node, or
// a cluster of several members whose leader a test can kill.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long a member may take to be ready.
const startTimeout = 30 * time.Second

// Member is one etcd server of a Cluster (or the only one of Start).
type Member struct {
	Name       string
	Dir        string
	ClientURL  url.URL
	PeerURL    url.URL
	mu         sync.Mutex
	etcd       *embed.Etcd
	configured func(*embed.Config)
}

// Cluster is a set of etcd members started together.
type Cluster struct {
	Members []*Member
	initial string // the --initial-cluster value
}

// Start runs a single etcd node until the test ends.
func Start(t testing.TB) *Cluster { return StartCluster(t, 1) }

// StartCluster runs an n-member etcd cluster until the test ends. Every
// member is ready (and a leader elected) when it returns.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartClusterWith(t, n, nil)
}

// StartClusterWith is StartCluster with a hook that adjusts each member's
// configuration (TLS, limits) before it starts, and again on Restart.
func StartClusterWith(t testing.TB, n int, configure func(*embed.Config)) *Cluster {
	t.Helper()
	c := &Cluster{}
	var peers []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), Dir: t.TempDir(), configured: configure}
		m.ClientURL = url.URL{Scheme: "http", Host: freeAddr(t)}
		m.PeerURL = url.URL{Scheme: "http", Host: freeAddr(t)}
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.PeerURL.String())
	}
	c.initial = strings.Join(peers, ",")
	t.Cleanup(c.Close)
	errs := make(chan error, n)
	for _, m := range c.Members {
		go func() { errs <- c.start(m, "new") }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// Endpoints are the members' client addresses (HOST:PORT).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL.Host)
	}
	return eps
}

// URL is the p2ptls store URL of the cluster with prefix (no leading slash).
func (c *Cluster) URL(prefix string) string {
	return "etcd://" + strings.Join(c.Endpoints(), ",") + "/" + prefix
}

// Leader returns the index of the member that leads, or -1 when none of
// the running members knows one.
func (c *Cluster) Leader() int {
	running := map[uint64]int{}
	var lead uint64
	for i, m := range c.Members {
		m.mu.Lock()
		e := m.etcd
		m.mu.Unlock()
		if e != nil {
			running[uint64(e.Server.MemberID())] = i
			if l := uint64(e.Server.Leader()); l != 0 {
				lead = l
			}
		}
	}
	if i, ok := running[lead]; ok && lead != 0 {
		return i
	}
	return -1
}

// Stop stops member i (its data stays for Restart).
func (c *Cluster) Stop(i int) {
	m := c.Members[i]
	m.mu.Lock()
	e := m.etcd
	m.etcd = nil
	m.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts member i again on its ports and data.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	if err := c.start(c.Members[i], "existing"); err != nil {
		t.Fatal(err)
	}
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.Stop(i)
	}
}

func (c *Cluster) start(m *Member, state string) error {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cfg.ListenClientUrls = []url.URL{m.ClientURL}
	cfg.AdvertiseClientUrls = []url.URL{m.ClientURL}
	cfg.ListenPeerUrls = []url.URL{m.PeerURL}
	cfg.AdvertisePeerUrls = []url.URL{m.PeerURL}
	cfg.InitialCluster = c.initial
	cfg.InitialClusterToken = "p2ptls-test"
	cfg.ClusterState = state
	// Tests elect quickly; the defaults (100 ms heartbeat, 1 s election)
	// are kept so that a loaded CI machine does not flap leaders.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	if m.configured != nil {
		m.configured(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("etcd member %s: %w", m.Name, err)
	case <-time.After(startTimeout):
		e.Close()
		return fmt.Errorf("etcd member %s not ready within %s", m.Name, startTimeout)
	}
	m.mu.Lock()
	m.etcd = e
	m.mu.Unlock()
	return nil
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
