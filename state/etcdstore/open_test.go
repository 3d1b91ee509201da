package etcdstore

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// closedAddr is a 127.0.0.1 address where nothing listens.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestOpenRefusesWhatItCannotUse(t *testing.T) {
	plain := etcdtest.Start(t)
	files := etcdtest.NewTLSFiles(t)
	secure := etcdtest.StartClusterWith(t, 1, files.ServeTLS(true))
	authed := etcdtest.StartClusterWith(t, 1, etcdtest.CheapPasswords)
	etcdtest.EnableAuth(t, authed, "right")
	down := closedAddr(t)

	cases := []struct {
		name string
		cfg  Config
		kind fault.Kind
		says []string
	}{
		{"nothing listens", Config{Endpoints: []string{down}}, fault.Failure, []string{"cannot reach etcd at " + down}},
		{"TLS to a plain server", Config{Endpoints: plain.Endpoints(), CAFile: files.CA}, fault.Failure, []string{plain.Endpoints()[0]}},
		{"plain to a TLS server", Config{Endpoints: secure.Endpoints()}, fault.Failure, []string{secure.Endpoints()[0]}},
		{"wrong CA", Config{Endpoints: secure.Endpoints(), CAFile: files.OtherCA, CertFile: files.ClientCert, KeyFile: files.ClientKey}, fault.Failure, []string{"TLS", secure.Endpoints()[0]}},
		{"no client certificate", Config{Endpoints: secure.Endpoints(), CAFile: files.CA}, fault.Failure, []string{secure.Endpoints()[0]}},
		{"wrong password", Config{Endpoints: authed.Endpoints(), User: "root", Password: "wrong"}, fault.Failure, []string{"refused the credentials", authed.Endpoints()[0]}},
		{"no credentials", Config{Endpoints: authed.Endpoints()}, fault.Failure, []string{authed.Endpoints()[0]}},
		{"CA file not PEM", Config{Endpoints: secure.Endpoints(), CAFile: files.ClientKey}, fault.Invalid, []string{"holds no PEM certificate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Prefix = newPrefix("open")
			tc.cfg.DialTimeout = 2 * time.Second
			start := time.Now()
			s, err := Open(testCtx(t), tc.cfg, time.Second)
			if err == nil {
				_ = s.Close()
			}
			t.Log(err)
			statetest.WantFault(t, err, tc.kind, tc.says...)
			// A plain client at a TLS port gets no answer it can read: that
			// looks like a cluster that is away.
			away := tc.name == "nothing listens" || tc.name == "plain to a TLS server"
			if got := errors.Is(err, state.ErrUnreachable); got != away {
				t.Errorf("errors.Is(%v, state.ErrUnreachable) = %v", err, got)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("message is not one line: %q", err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %s to fail", d)
			}
		})
	}

	// The right settings work on the same servers.
	for name, cfg := range map[string]Config{
		"TLS with a client certificate": {Endpoints: secure.Endpoints(), CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey},
		"user and password":             {Endpoints: authed.Endpoints(), User: "root", Password: "right"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Prefix = newPrefix("open")
			s, err := Open(testCtx(t), cfg, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := testCtx(t)
			if err := s.Write(ctx, "p2ptls.toml", []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			unlock, err := s.Lock(ctx, "test")
			if err != nil {
				t.Fatal(err)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpenURLReadsPasswordFile(t *testing.T) {
	c := etcdtest.StartClusterWith(t, 1, etcdtest.CheapPasswords)
	etcdtest.EnableAuth(t, c, "from-a-file")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvUser: "root", EnvPasswordFile: pw}
	s, err := OpenURL(testCtx(t), c.URL("p2ptls"), func(k string) string { return env[k] }, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.String() != c.URL("p2ptls") || strings.Contains(s.String(), "from-a-file") {
		t.Errorf("String() = %q", s.String())
	}
}

func TestOpenRefusesAForeignPrefix(t *testing.T) {
	c := etcdtest.Start(t)
	cli := rawClient(t, c)
	ctx := testCtx(t)
	put := func(k, v string) {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	put("/other/app/config", "x")
	put("/wrongtool/v1/meta", `{"tool":"vault","layout":1}`)
	put("/future/v1/meta", `{"tool":"p2ptls","layout":9}`)
	put("/near", "a key beside the prefix, not under it")
	snapshot := func() map[string]string { return kvMap(t, cli, "", clientv3.WithFromKey()) }
	before := snapshot()
	for _, tc := range []struct{ prefix, says string }{
		{"other", "etcd prefix /other holds keys that are not p2ptls's"},
		{"wrongtool", "etcd prefix /wrongtool holds keys that are not p2ptls's"},
		{"future", "key layout 9"},
	} {
		_, err := Open(ctx, Config{Endpoints: c.Endpoints(), Prefix: tc.prefix}, time.Second)
		statetest.WantFault(t, err, fault.Invalid, tc.says)
	}
	statetest.AssertSame(t, before, snapshot())
	// A prefix that only shares its first letters with a key is empty.
	s, err := Open(ctx, Config{Endpoints: c.Endpoints(), Prefix: "ne"}, time.Second)
	if err != nil {
		t.Fatalf("open beside /near: %v", err)
	}
	_ = s.Close()
}

func TestOpenBoundedByDialTimeout(t *testing.T) {
	// A listener that accepts and never answers: a hung etcd.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = Open(ctx, Config{Endpoints: []string{l.Addr().String()}, Prefix: "p", DialTimeout: time.Second}, time.Second)
	statetest.WantFault(t, err, fault.Failure, l.Addr().String())
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s, want about the dial timeout", d)
	}
}

// TestEtcdAwayAfterOpen: once the cluster has gone, reads, writes, the
// lock and claims fail within the request timeout with one sentence naming
// the endpoints, and never as "locked".
func TestEtcdAwayAfterOpen(t *testing.T) {
	c := etcdtest.Start(t)
	s, err := Open(testCtx(t), Config{Endpoints: c.Endpoints(), Prefix: newPrefix("away"), RequestTimeout: time.Second, DialTimeout: time.Second}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(t)
	if err := s.Write(ctx, "p2ptls.toml", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Stop(0)
	ep := c.Endpoints()[0]
	for name, op := range map[string]func() error{
		"read":     func() error { _, err := s.Read(ctx, "p2ptls.toml"); return err },
		"list":     func() error { _, err := s.List(ctx, "records"); return err },
		"revision": func() error { _, err := s.Revision(ctx); return err },
		"lock":     func() error { _, err := s.Lock(ctx, "test"); return err },
		"claim":    func() error { _, _, err := s.TryClaim(ctx, "m1"); return err },
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			err := op()
			t.Log(err)
			statetest.WantFault(t, err, fault.Failure, ep)
			if !errors.Is(err, state.ErrUnreachable) {
				t.Errorf("%v is not state.ErrUnreachable", err)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}
