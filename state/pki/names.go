package pki

import (
	"crypto/x509"
	"net"
	"net/netip"
	"strings"

	"github.com/p2pstream/p2ptls/state/hostname"
)

// Names are the subject alternative names of a server certificate.
type Names struct {
	DNS []string
	IPs []net.IP
}

// ParseNames sorts hosts into IP addresses (anything net.ParseIP accepts)
// and DNS names. DNS names are lower-cased; duplicates and empty entries are
// dropped; the first occurrence keeps its place, so the first name, which
// becomes the common name, is the one the user listed first.
func ParseNames(hosts []string) Names {
	var n Names
	seen := make(map[nameKey]bool)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			ip = normalizeIP(ip)
			if k := (nameKey{isIP: true, name: ip.String()}); !seen[k] {
				seen[k] = true
				n.IPs = append(n.IPs, ip)
			}
			continue
		}
		h = strings.ToLower(h)
		if k := (nameKey{name: h}); !seen[k] {
			seen[k] = true
			n.DNS = append(n.DNS, h)
		}
	}
	return n
}

// Equal reports whether cert carries exactly these names as SANs, in any
// order, so callers can tell whether a certificate must be reissued after the
// configured names changed.
func (n Names) Equal(cert *x509.Certificate) bool {
	want, have := n.set(), certNames(cert).set()
	if len(want) != len(have) {
		return false
	}
	for k := range want {
		if !have[k] {
			return false
		}
	}
	return true
}

// Missing returns, DNS names first, the names cert does not carry as SANs.
// Matching is exact: a wildcard SAN does not cover a name here, because the
// question is what the certificate was issued for, not what a client accepts.
func (n Names) Missing(cert *x509.Certificate) []string {
	have := certNames(cert).set()
	var missing []string
	for _, k := range n.keys() {
		if !have[k] {
			missing = append(missing, k.name)
		}
	}
	return missing
}

// certNames returns the SANs of cert as Names.
func certNames(cert *x509.Certificate) Names {
	return Names{DNS: cert.DNSNames, IPs: cert.IPAddresses}
}

// nameKey is a name in canonical form; isIP keeps a DNS SAN that happens to
// read like an address distinct from the IP SAN.
type nameKey struct {
	isIP bool
	name string
}

// keys returns the names in canonical form: DNS names lower-cased, IPs as
// net.IP.String prints them (IPv4-mapped IPv6 as plain IPv4).
func (n Names) keys() []nameKey {
	out := make([]nameKey, 0, len(n.DNS)+len(n.IPs))
	for _, d := range n.DNS {
		out = append(out, nameKey{name: strings.ToLower(d)})
	}
	for _, ip := range n.IPs {
		out = append(out, nameKey{isIP: true, name: normalizeIP(ip).String()})
	}
	return out
}

func (n Names) set() map[nameKey]bool {
	s := make(map[nameKey]bool)
	for _, k := range n.keys() {
		s[k] = true
	}
	return s
}

// normalizeIP returns IPv4 addresses in their 4-byte form, which is how they
// come back from a parsed certificate.
func normalizeIP(ip net.IP) net.IP {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// Covers reports whether cert is accepted for host the way a TLS client
// checks it: an IP host needs that address among the IP SANs (no DNS SAN
// covers an address); a DNS host an exact DNS SAN or a wildcard SAN over
// its leftmost label; a wildcard host needs the wildcard SAN itself. host
// is normalised (hostname.Normalize).
func Covers(cert *x509.Certificate, host string) bool {
	if ip, ok := hostname.ParseIP(host); ok {
		for _, san := range cert.IPAddresses {
			if a, ok := netip.AddrFromSlice(san); ok && a.Unmap() == ip {
				return true
			}
		}
		return false
	}
	for _, san := range cert.DNSNames {
		if hostname.Matches(strings.ToLower(strings.TrimSuffix(san, ".")), host) {
			return true
		}
	}
	return false
}

// SANList lists cert's DNS names, then its IP addresses, for a message.
func SANList(cert *x509.Certificate) []string {
	out := make([]string, 0, len(cert.DNSNames)+len(cert.IPAddresses))
	out = append(out, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		out = append(out, normalizeIP(ip).String())
	}
	return out
}
