package management

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/serve/edge"
	"golang.org/x/net/netutil"
)

// Timeouts of the management server that edge.Limits does not carry.
const (
	// readTimeout bounds reading a whole request, body included: an API
	// body is at most maxBodyBytes.
	readTimeout = 30 * time.Second
	// writeTimeout is the management listener's write timeout when
	// Limits.WriteTimeout is 0 (edge leaves it to each kind of listener):
	// answers are small, and POST …/issue extends its own.
	writeTimeout = 60 * time.Second
	// plainAnswerTimeout bounds writing the 400 to a client that spoke
	// plain HTTP to the HTTPS listener.
	plainAnswerTimeout = time.Second
)

// limitsOf is the Limits the management listener applies: o.Limits, or
// the documented defaults when serve gave none.
func limitsOf(o Options) edge.Limits {
	l := o.Limits
	if l == (edge.Limits{}) {
		l = edge.DefaultLimits()
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = writeTimeout
	}
	return l
}

// limitListener caps the open connections of ln at max (0: no cap). A
// connection counts from accept, TLS handshake included, until it closes;
// beyond the cap, new connections wait in the kernel's backlog.
func limitListener(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, max)
}

// tlsListener hands http.Server only connections whose TLS handshake
// completed within timeout of accept (0: no bound). net/http bounds the
// handshake only by the smallest of its read and write timeouts, so a
// client that never sends a ClientHello would hold its connection as long
// as a slow request may take; here the two are separate limits.
type tlsListener struct {
	net.Listener // the raw (counted) listener
	cfg          *tls.Config
	timeout      time.Duration
	log          *slog.Logger

	ready     chan net.Conn // handshaken connections
	done      chan struct{} // closed by Close
	closeOnce sync.Once
	failed    chan struct{} // closed when the raw listener fails for good
	err       error         // why; set before failed is closed
}

func newTLSListener(ln net.Listener, cfg *tls.Config, timeout time.Duration, log *slog.Logger) *tlsListener {
	l := &tlsListener{Listener: ln, cfg: cfg, timeout: timeout, log: log,
		ready: make(chan net.Conn), done: make(chan struct{}), failed: make(chan struct{})}
	go l.acceptLoop()
	return l
}

// acceptLoop accepts raw connections and handshakes each in its own
// goroutine, so that a slow client never delays another.
func (l *tlsListener) acceptLoop() {
	defer edge.Recover(l.log, "management accept loop")
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.err = err
				close(l.failed)
				return
			}
			// Out of file descriptors and the like: wait a little and
			// retry, as http.Server does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("management listener cannot accept a connection; retrying", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	handed := false
	defer func() {
		if !handed { // failed, or recovered from a panic: free the slot
			c.Close()
		}
	}()
	defer edge.Recover(l.log, "management TLS handshake")
	ctx := context.Background()
	if l.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	tc := tls.Server(c, l.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		var rhe tls.RecordHeaderError
		if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
			// As http.Server does, tell a client that spoke plain HTTP.
			_ = rhe.Conn.SetWriteDeadline(time.Now().Add(plainAnswerTimeout))
			_, _ = rhe.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n" +
				"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
		}
		l.log.Debug("management TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	select {
	case l.ready <- tc:
		handed = true
	case <-l.done:
	}
}

// looksLikeHTTP reports whether a TLS record header is the start of a
// plain HTTP request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO", "DELET", "PATCH", "CONNE":
		return true
	}
	return false
}

// Accept returns the next connection whose handshake completed.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.failed:
		return nil, l.err
	}
}

// Close stops accepting; connections still in their handshake are closed
// when it ends.
func (l *tlsListener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}
