package challenge

import (
	"net/netip"
	"strings"
)

// For a TLS-ALPN-01 validation of an IP identifier the CA sends no IP in
// the SNI (RFC 6066 forbids it) but the address's reverse-DNS name (RFC
// 8738 section 6): "4.3.2.1.in-addr.arpa" for 1.2.3.4, the 32 nibbles of
// an IPv6 address in reverse under "ip6.arpa". lego's Present gets the IP,
// so the published certificate is filed under the IP, and the answerer
// maps the name back.

const (
	suffix4 = ".in-addr.arpa"
	suffix6 = ".ip6.arpa"
)

// ReverseName is ip's reverse-DNS name, without a trailing dot.
func ReverseName(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		return netip.AddrFrom4([4]byte{a[3], a[2], a[1], a[0]}).String() + suffix4
	}
	const hexDigits = "0123456789abcdef"
	a := ip.As16()
	b := make([]byte, 0, 64+len(suffix6))
	for i := len(a) - 1; i >= 0; i-- {
		b = append(b, hexDigits[a[i]&0xf], '.', hexDigits[a[i]>>4], '.')
	}
	return string(append(b[:len(b)-1], suffix6...))
}

// IPFromReverse is the address whose reverse-DNS name is name (any case,
// trailing dot or not); false when name is no complete reverse name of one
// address.
func IPFromReverse(name string) (netip.Addr, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if rest, ok := strings.CutSuffix(name, suffix4); ok {
		parts := strings.Split(rest, ".")
		if len(parts) != 4 {
			return netip.Addr{}, false
		}
		ip, err := netip.ParseAddr(parts[3] + "." + parts[2] + "." + parts[1] + "." + parts[0])
		return ip, err == nil
	}
	rest, ok := strings.CutSuffix(name, suffix6)
	if !ok || len(rest) != 63 {
		return netip.Addr{}, false
	}
	var a [16]byte
	for i := 0; i < 32; i++ {
		c := rest[2*i]
		if i < 31 && rest[2*i+1] != '.' {
			return netip.Addr{}, false
		}
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		default:
			return netip.Addr{}, false
		}
		// Nibble i counts from the least significant end.
		if i%2 == 0 {
			a[15-i/2] |= v
		} else {
			a[15-i/2] |= v << 4
		}
	}
	return netip.AddrFrom16(a), true
}
