package acme

import "crypto/x509"

// sameHostsPlain is sameHosts's "yes", found without an allocation, for
// the common case: the certificate's DNS names are the mapping's hosts,
// byte for byte and in order, each a plain ASCII name (no address, no
// space to trim, no case folding that could differ), and it has no IP
// names. A renewal pass decides this for every one of 100k mappings;
// pki's set comparison made two maps each. Anything else is "don't know":
// sameHosts asks pki.
func sameHostsPlain(leaf *x509.Certificate, hosts []string) bool {
	if len(leaf.IPAddresses) != 0 || len(hosts) != len(leaf.DNSNames) {
		return false
	}
	for i, h := range hosts {
		if h != leaf.DNSNames[i] || !plainName(h) {
			return false
		}
	}
	return true
}

// plainName reports whether h is one that pki.ParseNames keeps as it is,
// as a DNS name: non-empty ASCII without spaces or control characters,
// and not an address: no ':' (IPv6) and not only digits and dots (IPv4),
// told without net.ParseIP, whose error allocates.
func plainName(h string) bool {
	if h == "" {
		return false
	}
	other := false // a byte that no IPv4 address has
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c <= ' ' || c >= 0x7f || c == ':':
			return false
		case c != '.' && (c < '0' || c > '9'):
			other = true
		}
	}
	return other
}
