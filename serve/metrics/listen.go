package metrics

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state/fault"
)

// Plain is the optional plain-HTTP metrics listener (METRICS_LISTEN), for
// scrapers on a trusted network: GET /metrics without a token, nothing
// else.
type Plain struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

const (
	// plainShutdown bounds a scrape in flight at shutdown.
	plainShutdown = 5 * time.Second
	// plainWriteTimeout bounds writing one scrape when the limits set
	// none (public listeners' default): as management's.
	plainWriteTimeout = 60 * time.Second
)

// answerPanic answers a scrape whose handler panicked before it wrote.
func answerPanic(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "internal error: the scrape failed unexpectedly; serve keeps running", http.StatusInternalServerError)
}

// ListenPlain binds addr (validated) for h, bounded by lim as every
// listener of serve is.
func ListenPlain(addr string, h http.Handler, lim edge.Limits, log *slog.Logger) (*Plain, error) {
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fault.Failf("choose a free address with METRICS_LISTEN, or stop what holds it",
			"cannot listen on METRICS_LISTEN %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	p := &Plain{ln: edge.Listen(raw, nil, lim, log), log: log}
	p.srv = &http.Server{
		Handler:           edge.Guard(log, "metrics handler", mux, answerPanic),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		WriteTimeout:      cmp.Or(lim.WriteTimeout, plainWriteTimeout),
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	// Logged here, before management's "listening", which tells a reader
	// of the log that serve is up.
	log.Info("metrics listening (plain HTTP, no token)", "url", "http://"+p.ln.Addr().String()+"/metrics")
	return p, nil
}

// Addr is the bound address.
func (p *Plain) Addr() net.Addr { return p.ln.Addr() }

// Serve answers until ctx ends, then shuts down gracefully.
func (p *Plain) Serve(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("metrics listener stopped", "err", err)
		}
	}()
	select {
	case <-ctx.Done():
	case <-done:
		return
	}
	sctx, cancel := context.WithTimeout(context.Background(), plainShutdown)
	defer cancel()
	if err := p.srv.Shutdown(sctx); err != nil {
		p.srv.Close()
	}
	<-done
}

// Close stops the listener before Serve (a start that failed later).
func (p *Plain) Close() { p.ln.Close() }
