package hostname

import (
	"fmt"
	"net/netip"
	"strings"
)

// IP-address mapping hosts (RFC 8738 certificates). The stored form is
// the one netip prints: dotted-decimal IPv4, RFC 5952 IPv6 (lower-case,
// the longest run of zero groups compressed), no brackets, no zone. An
// IPv4-mapped IPv6 address ("::ffff:192.0.2.1") is refused rather than
// rewritten: a certificate, a CA and a client treat it as the IPv4
// address, so the operator should write that.

// canonicalIP reports, without allocating, whether host is an IP address
// in the form Normalize stores: loading 100k mappings checks every host.
func canonicalIP(host string) bool {
	if host == "" || len(host) > len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255") {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ipProblem(ip) != "" {
		return false
	}
	var buf [64]byte
	return string(ip.AppendTo(buf[:0])) == host
}

// ipProblem is why a parsed address cannot be a mapping host, "" when it
// can. The zone is checked by the caller, which still has the text.
func ipProblem(ip netip.Addr) string {
	switch {
	case ip.Zone() != "":
		return "zone"
	case ip.Is4In6():
		return "mapped"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "multicast"
	}
	return ""
}

// normalizeIP handles a host that is, or plainly means to be, an IP
// address: s is host trimmed and without a trailing dot. ok is false when
// s is no IP at all and should be checked as a DNS name.
func normalizeIP(host, s string) (_ string, ok bool, _ error) {
	if inner, cut := strings.CutPrefix(s, "["); cut {
		if inner, cut = strings.CutSuffix(inner, "]"); cut && !strings.ContainsAny(inner, "[]") {
			if _, err := netip.ParseAddr(inner); err == nil || strings.Contains(inner, ":") {
				s = inner // "[::1]" is ::1; "[fe80::1%eth0]" gets the zone message
			}
		}
	}
	if rest, wild := strings.CutPrefix(s, "*."); wild {
		if _, err := netip.ParseAddr(rest); err == nil || allNumeric(rest) {
			return "", true, fmt.Errorf("host %q is a wildcard over an IP address; an IP certificate names each address exactly, so give the address itself, e.g. %q", host, rest)
		}
		return "", false, nil
	}
	if addr, zone, found := strings.Cut(s, "%"); found {
		if _, err := netip.ParseAddr(addr); err == nil {
			return "", true, fmt.Errorf("host %q has the zone %q, which no certificate can name; give the address without it, e.g. %q", host, "%"+zone, addr)
		}
	}
	if prefix, err := netip.ParsePrefix(s); err == nil {
		return "", true, fmt.Errorf("host %q is a network (CIDR); a certificate names single addresses, so give each address as its own host, e.g. %q", host, prefix.Addr().String())
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		if allNumeric(s) {
			return "", true, ipv4Error(host, s)
		}
		return "", false, nil
	}
	switch ipProblem(ip) {
	case "mapped":
		return "", true, fmt.Errorf("host %q is an IPv4-mapped IPv6 address; certificates and clients treat it as the IPv4 address, so give %q", host, ip.Unmap().String())
	case "unspecified":
		return "", true, fmt.Errorf("host %q is the unspecified address, which no client connects to; give the address clients use", host)
	case "multicast":
		return "", true, fmt.Errorf("host %q is a multicast or broadcast address, which no TLS client connects to; give the address clients use", host)
	}
	return ip.String(), true, nil
}

// ipv4Error explains a dotted-numeric s that netip refused: leading zeros
// (inet_aton and many tools read "010" as octal 8), too few parts
// ("127.1", which they read as 127.0.0.1), or a part out of range.
func ipv4Error(host, s string) error {
	parts := strings.Split(s, ".")
	for _, p := range parts {
		if len(p) > 1 && p[0] == '0' {
			return fmt.Errorf("host %q has the part %q with a leading zero, which some software reads as octal; write the address without leading zeros", host, p)
		}
	}
	if len(parts) < 4 {
		return fmt.Errorf("host %q is a shortened IPv4 address, which software reads differently; write all four parts, e.g. \"127.0.0.1\"", host)
	}
	return fmt.Errorf("host %q is not a valid IPv4 address; write four numbers from 0 to 255 separated by dots", host)
}

// allNumeric reports whether s is dot-separated decimal digits only, the
// shape of an IPv4 address (and never of a valid DNS host, whose last
// label is not numeric).
func allNumeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789.") == "" && strings.Trim(s, ".") != ""
}

// IsIP reports whether the normalised host h is an IP address.
func IsIP(h string) bool {
	if !ipShaped(h) {
		return false
	}
	_, err := netip.ParseAddr(h)
	return err == nil
}

// ipShaped is a cheap first test for IsIP and the wildcard rules: a
// normalised DNS name has no ":" and never ends in a numeric label.
func ipShaped(h string) bool {
	if strings.IndexByte(h, ':') >= 0 {
		return true
	}
	last := h[strings.LastIndexByte(h, '.')+1:]
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// IPShaped reports whether the normalised name has an IP address's shape
// (a ":" or a numeric last label), which no wildcard covers: the check an
// SNI lookup makes before it tries the wildcard.
func IPShaped(name string) bool { return ipShaped(name) }

// ParseIP returns the address of the normalised IP host h.
func ParseIP(h string) (netip.Addr, bool) {
	if !ipShaped(h) {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(h)
	return ip, err == nil
}

// NonPublicIP reports whether ip is an address no public CA can reach:
// loopback, private (RFC 1918, RFC 4193), link-local, CGNAT (RFC 6598) or
// documentation ranges. Let's Encrypt refuses such identifiers.
func NonPublicIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
		return true
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT, RFC 6598
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation, RFC 5737
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking, RFC 2544
	netip.MustParsePrefix("2001:db8::/32"),   // documentation, RFC 3849
}
