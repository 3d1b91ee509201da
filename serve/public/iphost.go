package public

import (
	"net"
	"net/netip"
	"strings"
)

// chooseAt is choose for a connection to local: when serverName selects
// nothing and is empty (no SNI) or an IP literal (which RFC 6066 forbids
// but some clients send), the mapping whose host is that address serves:
// the local address the client connected to, or the literal. A name that
// selects a mapping costs what choose costs; only a miss looks further.
// conn is nil when the caller has none.
func (l *listener) chooseAt(v *view, serverName string, conn localAddrer) *entry {
	if e := l.choose(v, serverName); e != nil {
		return e
	}
	var local net.Addr
	if conn != nil && serverName == "" {
		local = conn.LocalAddr()
	}
	if host, ok := ipHost(serverName, local); ok {
		return l.choose(v, host)
	}
	return nil
}

// localAddrer is the part of a net.Conn chooseAt needs.
type localAddrer interface{ LocalAddr() net.Addr }

// addrConn is a localAddrer for an address known already (a request's).
type addrConn struct{ a net.Addr }

func (c addrConn) LocalAddr() net.Addr { return c.a }

// ipHost is the IP host, in the form mapping hosts are stored in, that a
// handshake with serverName on a connection to local asks for.
func ipHost(serverName string, local net.Addr) (string, bool) {
	if serverName == "" {
		ta, ok := local.(*net.TCPAddr)
		if !ok {
			return "", false
		}
		ip, ok := netip.AddrFromSlice(ta.IP)
		if !ok {
			return "", false
		}
		// A dual-stack listener on "::" sees IPv4 clients as ::ffff:a.b.c.d;
		// a link-local address carries the interface as its zone.
		return ip.Unmap().WithZone("").String(), true
	}
	s := strings.TrimSuffix(strings.TrimPrefix(serverName, "["), "]")
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return "", false
	}
	host := ip.Unmap().WithZone("").String()
	return host, host != serverName // the same text was asked already
}
