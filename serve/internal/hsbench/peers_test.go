package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCerts writes a state with n mappings and the peers' bundles.
func testCerts(t *testing.T, n int) certSet {
	t.Helper()
	dir := t.TempDir()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prepareState(context.Background(), dir, addr, n); err != nil {
		t.Fatal(err)
	}
	cs := certSet{n: n, stateDir: dir, bundleDir: filepath.Join(dir, "bundles")}
	if err := writeBundles(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestBundlesHoldCertificateAndKey(t *testing.T) {
	cs := testCerts(t, 5)
	for i := range cs.n {
		c, err := tls.LoadX509KeyPair(cs.bundle(i), cs.bundle(i))
		if err != nil {
			t.Fatalf("bundle %d: %v", i, err)
		}
		if err := c.Leaf.VerifyHostname(warmName(i)); err != nil {
			t.Errorf("bundle %d: %v", i, err)
		}
		if fi, err := os.Stat(cs.bundle(i)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("bundle %d holds a key and must be 0600: %v %v", i, fi.Mode(), err)
		}
	}
}

// TestPeerConfigs checks that each peer's generated configuration names
// every certificate once, listens on 127.0.0.1 only and pins what the
// method pins (one worker, TLS 1.3, X25519, no tickets).
func TestPeerConfigs(t *testing.T) {
	const n = 9
	cs := testCerts(t, n)
	addr := "127.0.0.1:4433"
	tests := []struct {
		name   string
		config func(dir, addr string, cs certSet) ([]string, []string, error)
		check  func(t *testing.T, dir string)
	}{
		{"haproxy", haproxyConfig, func(t *testing.T, dir string) {
			cfg := readFile(t, filepath.Join(dir, "haproxy.cfg"))
			for _, want := range []string{"nbthread 1", "bind " + addr + " ssl crt-list ", "ssl-min-ver TLSv1.3", "no-tls-tickets", "curves X25519", "tune.ssl.cachesize 0"} {
				if !strings.Contains(cfg, want) {
					t.Errorf("haproxy.cfg lacks %q:\n%s", want, cfg)
				}
			}
			if got := regexp.MustCompile(`(?m)^\s*bind `).FindAllString(cfg, -1); len(got) != 1 {
				t.Errorf("haproxy.cfg has %d bind lines, want 1", len(got))
			}
			lines := strings.Split(strings.TrimSpace(readFile(t, filepath.Join(dir, "certs.list"))), "\n")
			if len(lines) != n {
				t.Fatalf("crt-list has %d lines, want %d", len(lines), n)
			}
			for i, l := range lines {
				if l != cs.bundle(i) {
					t.Errorf("crt-list line %d = %q, want %q", i, l, cs.bundle(i))
				}
			}
		}},
		{"nginx", nginxConfig, func(t *testing.T, dir string) {
			cfg := readFile(t, filepath.Join(dir, "nginx.conf"))
			for _, want := range []string{"worker_processes 1;", "ssl_protocols TLSv1.3;", "ssl_ecdh_curve X25519;", "ssl_session_tickets off;", "ssl_session_cache off;"} {
				if !strings.Contains(cfg, want) {
					t.Errorf("nginx.conf lacks %q", want)
				}
			}
			blocks := regexp.MustCompile(`server \{ listen (\S+) ssl( default_server)?; server_name (\S+); ssl_certificate (\S+); ssl_certificate_key (\S+);`).FindAllStringSubmatch(cfg, -1)
			if len(blocks) != n {
				t.Fatalf("nginx.conf has %d server blocks, want %d", len(blocks), n)
			}
			for i, b := range blocks {
				if b[1] != addr || b[3] != host(i) || b[4] != cs.certFile(i) || b[5] != cs.keyFile(i) {
					t.Errorf("server block %d = %q", i, b[0])
				}
				if (b[2] != "") != (i == 0) {
					t.Errorf("server block %d: default_server %q; only the first is the default", i, b[2])
				}
			}
		}},
		{"caddy", caddyConfig, func(t *testing.T, dir string) {
			var cfg struct {
				Admin struct {
					Disabled bool `json:"disabled"`
				} `json:"admin"`
				Apps struct {
					HTTP struct {
						Servers map[string]struct {
							Listen         []string `json:"listen"`
							AutomaticHTTPS struct {
								Disable bool `json:"disable"`
							} `json:"automatic_https"`
							Policies []struct {
								ProtocolMin string   `json:"protocol_min"`
								Curves      []string `json:"curves"`
								FallbackSNI string   `json:"fallback_sni"`
							} `json:"tls_connection_policies"`
						} `json:"servers"`
					} `json:"http"`
					TLS struct {
						Certificates struct {
							LoadFolders []string `json:"load_folders"`
						} `json:"certificates"`
						Cache struct {
							Capacity int `json:"capacity"`
						} `json:"cache"`
						SessionTickets struct {
							Disabled bool `json:"disabled"`
						} `json:"session_tickets"`
					} `json:"tls"`
				} `json:"apps"`
			}
			if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "caddy.json"))), &cfg); err != nil {
				t.Fatal(err)
			}
			srv, ok := cfg.Apps.HTTP.Servers["bench"]
			switch {
			case !cfg.Admin.Disabled:
				t.Error("admin endpoint not disabled")
			case !ok || len(srv.Listen) != 1 || srv.Listen[0] != addr:
				t.Errorf("listen = %v, want [%s]", srv.Listen, addr)
			case !srv.AutomaticHTTPS.Disable:
				t.Error("automatic HTTPS not disabled")
			case len(srv.Policies) != 1 || srv.Policies[0].ProtocolMin != "tls1.3" || len(srv.Policies[0].Curves) != 1 || srv.Policies[0].Curves[0] != "x25519":
				t.Errorf("connection policies = %+v", srv.Policies)
			case srv.Policies[0].FallbackSNI != host(0):
				t.Errorf("fallback_sni = %q, want %q", srv.Policies[0].FallbackSNI, host(0))
			case len(cfg.Apps.TLS.Certificates.LoadFolders) != 1 || cfg.Apps.TLS.Certificates.LoadFolders[0] != cs.bundleDir:
				t.Errorf("load_folders = %v", cfg.Apps.TLS.Certificates.LoadFolders)
			case float64(n) >= 0.9*float64(cfg.Apps.TLS.Cache.Capacity):
				t.Errorf("cache capacity %d for %d certificates: at 90 %% Caddy stops using fallback_sni", cfg.Apps.TLS.Cache.Capacity, n)
			case !cfg.Apps.TLS.SessionTickets.Disabled:
				t.Error("session tickets not disabled")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := tt.config(dir, addr, cs); err != nil {
				t.Fatal(err)
			}
			tt.check(t, dir)
		})
	}
}

func readFile(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInstalledPeersServeEveryName starts each peer found on this machine
// (none in CI: the benchmark's peers are not installed there) on a small
// set and checks that every mapped name gets its own certificate, an
// unmapped one the first, and that stop leaves no process of its group.
func TestInstalledPeersServeEveryName(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	cache, _ := os.UserCacheDir()
	ps, err := findPeers(context.Background(), "", "v2.11.9", filepath.Join(cache, "p2ptls-hsbench"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 {
		t.Skip("no peer installed")
	}
	// Enough that Caddy's certificate cache would be 90 % full if it were
	// sized n+64: then unmapped names failed instead of getting the default.
	const n = 600
	cs := testCerts(t, n)
	for _, p := range ps {
		t.Run(p.name, func(t *testing.T) {
			addr, err := freeAddr()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			pr, err := startPeer(p, t.TempDir(), addr, cs)
			if err != nil {
				t.Fatal(err)
			}
			defer pr.stop()
			if err := pr.waitServed(ctx, addr, warmName(n-1), time.Minute); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if matched, err := handshake(addr, warmName(i)); err != nil || !matched {
					t.Errorf("%s: matched %v, %v", warmName(i), matched, err)
				}
			}
			if matched, err := handshake(addr, "nomap00.example.org"); err != nil || matched {
				t.Errorf("unmapped name: matched %v, %v; want a default certificate", matched, err)
			}
			if matched, err := handshake(addr, host(0)); err != nil || !matched {
				t.Errorf("%s: matched %v, %v", host(0), matched, err)
			}
			pgid := pr.pid()
			pr.stop()
			if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("after stop, process group %d: %v; want it gone", pgid, err)
			}
		})
	}
}

// TestHandshakesCountWrongCertificates runs the load against a server
// holding the set and one that serves the first certificate for every
// name: only the second gets wrong-certificate counts.
func TestHandshakesCountWrongCertificates(t *testing.T) {
	const n = 8
	cs := testCerts(t, n)
	byName, err := loadAll(context.Background(), cs.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	first := byName[host(0)]
	tests := []struct {
		name      string
		get       func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		wantWrong bool
	}{
		{"by name", func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := byName[h.ServerName]; ok {
				return c, nil
			}
			if i := strings.IndexByte(h.ServerName, '.'); i > 0 {
				if c, ok := byName["*"+h.ServerName[i:]]; ok {
					return c, nil
				}
			}
			return first, nil
		}, false},
		{"always the first", func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return first, nil }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: tt.get, MinVersion: tls.VersionTLS13})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						c.SetDeadline(time.Now().Add(10 * time.Second))
						c.(*tls.Conn).Handshake()
					}()
				}
			}()
			// 400 handshakes of the 70/25/5 mix: some unmapped, many mapped.
			var c counts
			for c.ok < 400 {
				got, err := handshakes(context.Background(), ln.Addr().String(), sniMix{n: n}, 200*time.Millisecond, 2)
				if err != nil {
					t.Fatal(err)
				}
				c.add(got)
			}
			if c.unmapped == 0 || c.failed != 0 {
				t.Errorf("counts %+v: want some unmapped and none failed", c)
			}
			if (c.wrong > 0) != tt.wantWrong {
				t.Errorf("counts %+v: wrong > 0 is %v, want %v", c, c.wrong > 0, tt.wantWrong)
			}
		})
	}
}

func TestFindPeersRefusesUnknownNames(t *testing.T) {
	tests := []struct {
		list    string
		wantErr bool
	}{
		{"none", false},
		{"haproxy,apache", true},
		{"caddy2", true},
	}
	for _, tt := range tests {
		ps, err := findPeers(context.Background(), tt.list, "v0.0.0", t.TempDir())
		if (err != nil) != tt.wantErr {
			t.Errorf("findPeers(%q) = %v, %v; want error %v", tt.list, ps, err, tt.wantErr)
		}
		if tt.list == "none" && len(ps) != 0 {
			t.Errorf("findPeers(none) = %v", ps)
		}
	}
}

func TestProcKB(t *testing.T) {
	tests := []struct {
		file    string
		keys    []string
		want    []int64
		wantErr bool
	}{
		{"testdata/status", []string{"VmHWM:", "VmRSS:"}, []int64{170432, 164012}, false},
		{"testdata/status", []string{"RssAnon:", "RssFile:"}, []int64{116, 1640}, false},
		{"testdata/smaps_rollup", []string{"Pss:"}, []int64{160321}, false},
		{"testdata/status", []string{"Pss:"}, nil, true},
	}
	for _, tt := range tests {
		got, err := procKB(tt.file, tt.keys...)
		if (err != nil) != tt.wantErr || (err == nil && !slices.Equal(got, tt.want)) {
			t.Errorf("procKB(%s, %v) = %v, %v; want %v (error %v)", tt.file, tt.keys, got, err, tt.want, tt.wantErr)
		}
	}
	m, err := treeMem(os.Getpid())
	// The kernel keeps RssAnon and RssFile in per-CPU batches ("may be
	// imprecise", proc(5)): their sum may pass VmRSS by a few pages.
	const slackKB = 1024
	if err != nil || m.hwm <= 0 || m.rss <= 0 || m.anon <= 0 || m.anon+m.file > m.rss+slackKB {
		t.Errorf("treeMem(self) = %+v, %v", m, err)
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{countName(1), "1"},
		{countName(10000), "10k"},
		{countName(100000), "100k"},
		{countName(1500), "1500"},
		{shortVersion("2.6.12-1+deb12u4"), "2.6.12"},
		{shortVersion("1.22.1"), "1.22.1"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// freeAddr must give a loopback address: hsbench contacts nothing else.
func TestFreeAddrIsLoopback(t *testing.T) {
	a, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := net.SplitHostPort(a)
	if !net.ParseIP(h).IsLoopback() {
		t.Errorf("freeAddr() = %s", a)
	}
}

// TestReusableState: a kept state is generated once, reused by the next
// run with the listener moved to that run's address, and refused when its
// p2ptls.toml no longer holds the address hsbench wrote; the certificate
// bytes count both files of every mapping, as PEM and as DER.
func TestReusableState(t *testing.T) {
	keep := t.TempDir()
	const n = 3
	first, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := reusableState(context.Background(), keep, first, n)
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "certs", "public", mappingID(0), "cert.pem")
	before, err := os.Stat(cert)
	if err != nil {
		t.Fatal(err)
	}
	second := "127.0.0.1:1"
	if _, err := reusableState(context.Background(), keep, second, n); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "p2ptls.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "addr = '"+second+"'") || strings.Contains(string(cfg), first) {
		t.Errorf("the kept state's listener is not on the second run's address:\n%s", cfg)
	}
	if after, err := os.Stat(cert); err != nil || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Error("the kept state was generated again")
	}

	b, err := measureCertBytes(dir, n)
	if err != nil {
		t.Fatal(err)
	}
	var pemBytes int64
	for i := range n {
		for _, f := range []string{"cert.pem", "key.pem"} {
			fi, err := os.Stat(filepath.Join(dir, "certs", "public", mappingID(i), f))
			if err != nil {
				t.Fatal(err)
			}
			pemBytes += fi.Size()
		}
	}
	// Base64 is 4/3 of the DER, plus the armour lines.
	if b.pem != pemBytes || b.der <= 0 || b.der*4/3 > b.pem {
		t.Errorf("certificate bytes %+v; the PEM files hold %d", b, pemBytes)
	}

	if err := os.WriteFile(filepath.Join(dir, "p2ptls.toml"), []byte("schema_version = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := reusableState(context.Background(), keep, first, n); err == nil || !strings.Contains(err.Error(), "remove") {
		t.Errorf("a kept state whose address hsbench cannot find: %v, want the advice to remove it", err)
	}
}
