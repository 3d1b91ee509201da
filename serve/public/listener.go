package public

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/serve/sni"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/challenge"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/pki"
)

const (
	shutdownTimeout  = 10 * time.Second
	fallbackValidity = 30 * 24 * time.Hour
)

// testHook, when a test sets it, is called at the named places ("handler",
// "certificate", "poll") so that a test can make them panic. Production
// code never sets it.
var testHook func(where string)

// view is what one listener serves at one moment; a reload swaps it whole.
type view struct {
	cfg     state.Listener
	index   *sni.Index[*entry]
	entries []*entry // every mapping's entry, for the count and a full reload
	files   []*entry // of source "file"
	// byWildcard is what serve saw while this view was served: exact
	// hosts whose mapping had no usable certificate, served by a wildcard.
	// A reload starts it afresh, so it follows certificates that arrive.
	byWildcard wildcardSeen
}

// wildcardSeen maps an exact host to the id of the wildcard mapping that
// served it. It holds at most sni.MaxNames hosts, and only hosts of
// mappings, never names a client made up.
type wildcardSeen struct {
	m sync.Map // host -> wildcard mapping id
	n atomic.Int64
}

func (w *wildcardSeen) note(host, id string) {
	if _, ok := w.m.Load(host); ok || w.n.Load() >= sni.MaxNames {
		return
	}
	if _, loaded := w.m.LoadOrStore(host, id); !loaded {
		w.n.Add(1)
	}
}

func (w *wildcardSeen) snapshot() map[string]string {
	m := map[string]string{}
	w.m.Range(func(k, v any) bool {
		m[k.(string)] = v.(string)
		return true
	})
	return m
}

// listener is one public HTTPS listener and its optional HTTP listener.
type listener struct {
	view     atomic.Pointer[view]
	fallback *tls.Certificate
	hot      hotSet
	hits     *sni.FallbackCounter
	hs       handshakeCounts // by result, for metrics (see metricsview.go)
	logLimit *sni.LogLimiter // fallback handshakes, by SNI
	pageLog  *sni.LogLimiter // 503 for mappings without upstream, by mapping
	store    state.Store
	log      *slog.Logger
	limits   edge.Limits
	proxy    proxies
	tls      *tls.Config
	tickets  ticketKeys

	https, http *http.Server
	// addr and httpAddr are where the sockets are bound (httpAddr nil
	// without an HTTP listener): the configured addresses with the listen
	// host applied, resolved.
	addr, httpAddr net.Addr
}

// startListener binds the listener's addresses, with o.ListenHost applied,
// and serves them until stop.
func startListener(v *view, o Options) (*listener, error) {
	fb, err := pki.SelfSigned(pki.ParseNames([]string{"p2ptls-fallback.invalid"}), time.Now(), fallbackValidity)
	if err != nil {
		return nil, fmt.Errorf("generate fallback certificate: %w", err)
	}
	fbCert, err := tls.X509KeyPair(fb.CertPEM, fb.KeyPEM)
	if err != nil {
		return nil, err
	}
	lim := o.Limits
	l := &listener{fallback: &fbCert, hits: sni.NewFallbackCounter(), logLimit: sni.NewLogLimiter(), pageLog: sni.NewLogLimiter(),
		store: o.Store, log: o.Log.With("listener", v.cfg.Name), limits: lim}
	l.proxy.init(l.log, lim)
	l.view.Store(v)
	l.tls = edge.TLSConfig()
	l.tls.NextProtos = []string{"h2", "http/1.1", challenge.ALPNProto}
	l.tls.GetCertificate = l.getCertificate
	l.tls.WrapSession = l.wrapSession
	l.tls.UnwrapSession = l.unwrapSession
	if err := l.tickets.rotate(l.tls, time.Now()); err != nil {
		return nil, err
	}

	ln, err := bind(v.cfg.Name, "address", v.cfg.Addr, rebind(v.cfg.Addr, o.ListenHost), o.ListenHost)
	if err != nil {
		return nil, err
	}
	var httpLn net.Listener
	if v.cfg.HTTPAddr != "" {
		if httpLn, err = bind(v.cfg.Name, "HTTP address", v.cfg.HTTPAddr, rebind(v.cfg.HTTPAddr, o.ListenHost), o.ListenHost); err != nil {
			ln.Close()
			return nil, err
		}
		l.httpAddr = httpLn.Addr()
	}
	l.addr = ln.Addr()
	l.https = l.server("public HTTPS handler", l.serveHTTPS)
	tlsLn := edge.ListenCounting(ln, l.tls, lim, l.log, &l.hs[HandshakeFailed])
	go l.serve(func() error { return l.https.Serve(tlsLn) })
	if httpLn != nil {
		l.http = l.server("public HTTP handler", l.serveHTTP)
		plainLn := edge.Listen(httpLn, nil, lim, l.log)
		go l.serve(func() error { return l.http.Serve(plainLn) })
	}
	// addr is where the listener is bound, as its socket says; a rebound
	// one also names what the configuration says.
	attrs := []any{"addr", l.addr.String(), "http_addr", l.boundHTTP(), "mappings", v.index.Len()}
	if o.ListenHost != "" {
		attrs = append(attrs, "configured_addr", v.cfg.Addr, "configured_http_addr", v.cfg.HTTPAddr, "listen_host", o.ListenHost)
	}
	l.log.Info("public listener started", attrs...)
	return l, nil
}

// boundHTTP is the address the HTTP listener is bound to, "" without one.
func (l *listener) boundHTTP() string {
	if l.httpAddr == nil {
		return ""
	}
	return l.httpAddr.String()
}

// server is an http.Server with the listener's limits, its handler guarded
// by edge.Guard. Its TLSConfig stays nil: edge.Listen hands it connections
// whose handshake is done, and net/http then sets up HTTP/2 by itself.
func (l *listener) server(what string, h http.HandlerFunc) *http.Server {
	return &http.Server{
		Handler:           edge.Guard(l.log, what, h, answerPanic),
		ReadHeaderTimeout: l.limits.ReadHeaderTimeout,
		IdleTimeout:       l.limits.IdleTimeout,
		WriteTimeout:      l.limits.WriteTimeout,
		MaxHeaderBytes:    l.limits.MaxHeaderBytes,
		// Client misbehaviour (bad requests, resets) is noise at the edge.
		ErrorLog: slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
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
	l.proxy.close()
	l.log.Info("public listener stopped")
}

// choose is the mapping that serves serverName: exact with a usable
// certificate, else wildcard with one, else none (the fallback). The
// handshake, the resumption check and the routing of each request all ask
// it, so a request goes where the certificate it was served came from.
func (l *listener) choose(v *view, serverName string) *entry {
	e, ok, skipped := v.index.Select(serverName, l.usable)
	if !ok {
		return nil
	}
	if skipped {
		v.byWildcard.note(hostname.NormalizeSNI(serverName), e.id())
	}
	return e
}

// usable reports whether e's certificate loads; it reads the files once.
func (l *listener) usable(e *entry) bool { return e.load(l.store) == nil }

// getCertificate picks the certificate by SNI, or by the local address
// without one (see chooseAt); the fallback is counted and logged as the
// deployment failure it is.
func (l *listener) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx := hello.Context()
	defer edge.Recover(l.log, "public certificate selection")
	if testHook != nil {
		testHook("certificate")
	}
	if challenge.OffersALPN(hello) {
		// A TLS-ALPN-01 validation: only the challenge certificate will do.
		l.hs.add(HandshakeChallenge)
		return challenge.TLSALPN01(ctx, l.store, hello.ServerName)
	}
	v := l.view.Load()
	if e := l.chooseAt(v, hello.ServerName, hello.Conn); e != nil {
		if c, err := e.certificate(l.store, &l.hot); err == nil {
			l.hs.add(HandshakeOK)
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
		l.hs.add(HandshakeRejected)
		return nil, nil
	}
	l.hs.add(HandshakeFallback)
	return l.fallback, nil
}
