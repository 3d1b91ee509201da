package public

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/serve/sni"
)

// proxies are one listener's reverse proxies, one per upstream URL, over
// one transport whose timeouts come from the listener's limits.
type proxies struct {
	log       *slog.Logger
	transport *http.Transport
	logLimit  *sni.LogLimiter // upstream failures, by upstream
	byURL     sync.Map        // upstream URL -> *httputil.ReverseProxy
}

func (p *proxies) init(log *slog.Logger, lim edge.Limits) {
	p.log, p.logLimit = log, sni.NewLogLimiter()
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: lim.UpstreamDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = lim.UpstreamDialTimeout
	t.ResponseHeaderTimeout = lim.UpstreamResponseHeaderTimeout
	p.transport = t
}

func (p *proxies) close() { p.transport.CloseIdleConnections() }

// get returns the reverse proxy for upstream, made once.
func (p *proxies) get(upstream string) (*httputil.ReverseProxy, error) {
	if rp, ok := p.byURL.Load(upstream); ok {
		return rp.(*httputil.ReverseProxy), nil
	}
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
			r.Out.Host = r.In.Host // upstreams route by the public host name
		},
		Transport: p.transport,
		// An upstream's own X-Content-Type-Options is its to set; every
		// other response leaving serve gets nosniff (see handler.go).
		ModifyResponse: func(res *http.Response) error {
			if res.Header.Get("X-Content-Type-Options") == "" {
				res.Header.Set("X-Content-Type-Options", "nosniff")
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) { p.failed(w, r, upstream, err) },
		ErrorLog:     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	actual, _ := p.byURL.LoadOrStore(upstream, rp)
	return actual.(*httputil.ReverseProxy), nil
}

// failed answers a request the upstream did not: 504 when it timed out,
// 502 otherwise. A client that went away (an h2 stream reset, a closed
// tab) is not the upstream's failure and is logged at DEBUG only, or an
// attacker's resets would flood the log; real upstream failures are WARN,
// at most one line per upstream a minute.
func (p *proxies) failed(w http.ResponseWriter, r *http.Request, upstream string, err error) {
	if r.Context().Err() != nil || errors.Is(err, context.Canceled) {
		p.log.Debug("client went away before the upstream answered", "upstream", upstream, "host", r.Host, "err", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	code, what := http.StatusBadGateway, "upstream unreachable"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		code, what = http.StatusGatewayTimeout, "upstream timed out"
	}
	if ok, suppressed := p.logLimit.ShouldLog(upstream, time.Now()); ok {
		p.log.Warn(what, "upstream", upstream, "host", r.Host, "status", code, "err", err, "suppressed", suppressed)
	}
	writePage(w, code)
}
