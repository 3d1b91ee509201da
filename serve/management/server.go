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

// Timeouts of the management server: generous for an API, short enough that
// idle or slow clients cannot pile up.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
	// renewCheck is how often auto mode checks the server certificate's expiry.
	renewCheck = 12 * time.Hour
)

// Options configure the management server.
type Options struct {
	Settings statemgmt.Settings // validated
	Store    *state.Dir
	Log      *slog.Logger
	// Status reports what serve runs, for GET /api/v1/status.
	Status func() *runstatus.Status
	// DNSResolvers check DNS-01 propagation when the API issues a
	// certificate (POST /api/v1/mappings/{id}/issue); empty means
	// p2ptls.toml's acme.dns_resolvers, then the system's.
	DNSResolvers []string
	Limits       edge.Limits // timeouts and caps of the listener (serve flags)
}

// Server is a management listener that is bound and ready to serve.
type Server struct {
	o   Options
	srv *http.Server
	ln  net.Listener
	lc  *liveCert // nil in mode off
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
		}, o.Log)
	case statemgmt.ModeOff:
		o.Log.Warn("management TLS is off: the management API is served over plain HTTP (MANAGEMENT_ALLOW_INSECURE_HTTP=true); use this only for isolated development or behind a trusted TLS terminator")
	}
	if err != nil {
		end()
		return nil, err
	}
	if m.ln, err = net.Listen("tcp", o.Settings.Listen); err != nil {
		end()
		return nil, fault.Failf("choose a free address with MANAGEMENT_LISTEN, or stop what holds it",
			"cannot listen on MANAGEMENT_LISTEN %s: %v", o.Settings.Listen, err)
	}
	m.srv = &http.Server{
		Handler:           newHandler(o),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	if m.lc != nil {
		m.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: m.lc.getCertificate}
	}
	return m, nil
}

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
	errc := make(chan error, 1)
	go func() {
		if m.lc != nil {
			errc <- m.srv.ServeTLS(m.ln, "", "")
		} else {
			errc <- m.srv.Serve(m.ln)
		}
	}()
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
	_, ca, err := statemgmt.CACertificate(o.Store)
	if err != nil {
		return nil, err
	}
	o.Log.Info("management CA: give agents this file (MANAGEMENT_CA_FILE) or 'p2ptls agent env'",
		"file", o.Store.Root()+"/"+statemgmt.CACertFile, "sha256", pki.Fingerprint(ca))
	lc, err := newLiveCert(func() ([]byte, []byte, error) {
		c, err := o.Store.Read(statemgmt.ServerCertFile)
		if err != nil {
			return nil, nil, err
		}
		k, err := o.Store.Read(statemgmt.ServerKeyFile)
		return c, k, err
	}, o.Log)
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
				if err := ensure(); err != nil {
					o.Log.Error("cannot renew the management server certificate", "err", err)
				}
			}
		}
	}()
	return lc, nil
}
