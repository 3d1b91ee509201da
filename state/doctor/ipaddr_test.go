package doctor

import (
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

func TestIPReachable(t *testing.T) {
	tests := []struct {
		name, directory string
		hosts           []string
		status          Status
		msg             []string
	}{
		{"loopback at a public CA", acmeDir, []string{"127.0.0.1"}, Warn,
			[]string{"mapping ip: 127.0.0.1 is a loopback address, which the public CA at " + acmeDir + " cannot connect to"}},
		{"private IPv6 at Let's Encrypt", "https://acme-v02.api.letsencrypt.org/directory", []string{"fd00::1"}, Warn, []string{"fd00::1 is a private address"}},
		{"link-local", acmeDir, []string{"169.254.1.1"}, Warn, []string{"a link-local address"}},
		{"public address", acmeDir, []string{"8.8.8.8"}, OK, []string{"1 IP host"}},
		{"loopback at a CA on loopback", "https://127.0.0.1:14000/dir", []string{"127.0.0.1", "::1"}, OK, []string{"2 IP hosts"}},
		{"private at a CA on localhost", "https://localhost:14000/dir", []string{"10.0.0.1"}, OK, nil},
		{"no IP host", acmeDir, []string{"app.example.com"}, OK, []string{"no ACME mapping has an IP host"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			addListener(t, s, state.Listener{Name: "web", Addr: ":443", HTTPAddr: ":80"})
			registerAccount(t, s, tc.directory)
			addMapping(t, s, acmeMapping("ip", "web", "http-01", "", tc.hosts...))
			c := run(input(s), checkIPReachable)
			want(t, c, IDIPReachable, tc.status, tc.msg...)
			if tc.status == Warn {
				wantHint(t, c, "map a public address instead of "+tc.hosts[0])
			}
		})
	}
}

// TestCoverageIP: an IP host is covered by its IP SAN only, never by a DNS
// SAN that reads like the address.
func TestCoverageIP(t *testing.T) {
	t.Run("IP SANs cover IP hosts", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, state.Mapping{ID: "ip", Listener: "web", Hosts: []string{"192.0.2.7", "2001:db8::7", "app.example.com"}, Source: state.SourceSelfSigned})
		want(t, run(input(s), checkCoverage), IDCoverage, OK, "1 mapping (3 hosts)")
	})
	t.Run("an ACME certificate without the IP SAN", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, acmeMapping("ip", "web", "http-01", "", "192.0.2.7", "192.0.2.8"))
		issue(t, s, "ip", []string{"192.0.2.7"}, 90*day, mappings.Meta{})
		want(t, run(input(s), checkCoverage), IDCoverage, Fail, "does not cover 192.0.2.8 (it covers 192.0.2.7)")
	})
}
