package mappings

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// PublicDirectory reports whether the ACME directory URL dir (or one of
// the names "letsencrypt", "letsencrypt-staging") belongs to a public CA:
// any directory whose host is not itself loopback, private or "localhost".
// A public CA validates an IP identifier by connecting to that address,
// so a loopback or private address can never pass there.
func PublicDirectory(dir string) bool {
	if dir == "" {
		return false // no account yet: nothing to judge by
	}
	u, err := url.Parse(dir)
	if err != nil || u.Host == "" {
		return !strings.Contains(dir, "/") // an alias such as "letsencrypt"
	}
	h := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return false
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		return !hostname.NonPublicIP(ip)
	}
	return true
}

// UnreachableIPs lists the IP hosts of the ACME mapping m that a public
// CA at directory cannot validate (loopback, private, link-local …); none
// when directory is not a public CA's or m is not ACME.
func UnreachableIPs(directory string, m state.Mapping) []string {
	if m.Source != state.SourceACME || !PublicDirectory(directory) {
		return nil
	}
	var out []string
	for _, h := range m.Hosts {
		if ip, ok := hostname.ParseIP(h); ok && hostname.NonPublicIP(ip) {
			out = append(out, h)
		}
	}
	return out
}

// ipWarnings are the warnings Add gives for m's unreachable IP hosts: a
// warning, not a refusal, since the directory may be reachable from where
// the address is (a CA inside the same network) or change before issuing.
func ipWarnings(directory string, m state.Mapping) []string {
	var out []string
	for _, h := range UnreachableIPs(directory, m) {
		out = append(out, fmt.Sprintf("mapping %q: %s is %s, which the public CA at %s cannot connect to, so its validation will fail; map a public address, or use a private ACME CA",
			m.ID, h, IPKind(h), directory))
	}
	return out
}

// IPKind names the kind of a non-public IP host for a message.
func IPKind(h string) string {
	ip, _ := hostname.ParseIP(h)
	switch {
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsLinkLocalUnicast():
		return "a link-local address"
	case ip.IsPrivate():
		return "a private address"
	}
	return "not a public address"
}

// ipv6ID derives a mapping id from an IPv6 host, which has ":" where an
// id cannot: "2001:db8::1" → "ipv6-2001-db8--1".
func ipv6ID(h string) string {
	return cutID("ipv6-"+strings.ReplaceAll(h, ":", "-"), maxIDLen)
}
