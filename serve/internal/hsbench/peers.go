package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// A peer is a server p2ptls users would pick instead, run side by side
// with the same certificates: one worker, TLS 1.3 only, X25519, no
// session tickets or cache (full handshakes), 127.0.0.1 only, and the
// first mapping's certificate as the default for names nobody maps.
type peer struct {
	name    string // as in -peers
	bin     string
	version string
	// config writes the peer's configuration for the certificate set cs
	// into dir and returns the arguments and extra environment to start it.
	config func(dir, addr string, cs certSet) (args, env []string, err error)
}

// certSet is one generated certificate set, as every server loads it.
type certSet struct {
	n int
	// stateDir is the p2ptls state (mappings/<id>/cert.pem and key.pem).
	stateDir string
	// bundleDir holds m<i>.pem, certificate then key, for the servers
	// that want both in one file (HAProxy, Caddy).
	bundleDir string
}

func mappingID(i int) string { return fmt.Sprintf("m%06d", i) }

func (cs certSet) certFile(i int) string {
	return filepath.Join(cs.stateDir, filepath.FromSlash(mappings.MappingDir(mappingID(i))), mappings.CertFileName)
}

func (cs certSet) keyFile(i int) string {
	return filepath.Join(cs.stateDir, filepath.FromSlash(mappings.MappingDir(mappingID(i))), mappings.KeyFileName)
}

func (cs certSet) bundle(i int) string {
	return filepath.Join(cs.bundleDir, mappingID(i)+".pem")
}

// writeBundles writes cs's bundles from its state's certificate and key
// files, once per mapping count (HAProxy and Caddy share them).
func writeBundles(ctx context.Context, cs certSet) error {
	if err := os.MkdirAll(cs.bundleDir, 0o700); err != nil {
		return err
	}
	for i := range cs.n {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := os.ReadFile(cs.certFile(i))
		if err != nil {
			return err
		}
		k, err := os.ReadFile(cs.keyFile(i))
		if err != nil {
			return err
		}
		if err := os.WriteFile(cs.bundle(i), append(c, k...), state.SecretMode); err != nil {
			return err
		}
	}
	return nil
}

// knownPeers are the peers hsbench knows, in the table's column order.
var knownPeers = []string{"haproxy", "nginx", "caddy"}

// findPeers resolves -peers: "" means every peer found without building
// anything, "none" none; a named peer that is absent is skipped with one
// line. Caddy is built from the module proxy when named and not cached.
func findPeers(ctx context.Context, list, caddyVersion, cacheDir string) ([]peer, error) {
	var names []string
	explicit := true
	switch strings.TrimSpace(list) {
	case "none":
		return nil, nil
	case "":
		names, explicit = knownPeers, false
	default:
		for _, s := range strings.Split(list, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(knownPeers, s) {
				return nil, fmt.Errorf("-peers: unknown peer %q (known: %s, or none)", s, strings.Join(knownPeers, ", "))
			}
			if !slices.Contains(names, s) {
				names = append(names, s)
			}
		}
	}
	var ps []peer
	for _, name := range knownPeers {
		if !slices.Contains(names, name) {
			continue
		}
		var p peer
		var err error
		switch name {
		case "haproxy":
			p, err = findHAProxy()
		case "nginx":
			p, err = findNginx()
		case "caddy":
			p, err = findCaddy(ctx, caddyVersion, cacheDir, explicit)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			logf("skipping %s: %v", name, err)
			continue
		}
		logf("peer %s %s: %s", p.name, p.version, p.bin)
		ps = append(ps, p)
	}
	return ps, nil
}

// lookPath finds a server binary on PATH or in the sbin directories Debian
// installs daemons into (not on a normal user's PATH).
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (Debian: apt-get install %s)", name, name)
}

// firstVersion runs bin with args and returns the first word after the
// prefix in its combined output, e.g. "2.6.12-1+deb12u4".
func firstVersion(bin, prefix string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	_, rest, ok := strings.Cut(string(out), prefix)
	if f := strings.Fields(rest); ok && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func findHAProxy() (peer, error) {
	bin, err := lookPath("haproxy")
	if err != nil {
		return peer{}, err
	}
	return peer{name: "haproxy", bin: bin, version: firstVersion(bin, "HAProxy version ", "-v"), config: haproxyConfig}, nil
}

// haproxyConfig: one process, one thread, every certificate in a crt-list
// (HAProxy indexes each by the names in it, wildcards included; the first
// line is the default), HTTP mode answering 404 like the Go servers.
func haproxyConfig(dir, addr string, cs certSet) ([]string, []string, error) {
	var list bytes.Buffer
	for i := range cs.n {
		fmt.Fprintln(&list, cs.bundle(i))
	}
	crtList := filepath.Join(dir, "certs.list")
	if err := os.WriteFile(crtList, list.Bytes(), 0o600); err != nil {
		return nil, nil, err
	}
	cfg := fmt.Sprintf(`global
	nbthread 1
	maxconn 4096
	# no session cache: every handshake is a full one
	tune.ssl.cachesize 0

defaults
	mode http
	timeout connect 5s
	timeout client 10s
	timeout server 10s
	timeout http-request 10s

frontend bench
	bind %s ssl crt-list %s ssl-min-ver TLSv1.3 no-tls-tickets curves X25519
	http-request return status 404
`, addr, crtList)
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, nil, err
	}
	// -db: foreground, one process (no master), so Pdeathsig covers it.
	return []string{"-db", "-f", file}, nil, nil
}

func findNginx() (peer, error) {
	bin, err := lookPath("nginx")
	if err != nil {
		return peer{}, err
	}
	return peer{name: "nginx", bin: bin, version: firstVersion(bin, "nginx/", "-v"), config: nginxConfig}, nil
}

// nginxConfig: one server block per certificate with its server_name (the
// way nginx users map names), one worker, the first block the default.
func nginxConfig(dir, addr string, cs certSet) ([]string, []string, error) {
	var b bytes.Buffer
	// The hash of exact names must hold all of them; nginx refuses to
	// start when it cannot build it within these sizes.
	fmt.Fprintf(&b, `worker_processes 1;
daemon off;
master_process on;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	server_names_hash_max_size %[2]d;
	server_names_hash_bucket_size 128;
	ssl_protocols TLSv1.3;
	ssl_ecdh_curve X25519;
	ssl_session_cache off;
	ssl_session_tickets off;
`, dir, 4*cs.n+1024)
	for i := range cs.n {
		def := ""
		if i == 0 {
			def = " default_server"
		}
		fmt.Fprintf(&b, "\tserver { listen %s ssl%s; server_name %s; ssl_certificate %s; ssl_certificate_key %s; return 404; }\n",
			addr, def, host(i), cs.certFile(i), cs.keyFile(i))
	}
	b.WriteString("}\n")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, nil, err
	}
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		return nil, nil, err
	}
	// -e: the error log before the configuration is read is ours too.
	return []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", file}, nil, nil
}

const caddyModule = "github.com/caddyserver/caddy/v2/cmd/caddy"

// findCaddy uses a caddy binary cached by an earlier run, or one on PATH
// of the wanted version, and builds it (go install from the module proxy
// into the cache) only when Caddy was named in -peers.
func findCaddy(ctx context.Context, version, cacheDir string, build bool) (peer, error) {
	bin := filepath.Join(cacheDir, "caddy-"+version, "caddy")
	if _, err := os.Stat(bin); err != nil {
		if p, err := exec.LookPath("caddy"); err == nil && caddyVersion(p) == version {
			bin = p
		} else if !build {
			return peer{}, fmt.Errorf("no caddy %s in %s (-peers caddy builds it from the Go module proxy)", version, filepath.Dir(bin))
		} else if err := buildCaddy(ctx, version, filepath.Dir(bin)); err != nil {
			return peer{}, err
		}
	}
	return peer{name: "caddy", bin: bin, version: caddyVersion(bin), config: caddyConfig}, nil
}

// caddyVersion is the module version bin was built from ("caddy version"
// says "unknown" for a plain go install).
func caddyVersion(bin string) string {
	if bi, err := buildinfo.ReadFile(bin); err == nil && bi.Main.Path == "github.com/caddyserver/caddy/v2" {
		return bi.Main.Version
	}
	return "?"
}

// buildCaddy runs go install for Caddy outside any module, through the
// module proxy only: "direct" (fetching from the origin) is dropped.
func buildCaddy(ctx context.Context, version, dir string) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOPROXY").Output()
	if err != nil {
		return fmt.Errorf("go env GOPROXY: %w", err)
	}
	var proxies []string
	for _, p := range strings.FieldsFunc(strings.TrimSpace(string(out)), func(r rune) bool { return r == ',' || r == '|' }) {
		if p != "direct" && p != "off" {
			proxies = append(proxies, p)
		}
	}
	if len(proxies) == 0 {
		return errors.New("GOPROXY names no module proxy; caddy is built from one")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logf("building caddy %s from %s into %s (a few minutes the first time)", version, strings.Join(proxies, ","), dir)
	cmd := exec.CommandContext(ctx, "go", "install", caddyModule+"@"+version)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOPROXY="+strings.Join(proxies, ","), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go install %s@%s: %w", caddyModule, version, err)
	}
	return nil
}

// caddyConfig: one HTTPS server with automatic HTTPS off, the certificates
// loaded from the bundle folder into a cache of twice their number, admin
// off, nothing written outside dir. The cache: Caddy's default holds
// 10,000 and evicts at random beyond, and once it is 90 % full CertMagic
// looks a name it lacks up in storage instead of using fallback_sni, so
// unmapped names would fail.
func caddyConfig(dir, addr string, cs certSet) ([]string, []string, error) {
	cfg := map[string]any{
		"admin":   map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"level": "ERROR"}}},
		"storage": map[string]any{"module": "file_system", "root": filepath.Join(dir, "data")},
		"apps": map[string]any{
			"http": map[string]any{"servers": map[string]any{"bench": map[string]any{
				"listen":          []string{addr},
				"automatic_https": map[string]any{"disable": true},
				"routes":          []any{map[string]any{"handle": []any{map[string]any{"handler": "static_response", "status_code": 404}}}},
				"tls_connection_policies": []any{map[string]any{
					"protocol_min": "tls1.3",
					"curves":       []string{"x25519"},
					// Names nobody maps get the first mapping's certificate,
					// as with the other servers, instead of a failed handshake.
					"fallback_sni": host(0),
				}},
			}}},
			"tls": map[string]any{
				"certificates":    map[string]any{"load_folders": []string{cs.bundleDir}},
				"cache":           map[string]any{"capacity": 2*cs.n + 64},
				"session_tickets": map[string]any{"disabled": true},
			},
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	file := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, nil, err
	}
	env := []string{"GOMAXPROCS=1", "HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config")}
	return []string{"run", "--config", file}, env, nil
}

// startPeer writes p's configuration for cs and starts it listening on addr.
func startPeer(p peer, dir, addr string, cs certSet) (*proc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	args, env, err := p.config(dir, addr, cs)
	if err != nil {
		return nil, fmt.Errorf("%s configuration: %w", p.name, err)
	}
	return startProc(p.bin, args, env, filepath.Join(dir, p.name+".log"))
}

// startTimeout bounds how long a server may take until it serves the last
// name: nginx needs minutes at 100k.
func startTimeout(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*10*time.Millisecond
}
