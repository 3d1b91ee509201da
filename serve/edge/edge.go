// Package edge holds what every listener of serve shares to stay up at the
// edge: the connection limits and timeouts, and the recovery of panics, so
// that one input never takes serve down.
package edge

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Limits bound what one client can hold on a listener. The zero value of a
// field means "no limit"; DefaultLimits gives the documented defaults.
type Limits struct {
	// HandshakeTimeout bounds the TLS handshake from accept.
	HandshakeTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxConns caps the open connections of one listener.
	MaxConns int
	// UpstreamDialTimeout and UpstreamResponseHeaderTimeout bound the
	// reverse proxy's wait for an upstream (then 504).
	UpstreamDialTimeout           time.Duration
	UpstreamResponseHeaderTimeout time.Duration
}

// DefaultLimits are the documented defaults of every listener.
func DefaultLimits() Limits {
	return Limits{
		HandshakeTimeout:              10 * time.Second,
		ReadHeaderTimeout:             10 * time.Second,
		IdleTimeout:                   2 * time.Minute,
		WriteTimeout:                  0, // decided per listener kind; see README
		MaxHeaderBytes:                64 << 10,
		MaxConns:                      10000,
		UpstreamDialTimeout:           10 * time.Second,
		UpstreamResponseHeaderTimeout: 60 * time.Second,
	}
}

var panics atomic.Int64

// Panics is how many panics serve recovered from since it started.
func Panics() int64 { return panics.Load() }

// Recover must be deferred directly (defer edge.Recover(log, "reload")): it
// stops a panic, logs it with its stack at ERROR and counts it, so the loop
// or handler it guards fails alone and serve keeps running.
func Recover(log *slog.Logger, what string) {
	if r := recover(); r != nil {
		record(log, what, r)
	}
}

func record(log *slog.Logger, what string, r any) {
	panics.Add(1)
	log.Error("recovered from a panic; serve keeps running", "in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

// Guard wraps an HTTP handler so that a panic in it is recovered (logged
// and counted as by Recover) and answered by answer, when nothing of the
// response was written yet; when part of it was, the connection is cut
// (http.ErrAbortHandler), the only way to tell the client the answer is
// incomplete. http.ErrAbortHandler itself is passed on uncounted: it is how
// a handler (the reverse proxy, for one) aborts a response on purpose, and
// net/http handles it quietly.
func Guard(log *slog.Logger, what string, next http.Handler, answer func(http.ResponseWriter, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tw := &trackingWriter{ResponseWriter: w}
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if p == http.ErrAbortHandler {
				panic(p)
			}
			record(log, what+" "+r.Method+" "+r.URL.Path, p)
			if tw.wrote {
				panic(http.ErrAbortHandler)
			}
			answer(w, r)
		}()
		next.ServeHTTP(tw, r)
	})
}

// trackingWriter records whether the handler began its answer. Unwrap
// keeps http.ResponseController (flushing, hijacking for WebSockets, write
// deadlines) working through it.
type trackingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (t *trackingWriter) WriteHeader(code int) {
	t.wrote = true
	t.ResponseWriter.WriteHeader(code)
}

func (t *trackingWriter) Write(b []byte) (int, error) {
	t.wrote = true
	return t.ResponseWriter.Write(b)
}

func (t *trackingWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
