package edge

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"
)

// Listen wraps ln with the connection limits of lim: at most lim.MaxConns
// connections open at once (further accepts wait until one closes, so a
// burst queues in the kernel's backlog instead of being refused), and, when
// cfg is not nil, a TLS handshake done off the accept loop that must finish
// within lim.HandshakeTimeout.
//
// The handshake is done here rather than by net/http because net/http
// bounds it only by the smallest of its read and write timeouts, so a
// separate handshake timeout could not be set; and a client that never
// sends a ClientHello must not hold a goroutine past it. Connections whose
// handshake fails or times out are closed without a word: the client sent
// garbage, or nothing. The *tls.Conn handed to net/http has completed its
// handshake, so net/http's own call is a no-op and HTTP/2 works as usual.
//
// A panic during a handshake (in a callback of cfg) is recovered and
// counted, and closes that connection only. Open connections are counted
// in OpenConns.
func Listen(ln net.Listener, cfg *tls.Config, lim Limits, log *slog.Logger) net.Listener {
	return ListenCounting(ln, cfg, lim, log, nil)
}

// ListenCounting is Listen that adds one to failed, when not nil, for
// each handshake that does not complete (an error, a timeout, a client
// that refused the certificate): serve's metrics.
func ListenCounting(ln net.Listener, cfg *tls.Config, lim Limits, log *slog.Logger, failed *atomic.Uint64) net.Listener {
	ln = countingListener{ln}
	if lim.MaxConns > 0 {
		ln = netutil.LimitListener(ln, lim.MaxConns)
	}
	if cfg == nil {
		return ln
	}
	l := &tlsListener{inner: ln, cfg: cfg, log: log, timeout: lim.HandshakeTimeout, failed: failed,
		conns: make(chan net.Conn), work: make(chan net.Conn), done: make(chan struct{}), dead: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	go l.acceptLoop()
	return l
}

type tlsListener struct {
	inner   net.Listener
	cfg     *tls.Config
	log     *slog.Logger
	timeout time.Duration
	conns   chan net.Conn // handshaken connections for Accept
	work    chan net.Conn // accepted connections for an idle worker
	idle    atomic.Int32  // workers waiting on work
	done    chan struct{} // closed by Close
	dead    chan struct{} // closed when acceptLoop ends, err set
	err     error
	failed  *atomic.Uint64 // failed handshakes, or nil

	mu      sync.Mutex
	pending map[net.Conn]struct{} // connections in their handshake, closed by Close
	closed  bool
	once    sync.Once
}

// maxAcceptDelay caps the back-off after temporary accept errors (EMFILE).
const maxAcceptDelay = time.Second

func (l *tlsListener) acceptLoop() {
	defer close(l.dead)
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			//lint:ignore SA1019 net/http retries the same accept errors (EMFILE and the like)
			if errors.As(err, &ne) && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), maxAcceptDelay)
				select {
				case <-time.After(delay):
					continue
				case <-l.done:
					l.err = net.ErrClosed
					return
				}
			}
			l.err = err
			return
		}
		delay = 0
		if !l.track(c) {
			c.Close()
			l.err = net.ErrClosed
			return
		}
		l.dispatch(c)
	}
}

// maxIdleWorkers bounds the handshake workers kept waiting for the next
// connection. A full handshake needs a deep stack (the crypto), which a new
// goroutine grows by copying, several times: about 5 % of a handshake's CPU.
// A worker that stays keeps its grown stack. Enough for the connections
// that arrive at once under steady load; a burst beyond it starts
// goroutines that end after their handshake. A variable so that a
// benchmark can compare against no reuse (0) in the same run.
var maxIdleWorkers int32 = 64

// dispatch hands c to an idle worker, or starts one.
func (l *tlsListener) dispatch(c net.Conn) {
	select {
	case l.work <- c:
	default:
		go l.worker(c)
	}
}

// worker does c's handshake, then the next connection's while fewer than
// maxIdleWorkers others wait, until the listener closes.
func (l *tlsListener) worker(c net.Conn) {
	for {
		l.handshake(c)
		c = nil // an idle worker must not keep the last connection alive
		if l.idle.Add(1) > maxIdleWorkers {
			l.idle.Add(-1)
			return
		}
		if c = l.wait(); c == nil {
			return
		}
	}
}

// idleFrame is the stack an idle worker holds while it waits. The garbage
// collector halves the stack of a goroutine that uses less than a quarter
// of it; a worker waiting in a shallow frame would lose its grown stack at
// every cycle and regrow it, by copying, in its next handshake.
const idleFrame = 8 << 10

// wait is the next connection for an idle worker, nil once the listener
// closes. It waits in a frame of idleFrame bytes (see there).
func (l *tlsListener) wait() net.Conn {
	var frame [idleFrame]byte
	frame[0] = 1
	defer l.idle.Add(-1)
	select {
	case c := <-l.work:
		return keep(c, &frame)
	case <-l.done:
		return nil
	}
}

// keep returns c; taking frame makes the compiler keep wait's frame whole.
//
//go:noinline
func keep(c net.Conn, frame *[idleFrame]byte) net.Conn {
	if frame[0] == 0 {
		return nil
	}
	return c
}

// track registers c as in its handshake; false once the listener is closed.
func (l *tlsListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *tlsListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

func (l *tlsListener) handshake(c net.Conn) {
	handed := false
	defer func() {
		l.untrack(c)
		if !handed {
			c.Close()
		}
	}()
	defer Recover(l.log, "TLS handshake")
	tc := tls.Server(c, l.cfg)
	if l.timeout > 0 {
		c.SetDeadline(time.Now().Add(l.timeout))
	}
	if err := tc.Handshake(); err != nil {
		if l.failed != nil {
			l.failed.Add(1)
		}
		answerPlainHTTP(err)
		return
	}
	c.SetDeadline(time.Time{})
	select {
	case l.conns <- tc:
		handed = true
	case <-l.done:
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.dead:
		return nil, l.err
	}
}

// Close stops accepting and closes the connections still in their
// handshake; those already accepted belong to their server.
func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }

// plainAnswerTimeout bounds writing the 400 to a client that spoke plain
// HTTP to an HTTPS listener.
const plainAnswerTimeout = time.Second

// answerPlainHTTP tells a client that sent a plain HTTP request to an HTTPS
// listener what it did, as http.Server does; other failed handshakes get
// no word.
func answerPlainHTTP(err error) {
	var rhe tls.RecordHeaderError
	if !errors.As(err, &rhe) || rhe.Conn == nil || !looksLikeHTTP(rhe.RecordHeader) {
		return
	}
	_ = rhe.Conn.SetWriteDeadline(time.Now().Add(plainAnswerTimeout))
	_, _ = rhe.Conn.Write([]byte("HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
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
