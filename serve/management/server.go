// Package management runs the management listener — the JSON API and the web
// UI — over management TLS in the mode the settings choose.
package management

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

const (
	shutdownTimeout = 10 * time.Second
	// renewCheck is how often auto mode checks the server certificate's expiry.
	renewCheck = 12 * time.Hour
)

// Options configure the management server.
type Options struct {
	Settings statemgmt.Settings // validated
	Store    state.Store
	Log      *slog.Logger
	// Status reports what serve runs, for GET /api/v1/status.
	Status func() *runstatus.Status
	// DNSResolvers check DNS-01 propagation when the API issues a
	// certificate (POST /api/v1/mappings/{id}/issue); empty means
	// p2ptls.toml's acme.dns_resolvers, then the system's.
	DNSResolvers []string
	// Limits bound what one client can hold on the management listener:
	// handshake, read-header, idle and write timeouts, header size and
	// open connections. The zero value means edge.DefaultLimits(); a
	// WriteTimeout of 0 means the management default (writeTimeout).
	Limits edge.Limits
	// Metrics, when not nil, answers GET /metrics for an admin token.
	Metrics http.Handler

	// testRoutes, set only by tests of this package, adds routes (such as
	// one that panics) to the handler.
	testRoutes func(*http.ServeMux)
}

// Server is a management listener that is bound and ready to serve.
type Server struct {
	o   Options
	srv *http.Server
	ln  net.Listener // what srv serves: the bound address, capped, with TLS unless mode off
	lc  *liveCert    // nil in mode off
	ctx context.Context
	end context.CancelFunc
}

// Listen prepares management TLS in the configured mode (creating the CA in
// auto mode, checking the files in mode provided) and binds the address.
// Anything that stops serve from starting is reported here, before any
// other listener opens.
func Listen(o Options) (*Server, error) {
	ctx, end := context.WithCancel(context.Background())
	m := &Server{o: o, ctx: ctx, end: end}
	var err error
	switch o.Settings.Mode {
	case statemgmt.ModeAuto:
		m.lc, err = startAuto(ctx, o)
	case statemgmt.ModeProvided:
		m.lc, err = newLiveCert(func() ([]byte, []byte, error) {
			kp, err := statemgmt.LoadProvided(o.Settings.CertFile, o.Settings.KeyFile, time.Now())
			if err != nil {
				return nil, nil, err
			}
			return kp.CertPEM, kp.KeyPEM, nil
		}, nil, o.Log)
	case statemgmt.ModeOff:
		o.Log.Warn("management TLS is off: the management API is served over plain HTTP (MANAGEMENT_ALLOW_INSECURE_HTTP=true); use this only for isolated development or behind a trusted TLS terminator")
	}
	if err != nil {
		end()
		return nil, err
	}
	raw, err := net.Listen("tcp", o.Settings.Listen)
	if err != nil {
		end()
		return nil, fault.Failf("choose a free address with MANAGEMENT_LISTEN, or stop what holds it",
			"cannot listen on MANAGEMENT_LISTEN %s: %v", o.Settings.Listen, err)
	}
	lim := limitsOf(o)
	var cfg *tls.Config
	if m.lc != nil {
		cfg = m.tlsConfig()
	}
	m.ln = edge.Listen(raw, cfg, lim, o.Log)
	m.srv = &http.Server{
		Handler:           newHandler(ctx, o),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		// A read timeout shorter than the header timeout would cut headers first.
		ReadTimeout:    max(readTimeout, lim.ReadHeaderTimeout),
		WriteTimeout:   lim.WriteTimeout,
		IdleTimeout:    lim.IdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
		// "OPTIONS *" goes to the handler too, for its headers.
		DisableGeneralOptionsHandler: true,
	}
	return m, nil
}

// tlsConfig is the management TLS policy: edge's (TLS 1.2 with ECDHE and
// AEAD only, TLS 1.3 as Go ships it) with the live certificate, and h2.
func (m *Server) tlsConfig() *tls.Config {
	cfg := edge.TLSConfig()
	cfg.GetCertificate = m.lc.getCertificate
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return cfg
}

// Addr is the address the management server listens on.
func (m *Server) Addr() net.Addr { return m.ln.Addr() }

// Close releases a server that will not Serve.
func (m *Server) Close() {
	m.end()
	m.ln.Close()
}

// Serve serves until ctx ends, then shuts down gracefully.
func (m *Server) Serve(ctx context.Context) error {
	defer m.end()
	scheme := "http"
	if m.lc != nil {
		go m.lc.watch(m.ctx)
		scheme = "https"
	}
	m.o.Log.Info("management listening", "url", scheme+"://"+m.ln.Addr().String(), "mode", m.o.Settings.Mode)
	m.o.Log.Info("web UI: open " + uiURL(scheme, m.ln.Addr()) + " and sign in with an admin token from 'p2ptls admin token create NAME'")
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(m.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("management server: %w", err)
	case <-ctx.Done():
	}
	m.o.Log.Info("shutting down management listener")
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	if err := m.srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down management server: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startAuto makes sure the CA and a fitting server certificate exist, says
// where the CA is, and keeps the certificate renewed while serving.
func startAuto(ctx context.Context, o Options) (*liveCert, error) {
	names := o.Settings.WantedNames()
	ensure := func() error {
		_, did, err := statemgmt.Ensure(ctx, o.Store, names, time.Now())
		if err != nil {
			return err
		}
		if did != "" {
			o.Log.Info(did)
		}
		return nil
	}
	if err := ensure(); err != nil {
		return nil, err
	}
	_, ca, err := statemgmt.CACertificate(ctx, o.Store)
	if err != nil {
		return nil, err
	}
	o.Log.Info("management CA: give agents this file (MANAGEMENT_CA_FILE) or 'p2ptls agent env'",
		"file", state.Locate(o.Store, statemgmt.CACertFile), "sha256", pki.Fingerprint(ca))
	// The certificate itself follows every step live (the store's change
	// signal reloads server.crt); only this hint is said at start.
	if r, err := statemgmt.ReadRotation(ctx, o.Store); err == nil && r != nil {
		o.Log.Info("management CA rotation open: agents need both CAs ('p2ptls ca export' or 'p2ptls agent env'), see 'p2ptls ca rotate status'",
			"stage", r.Stage, "next_sha256", r.Next, "deadline", r.Deadline)
	}
	lc, err := newLiveCert(func() ([]byte, []byte, error) {
		c, err := o.Store.Read(ctx, statemgmt.ServerCertFile)
		if err != nil {
			return nil, nil, err
		}
		k, err := o.Store.Read(ctx, statemgmt.ServerKeyFile)
		return c, k, err
	}, o.Store.Watch, o.Log)
	if err != nil {
		return nil, fmt.Errorf("load management server certificate: %w", err)
	}
	go func() {
		t := time.NewTicker(renewCheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				renew(o.Log, ensure)
			}
		}
	}()
	return lc, nil
}

// renew runs one renewal check; a panic in it is logged and counted, and
// the next check runs as planned.
func renew(log *slog.Logger, ensure func() error) {
	defer edge.Recover(log, "management certificate renewal")
	if err := ensure(); err != nil {
		log.Error("cannot renew the management server certificate", "err", err)
	}
}

// uiURL is the address a browser on this machine opens for the UI: an
// unspecified listen address ([::]:8443, 0.0.0.0:8443) is not one it can
// open, so it becomes localhost, which the auto server certificate names.
func uiURL(scheme string, addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String() + "/ui/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/ui/"
}
