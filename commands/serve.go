package commands

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/serve"
	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/serve/public"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/snapshot"
)

func serveCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "serve",
		Usage: "run the management listener and the public HTTPS listeners",
		Description: "Serves management on MANAGEMENT_LISTEN (default :8443) in MANAGEMENT_TLS_MODE:\n" +
			"auto (default) creates the management CA and server certificate on first start\n" +
			"and logs where the CA is and its fingerprint; provided serves\n" +
			"MANAGEMENT_TLS_CERT_FILE/MANAGEMENT_TLS_KEY_FILE and picks up rotated files;\n" +
			"off serves plain HTTP and needs MANAGEMENT_ALLOW_INSECURE_HTTP=true.\n" +
			"Endpoints: /healthz, /ca.crt, /metrics (Prometheus, admin token as Bearer), and the\n" +
			"JSON API under /api/v1 (admin token): status, listeners, mappings, certificates,\n" +
			"dns-credentials, acme/accounts, doctor. --metrics-listen (METRICS_LISTEN) also\n" +
			"serves /metrics over plain HTTP without a token, for scrapers on a trusted network.\n\n" +
			"Every HTTPS listener of the state picks certificates by SNI from its mappings\n" +
			"(exact host, then wildcard, then the fallback, which is counted and logged as a\n" +
			"deployment failure) and proxies to the mapping's or listener's upstream. Changes\n" +
			"to the state directory are served within 2 s without a restart. SIGINT or\n" +
			"SIGTERM shut everything down gracefully.\n\n" +
			"--listen-host HOST (P2PTLS_LISTEN_HOST) binds every public listener, HTTPS and\n" +
			"HTTP, on HOST with the port its configuration gives, also one whose configured\n" +
			"host is specific, and so does every listener added or changed while serve runs:\n" +
			"replicas whose hosts differ share one configuration. status shows each\n" +
			"listener's configured addr and its bound_addr.\n\n" +
			"On a shared store (--store) each replica reports its status under its own\n" +
			"--replica-name (P2PTLS_REPLICA_NAME; default the host name, @HOST with\n" +
			"--listen-host) in run/replicas/NAME/, rewritten at least every\n" +
			"--replica-heartbeat. status and doctor show a replica stale after three missed\n" +
			"heartbeats and forget it a day after its last one. A second serve refuses to\n" +
			"start under the name of one that still runs.\n\n" +
			"Every listener is bounded by the limit flags below (timeouts, header size,\n" +
			"open connections); a stalled upstream is answered with 504. Every listener\n" +
			"offers TLS 1.2 with ECDHE and AEAD suites only, and TLS 1.3. The write timeout\n" +
			"of 0 means none on public listeners and 60 s on management." + examples(
			"p2ptls serve --public-url https://mgmt.example.com:8443",
			"p2ptls serve --listen 127.0.0.1:8443 --max-conns 2048 --write-timeout 0 --log-format json",
			"MANAGEMENT_LISTEN=127.0.0.2:8443 p2ptls serve --listen-host 127.0.0.2",
			"p2ptls serve --tls-mode provided --tls-cert-file /etc/ssl/mgmt.pem --tls-key-file /etc/ssl/mgmt.key"),
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: flgListen, Usage: "management listen address HOST:PORT", Value: statemgmt.DefaultListen, EnvVars: []string{"MANAGEMENT_LISTEN"}},
			&cli.StringFlag{Name: flgMetricsListen, Usage: "also serve /metrics over plain HTTP without a token on HOST:PORT (trusted networks only; off by default)", EnvVars: []string{"METRICS_LISTEN"}},
			&cli.StringFlag{Name: flgReplicaName, Usage: "this replica's name on a shared store (--store), under which it reports its status (default: the host name, with @HOST of --listen-host); ignored on a state directory", EnvVars: []string{envReplicaName}},
			&cli.DurationFlag{Name: flgReplicaHeartbeat, Usage: "on a shared store, rewrite this replica's status at least this often; status shows it stale after three missed heartbeats", Value: runstatus.DefaultHeartbeat, EnvVars: []string{envReplicaHeartbeat}},
			&cli.StringFlag{Name: flgListenHost, Usage: "bind every public HTTPS and HTTP listener on HOST (an IP address or host name of this machine), keeping each one's port: replicas that share one configuration each serve on their own address; management keeps MANAGEMENT_LISTEN", EnvVars: []string{envListenHost}},
		}, modeFlags()...), append(append(namesFlags(), resolversFlag()), limitFlags()...)...),
	}, serveAction)
}

// The limits of every listener serve opens (public HTTPS and HTTP, and
// management), with their environment variables.
const (
	flgHandshakeTimeout      = "tls-handshake-timeout"
	flgReadHeaderTimeout     = "read-header-timeout"
	flgIdleTimeout           = "idle-timeout"
	flgWriteTimeout          = "write-timeout"
	flgMaxHeaderBytes        = "max-header-bytes"
	flgMaxConns              = "max-conns"
	flgUpstreamDialTimeout   = "upstream-dial-timeout"
	flgUpstreamHeaderTimeout = "upstream-response-header-timeout"
)

func limitFlags() []cli.Flag {
	d := edge.DefaultLimits()
	return []cli.Flag{
		&cli.DurationFlag{Name: flgHandshakeTimeout, Usage: "close a connection whose TLS handshake has not finished this long after accept", Value: d.HandshakeTimeout, EnvVars: []string{"P2PTLS_TLS_HANDSHAKE_TIMEOUT"}},
		&cli.DurationFlag{Name: flgReadHeaderTimeout, Usage: "close a connection that has not sent a request's headers in this time", Value: d.ReadHeaderTimeout, EnvVars: []string{"P2PTLS_READ_HEADER_TIMEOUT"}},
		&cli.DurationFlag{Name: flgIdleTimeout, Usage: "close a keep-alive connection idle this long", Value: d.IdleTimeout, EnvVars: []string{"P2PTLS_IDLE_TIMEOUT"}},
		&cli.DurationFlag{Name: flgWriteTimeout, Usage: "bound writing one response on public listeners; 0 means none, so long downloads and WebSockets are not cut (management: 60s)", Value: d.WriteTimeout, EnvVars: []string{"P2PTLS_WRITE_TIMEOUT"}},
		&cli.IntFlag{Name: flgMaxHeaderBytes, Usage: "largest request header block accepted, in bytes", Value: d.MaxHeaderBytes, EnvVars: []string{"P2PTLS_MAX_HEADER_BYTES"}},
		&cli.IntFlag{Name: flgMaxConns, Usage: "open connections per listener; further clients wait until one closes", Value: d.MaxConns, EnvVars: []string{"P2PTLS_MAX_CONNS"}},
		&cli.DurationFlag{Name: flgUpstreamDialTimeout, Usage: "give up connecting to an upstream after this long (then 504)", Value: d.UpstreamDialTimeout, EnvVars: []string{"P2PTLS_UPSTREAM_DIAL_TIMEOUT"}},
		&cli.DurationFlag{Name: flgUpstreamHeaderTimeout, Usage: "give up waiting for an upstream's response headers after this long (then 504)", Value: d.UpstreamResponseHeaderTimeout, EnvVars: []string{"P2PTLS_UPSTREAM_RESPONSE_HEADER_TIMEOUT"}},
	}
}

// limits reads the limit flags; 0 turns a timeout off, a negative value or
// a cap below what HTTP needs is refused.
func limits(c *cli.Context) (edge.Limits, error) {
	l := edge.Limits{
		HandshakeTimeout:              c.Duration(flgHandshakeTimeout),
		ReadHeaderTimeout:             c.Duration(flgReadHeaderTimeout),
		IdleTimeout:                   c.Duration(flgIdleTimeout),
		WriteTimeout:                  c.Duration(flgWriteTimeout),
		MaxHeaderBytes:                c.Int(flgMaxHeaderBytes),
		MaxConns:                      c.Int(flgMaxConns),
		UpstreamDialTimeout:           c.Duration(flgUpstreamDialTimeout),
		UpstreamResponseHeaderTimeout: c.Duration(flgUpstreamHeaderTimeout),
	}
	for name, d := range map[string]time.Duration{flgHandshakeTimeout: l.HandshakeTimeout, flgReadHeaderTimeout: l.ReadHeaderTimeout,
		flgIdleTimeout: l.IdleTimeout, flgWriteTimeout: l.WriteTimeout, flgUpstreamDialTimeout: l.UpstreamDialTimeout,
		flgUpstreamHeaderTimeout: l.UpstreamResponseHeaderTimeout} {
		if d < 0 {
			return l, fault.Invalidf("give a duration such as 10s, or 0 for none", "--%s %v is negative", name, d)
		}
	}
	if l.MaxHeaderBytes < minHeaderBytes {
		return l, fault.Invalidf(fmt.Sprintf("give at least %d", minHeaderBytes), "--%s %d is too small for HTTP request headers", flgMaxHeaderBytes, l.MaxHeaderBytes)
	}
	if l.MaxConns < 0 {
		return l, fault.Invalidf("give a count, or 0 for no cap", "--%s %d is negative", flgMaxConns, l.MaxConns)
	}
	return l, nil
}

const (
	flgMetricsListen = "metrics-listen"
	flgListenHost    = "listen-host"
	envListenHost    = "P2PTLS_LISTEN_HOST"

	flgReplicaName      = "replica-name"
	envReplicaName      = "P2PTLS_REPLICA_NAME"
	flgReplicaHeartbeat = "replica-heartbeat"
	envReplicaHeartbeat = "P2PTLS_REPLICA_HEARTBEAT"
)

// replica is this serve's replica name and heartbeat on a shared store,
// validated; "" on a state directory, which keeps run/status.json.
func replica(c *cli.Context, g *Globals, listenHost string) (string, time.Duration, error) {
	beat := c.Duration(flgReplicaHeartbeat)
	if beat < time.Second {
		return "", 0, fault.Invalidf("give 1s or more, e.g. 10s", "--%s (%s) %v is below one second", flgReplicaHeartbeat, envReplicaHeartbeat, beat)
	}
	name := c.String(flgReplicaName)
	if name == "" {
		name = runstatus.DefaultReplicaName(listenHost)
	}
	if err := runstatus.ValidateReplicaName(name); err != nil {
		return "", 0, fault.AsInvalid(fmt.Errorf("--%s (%s): %w", flgReplicaName, envReplicaName, err), fault.HintOf(err))
	}
	if g.StoreURL == "" {
		return "", beat, nil
	}
	return name, beat, nil
}

// metricsAddr is --metrics-listen, validated; "" when off.
func metricsAddr(c *cli.Context) (string, error) {
	addr := c.String(flgMetricsListen)
	if addr == "" {
		return "", nil
	}
	v, err := hostname.ValidateListenAddr(addr)
	if err != nil {
		return "", fault.AsInvalid(fmt.Errorf("--%s (METRICS_LISTEN): %w", flgMetricsListen, err), "give HOST:PORT, e.g. 127.0.0.1:9443, or leave it unset")
	}
	return v, nil
}

// listenHost is --listen-host, validated; "" when not given.
func listenHost(c *cli.Context) (string, error) {
	host, err := public.ParseListenHost(c.String(flgListenHost))
	if err != nil {
		return "", fault.AsInvalid(fmt.Errorf("--%s (%s): %w", flgListenHost, envListenHost, err),
			"give this replica's IP address, e.g. 127.0.0.2 or ::1, or a host name such as localhost, without a port")
	}
	return host, nil
}

// minHeaderBytes is the smallest header limit serve takes: browsers send a
// few kB of headers and cookies, and net/http would read 0 as 1 MiB.
const minHeaderBytes = 4096

func serveAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	host, err := listenHost(c)
	if err != nil {
		return err
	}
	name, beat, err := replica(c, g, host)
	if err != nil {
		return err
	}
	opts, err := acmeOptions(c)
	if err != nil {
		return err
	}
	lim, err := limits(c)
	if err != nil {
		return err
	}
	metricsListen, err := metricsAddr(c)
	if err != nil {
		return err
	}
	store, closeStore, err := serveStore(ctx, g)
	if err != nil {
		return err
	}
	defer closeStore()
	return serve.Run(ctx, serve.Options{Store: store, Log: slog.Default(), Management: set, DNSResolvers: opts.DNSResolvers, Limits: lim,
		MetricsListen: metricsListen, ListenHost: host, Version: Version(), Replica: name, Heartbeat: beat})
}

// snapshotDir is where serve on a shared store keeps its copy of the last
// good state, inside this machine's state directory.
const snapshotDir = "snapshot"

// serveStore is the store serve runs on: the state directory, or the
// shared store behind the local snapshot that serve falls back to while
// the shared store is unreachable (and starts from, if it is down).
func serveStore(ctx context.Context, g *Globals) (state.Store, func(), error) {
	if g.StoreURL == "" {
		return g.Store(), func() {}, nil
	}
	snap, err := snapshot.Open(ctx, snapshot.Options{
		Open: func(ctx context.Context) (state.Store, error) {
			s, _, err := openStore(ctx, g, g.StoreURL)
			return s, err
		},
		Dir: filepath.Join(g.ConfigDir, snapshotDir), Source: redactURL(g.StoreURL), Log: slog.Default(), LockTimeout: g.LockTimeout,
	})
	if err != nil {
		return nil, nil, err
	}
	return snap, func() { _ = snap.Close() }, nil
}
