package public

import (
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// What serve/metrics reads of the public listeners. The handshake path
// pays one atomic add per handshake (handshakeCounts.add); everything else
// here runs when metrics asks.

// Handshake results, the values of p2ptls_handshakes_total's result label.
// Selection and resumption are counted where crypto/tls asks serve, a
// failure where the handshake ends: a client that refuses the certificate
// it was offered counts as "ok" (or "fallback") and as "failed".
const (
	// HandshakeOK: a mapping's certificate was selected (a full handshake;
	// TLS 1.2 selects one before it resumes, too).
	HandshakeOK = iota
	// HandshakeResumed: a session ticket was accepted.
	HandshakeResumed
	// HandshakeFallback: no mapping had a usable certificate for the name,
	// and the fallback certificate was served.
	HandshakeFallback
	// HandshakeRejected: the same with fallback "reject": the client got
	// an unrecognized_name alert.
	HandshakeRejected
	// HandshakeChallenge: an ACME TLS-ALPN-01 validation.
	HandshakeChallenge
	// HandshakeFailed: the handshake did not complete (an error, a
	// timeout, a client that refused the certificate).
	HandshakeFailed
	handshakeResults
)

// HandshakeResults names the results, by their constants.
var HandshakeResults = [handshakeResults]string{
	HandshakeOK: "ok", HandshakeResumed: "resumed", HandshakeFallback: "fallback",
	HandshakeRejected: "rejected", HandshakeChallenge: "challenge", HandshakeFailed: "failed",
}

// handshakeCounts are one listener's handshakes by result, since it opened.
type handshakeCounts [handshakeResults]atomic.Uint64

func (h *handshakeCounts) add(result int) { h[result].Add(1) }

// reloadCounts are the reload outcomes, kept beside s.reloads and
// s.lastErr, which need s.mu: a full reload at 100k mappings holds it for
// seconds, and a scrape must not wait for one.
type reloadCounts struct {
	ok, failed atomic.Uint64
	lastOK     atomic.Int64 // Unix nanoseconds of the last reload that succeeded, or 0
}

func (r *reloadCounts) note(err error, at time.Time) {
	if err != nil {
		r.failed.Add(1)
		return
	}
	r.ok.Add(1)
	r.lastOK.Store(at.UnixNano())
}

// Reloads are the outcomes of serve's reloads of the state since it
// started, and when the last one that succeeded ended (serve's start when
// none did yet: its first load succeeded, or it would not run).
type Reloads struct {
	OK, Failed    uint64
	LastSuccessAt time.Time
}

// Reloads reads the reload outcomes without waiting for a reload.
func (s *Server) Reloads() Reloads {
	r := Reloads{OK: s.rc.ok.Load(), Failed: s.rc.failed.Load(), LastSuccessAt: s.started}
	if ns := s.rc.lastOK.Load(); ns != 0 {
		r.LastSuccessAt = time.Unix(0, ns).UTC()
	}
	return r
}

// ListenerCounts is a handle on one open listener's counters; its reads
// are atomic loads, so a scrape can keep it and read it while handshakes
// run.
type ListenerCounts struct {
	Name string
	l    *listener
}

// Handshakes is the listener's handshake count of each result (indexed by
// the Handshake constants).
func (c ListenerCounts) Handshakes() (n [handshakeResults]uint64) {
	for i := range n {
		n[i] = c.l.hs[i].Load()
	}
	return n
}

// FallbackHandshakes is the listener's count of fallback handshakes
// (served and rejected), as status reports it.
func (c ListenerCounts) FallbackHandshakes() int64 { return c.l.hits.Total() }

// Metrics is what metrics reads of the listeners open now: their counters,
// and fn called with each served mapping's listener and what the mappings
// package needs to find its files (id, source, the files of a "file"
// mapping). fn runs after the server's lock is released, over views that
// no reload changes (a reload swaps them whole), so a long walk holds up
// no reload; fn may be nil.
func (s *Server) Metrics(fn func(listener string, m state.Mapping)) []ListenerCounts {
	s.mu.Lock()
	counts := make([]ListenerCounts, 0, len(s.listeners))
	views := make([]*view, 0, len(s.listeners))
	for name, l := range s.listeners {
		counts = append(counts, ListenerCounts{Name: name, l: l})
		views = append(views, l.view.Load())
	}
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil
	}
	if fn != nil {
		for _, v := range views {
			for _, e := range v.entries.all() {
				fn(v.cfg.Name, e.mapping())
			}
		}
	}
	return counts
}
