package public

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/serve/sni"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/challenge"
	"github.com/p2pstream/p2ptls/state/pki"
)

// Server timeouts of the public listeners. WriteTimeout stays 0: proxied
// downloads and WebSockets may run long; idle and header timeouts bound
// what a slow client can hold.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
	fallbackValidity  = 30 * 24 * time.Hour
)

// view is what one listener serves at one moment; a reload swaps it whole.
type view struct {
	cfg     state.Listener
	index   *sni.Index[*entry]
	entries []*entry // in mapping order, for reuse across reloads
	files   []*entry // of source "file"
}

// listener is one public HTTPS listener and its optional HTTP listener.
type listener struct {
	view     atomic.Pointer[view]
	fallback *tls.Certificate
	hot      hotSet
	hits     *sni.FallbackCounter
	logLimit *sni.LogLimiter
	store    state.Store
	log      *slog.Logger
	proxies  sync.Map // upstream URL -> *httputil.ReverseProxy

	https, http *http.Server
	addr        net.Addr
}

// start binds the listener's addresses and serves them until stop.
func startListener(v *view, store state.Store, log *slog.Logger) (*listener, error) {
	fb, err := pki.SelfSigned(pki.ParseNames([]string{"p2ptls-fallback.invalid"}), time.Now(), fallbackValidity)
	if err != nil {
		return nil, fmt.Errorf("generate fallback certificate: %w", err)
	}
	fbCert, err := tls.X509KeyPair(fb.CertPEM, fb.KeyPEM)
	if err != nil {
		return nil, err
	}
	l := &listener{fallback: &fbCert, hits: sni.NewFallbackCounter(), logLimit: sni.NewLogLimiter(), store: store,
		log: log.With("listener", v.cfg.Name)}
	l.view.Store(v)

	ln, err := net.Listen("tcp", v.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", v.cfg.Addr, err)
	}
	var httpLn net.Listener
	if v.cfg.HTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", v.cfg.HTTPAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen on %s: %w", v.cfg.HTTPAddr, err)
		}
	}
	l.addr = ln.Addr()
	errLog := slog.NewLogLogger(l.log.Handler(), slog.LevelDebug)
	l.https = &http.Server{
		Handler:           http.HandlerFunc(l.serveHTTPS),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          errLog,
		TLSConfig: &tls.Config{
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2", "http/1.1", challenge.ALPNProto},
			GetCertificate: l.getCertificate,
		},
	}
	go l.serve(func() error { return l.https.ServeTLS(ln, "", "") })
	if httpLn != nil {
		l.http = &http.Server{Handler: http.HandlerFunc(l.serveHTTP), ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, ErrorLog: errLog}
		go l.serve(func() error { return l.http.Serve(httpLn) })
	}
	l.log.Info("public listener started", "addr", v.cfg.Addr, "http_addr", v.cfg.HTTPAddr, "mappings", v.index.Len())
	return l, nil
}

func (l *listener) serve(run func() error) {
	if err := run(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("listener stopped", "err", err)
	}
}

// stop closes the listener; connections in flight get shutdownTimeout.
func (l *listener) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range []*http.Server{l.https, l.http} {
		if srv == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		}()
	}
	wg.Wait()
	l.log.Info("public listener stopped")
}

// getCertificate picks the certificate by SNI: exact, then wildcard, then
// the fallback, which is counted and logged as the deployment failure it is.
func (l *listener) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if challenge.OffersALPN(hello) {
		// A TLS-ALPN-01 validation: only the challenge certificate will do.
		return challenge.TLSALPN01(l.store, hello.ServerName)
	}
	v := l.view.Load()
	if e, ok := v.index.Lookup(hello.ServerName); ok {
		if c, err := e.certificate(l.store, &l.hot); err == nil {
			return c, nil
		}
	}
	l.hits.Record(hello.ServerName)
	if ok, suppressed := l.logLimit.ShouldLog(hello.ServerName, time.Now()); ok {
		l.log.Warn("no certificate mapping matches; served the fallback (a public deployment failure)",
			"sni", hello.ServerName, "fallback", v.cfg.Fallback, "remote", hello.Conn.RemoteAddr().String(), "suppressed", suppressed)
	}
	if v.cfg.Fallback == state.FallbackReject {
		// No certificate and no error makes crypto/tls answer with an
		// unrecognized_name alert.
		return nil, nil
	}
	return l.fallback, nil
}

// proxy returns the reverse proxy for upstream, made once.
func (l *listener) proxy(upstream string) (*httputil.ReverseProxy, error) {
	if p, ok := l.proxies.Load(upstream); ok {
		return p.(*httputil.ReverseProxy), nil
	}
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
			r.Out.Host = r.In.Host // upstreams route by the public host name
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			l.log.Warn("upstream unreachable", "upstream", upstream, "host", r.Host, "err", err)
			http.Error(w, "502 bad gateway: the upstream of this host does not answer", http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
	actual, _ := l.proxies.LoadOrStore(upstream, p)
	return actual.(*httputil.ReverseProxy), nil
}
