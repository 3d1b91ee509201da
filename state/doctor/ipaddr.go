package doctor

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// IDIPReachable is the check that IP hosts of ACME mappings can be
// validated by the account's CA.
const IDIPReachable = "mappings.ip_reachable"

// ipSANPrefix marks an IP SAN among the names checkCoverage keeps of a
// certificate (coverNames): a DNS SAN that reads like an address covers
// no IP host, so the two must stay apart in one list.
const ipSANPrefix = "ip:"

// coverNames are the names of c that checkCoverage matches hosts against:
// its DNS SANs, then its IP SANs with ipSANPrefix.
func coverNames(c *x509.Certificate) []string {
	if len(c.IPAddresses) == 0 {
		return c.DNSNames
	}
	out := append(make([]string, 0, len(c.DNSNames)+len(c.IPAddresses)), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, ipSANPrefix+a.Unmap().String())
		}
	}
	return out
}

// checkIPReachable warns of a loopback, private or link-local IP host on
// an ACME mapping whose account is at a public CA: the CA connects to the
// address to validate it, and cannot reach such an address. A warning, not
// a failure: the certificate in place keeps serving, and only the CA can
// tell for sure.
func checkIPReachable(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDIPReachable)
	}
	var f findings
	n := 0
	for _, m := range e.cfg.Mappings {
		if m.Source != state.SourceACME {
			continue
		}
		for _, h := range m.Hosts {
			if hostname.IsIP(h) {
				n++
			}
		}
		for _, h := range mappings.UnreachableIPs(e.cfg.ACME.Directory, m) {
			f.warn(fmt.Sprintf("map a public address instead of %s, or register an account at a private ACME CA that can reach it", h),
				"mapping %s: %s is %s, which the public CA at %s cannot connect to, so its validation will fail", m.ID, h, mappings.IPKind(h), e.cfg.ACME.Directory)
		}
	}
	if n == 0 {
		return ok(IDIPReachable, "no ACME mapping has an IP host")
	}
	return f.check(IDIPReachable, fmt.Sprintf("the %s of ACME mappings can be reached by their CA", plural(n, "IP host")))
}
