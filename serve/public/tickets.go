package public

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/state/challenge"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// Session resumption is bound to the certificate a session was made with.
// crypto/tls resumes any ticket its keys decrypt, whatever the SNI, so a
// session made for one name (or on the fallback) would resume for another
// name on the same listener, whose certificate the client never saw, and
// be routed to that name's upstream. RFC 6066 §3 forbids this for TLS 1.2;
// serve treats it as forbidden for 1.3 as well. Each ticket carries the
// normalised SNI, the mapping id and the fingerprint of the certificate
// that mapping served; a ticket resumes only while the same name still
// selects the same mapping with the same certificate. Otherwise the client
// gets a full handshake, which is what it would get without a ticket.

// bindingPrefix marks serve's binding among a session's Extra values; the
// version lets a later format refuse this one.
const bindingPrefix = "p2ptls-session-binding/1\x00"

// binding is what a session for serverName must carry to resume now; nil
// when no mapping serves the name (the fallback), which never resumes.
func (l *listener) binding(cs tls.ConnectionState) []byte {
	if cs.NegotiatedProtocol == challenge.ALPNProto {
		return nil // validations need the challenge certificate, every time
	}
	e := l.choose(l.view.Load(), cs.ServerName)
	if e == nil {
		return nil
	}
	name := hostname.NormalizeSNI(cs.ServerName)
	id, fp := e.id(), e.fingerprint()
	b := make([]byte, 0, len(bindingPrefix)+len(name)+len(id)+2+len(fp))
	b = append(b, bindingPrefix...)
	b = append(b, name...)
	b = append(b, 0)
	b = append(b, id...)
	b = append(b, 0)
	return append(b, fp[:]...)
}

// wrapSession is tls.Config.WrapSession: the default ticket, with the
// binding added. A session made on the fallback gets the bare prefix, which
// no binding equals.
func (l *listener) wrapSession(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	b := l.binding(cs)
	if b == nil {
		b = []byte(bindingPrefix)
	}
	ss.Extra = append(ss.Extra, b)
	return l.tls.EncryptTicket(cs, ss)
}

// unwrapSession is tls.Config.UnwrapSession: a ticket resumes only if it
// carries the binding of what would be served now. nil, nil is a full
// handshake.
func (l *listener) unwrapSession(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	ss, err := l.tls.DecryptTicket(identity, cs)
	if ss == nil || err != nil {
		return nil, nil
	}
	want := l.binding(cs)
	if want == nil {
		return nil, nil
	}
	for _, x := range ss.Extra {
		if bytes.Equal(x, want) {
			l.hs.add(HandshakeResumed)
			return ss, nil
		}
	}
	return nil, nil
}

// ticketKeyRotation is how often a listener's ticket key is replaced. The
// previous key still decrypts for one more period, so a ticket resumes for
// at most two periods and a key stolen from memory opens at most two days
// of sessions. crypto/tls's automatic keys rotate daily too but are
// accepted for 7 days; setting the keys makes the shorter window explicit.
const ticketKeyRotation = 24 * time.Hour

// ticketKeys are one listener's session ticket keys. They live only in
// memory: a restart or a new listener starts with new keys, and no two
// listeners share one.
type ticketKeys struct {
	mu      sync.Mutex
	current *[32]byte
	rotated time.Time
}

// rotate installs a new key when the current one is older than
// ticketKeyRotation (or there is none), keeping the previous one for
// decryption only.
func (t *ticketKeys) rotate(cfg *tls.Config, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current != nil && now.Sub(t.rotated) < ticketKeyRotation {
		return nil
	}
	k := new([32]byte)
	if _, err := rand.Read(k[:]); err != nil {
		return fmt.Errorf("generate session ticket key: %w", err)
	}
	keys := [][32]byte{*k}
	if t.current != nil {
		keys = append(keys, *t.current)
	}
	cfg.SetSessionTicketKeys(keys)
	t.current, t.rotated = k, now
	return nil
}
