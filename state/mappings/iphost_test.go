package mappings

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// TestAddIPHosts: IP hosts are accepted for every source but DNS-01,
// stored in canonical form, and given an id a mapping id may be.
func TestAddIPHosts(t *testing.T) {
	ipCert := issue(t, now0, 90*day, "192.0.2.7", "2001:db8::7")
	tests := []struct {
		name      string
		in        Input
		wantHosts []string
		wantID    string
	}{
		{"acme http-01 IPv4", acmeIn("", "http-01", "", "127.0.0.1"), []string{"127.0.0.1"}, "127-0-0-1"},
		{"acme tls-alpn-01 bracketed IPv6", acmeIn("", "tls-alpn-01", "", "[::0001]"), []string{"::1"}, "ipv6---1"},
		{"self-signed IPv6 and name", selfSignedIn("", "web", 0, "2001:DB8::1", "app.example.com"), []string{"2001:db8::1", "app.example.com"}, "ipv6-2001-db8--1"},
		{"manual with IP SANs", manual("", chainPEM(ipCert), ipCert.KeyPEM, "192.0.2.7", "2001:db8:0::7"), []string{"192.0.2.7", "2001:db8::7"}, "192-0-2-7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			m := mustAdd(t, s, tc.in)
			if !slices.Equal(m.Hosts, tc.wantHosts) || m.ID != tc.wantID {
				t.Fatalf("added %q with hosts %q, want %q with %q", m.ID, m.Hosts, tc.wantID, tc.wantHosts)
			}
			saved := mustConfig(t, s).Mappings[0]
			if !slices.Equal(saved.Hosts, tc.wantHosts) {
				t.Fatalf("saved hosts %q, want %q", saved.Hosts, tc.wantHosts)
			}
			if m.Source != state.SourceSelfSigned {
				return
			}
			c, err := Load(context.Background(), s, m)
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Chain[0]
			if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("2001:db8::1")) || !slices.Equal(leaf.DNSNames, []string{"app.example.com"}) {
				t.Errorf("self-signed SANs: IPs %v, DNS %v; want the IP host as an IP SAN", leaf.IPAddresses, leaf.DNSNames)
			}
		})
	}
}

// TestAddRefusesIPHosts: every refusal of an IP host is bad input that
// changes nothing.
func TestAddRefusesIPHosts(t *testing.T) {
	dnsCert := issue(t, now0, 90*day, "app.example.com", "192.0.2.7")
	tests := []struct {
		name string
		in   Input
		msg  []string
		hint string
	}{
		{"DNS-01", acmeIn("", "dns-01", "cf", "192.0.2.1"), []string{"IP address 192.0.2.1 cannot be validated with DNS-01", "connecting to it, not through DNS"}, "http-01 or tls-alpn-01"},
		{"DNS-01 IPv6 with a name", acmeIn("", "dns-01", "cf", "app.example.com", "2001:db8::1"), []string{"IP address 2001:db8::1 cannot be validated with DNS-01"}, "http-01 or tls-alpn-01"},
		{"wildcard over an IP", acmeIn("", "dns-01", "cf", "*.1.2.3.4"), []string{"wildcard over an IP address"}, ""},
		{"zone", selfSignedIn("", "web", 0, "fe80::1%eth0"), []string{`has the zone "%eth0"`}, ""},
		{"CIDR", selfSignedIn("", "web", 0, "10.0.0.0/8"), []string{"is a network (CIDR)"}, ""},
		{"leading zero", selfSignedIn("", "web", 0, "010.0.0.1"), []string{"leading zero", "octal"}, ""},
		{"IPv4-mapped", selfSignedIn("", "web", 0, "::ffff:10.0.0.1"), []string{`IPv4-mapped IPv6 address`, `give "10.0.0.1"`}, ""},
		{"IP mapped twice on the listener", selfSignedIn("", "web", 0, "[::0001]"), []string{`host "::1" is already mapped on listener "web" by mapping "taken"`}, `remove it from mapping "taken"`},
		{"IP twice in one mapping", selfSignedIn("", "web", 0, "192.0.2.9", "192.0.2.9."), []string{`lists host "192.0.2.9" twice`}, ""},
		{"manual certificate without the IP SAN", manual("", chainPEM(dnsCert), dnsCert.KeyPEM, "app.example.com", "192.0.2.8"), []string{"does not cover 192.0.2.8", "app.example.com, 192.0.2.7"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newStore(t)
			mustAdd(t, s, selfSignedIn("taken", "web", 0, "::1"))
			before := snapshot(t, root)
			_, _, err := Add(context.Background(), s, tc.in, now0)
			wantFault(t, err, fault.Invalid, tc.msg...)
			if tc.hint != "" {
				wantHint(t, err, tc.hint)
			}
			assertUnchanged(t, before, root)
		})
	}
}

// TestAddWarnsOfUnreachableIPs: a loopback, private or link-local IP host
// of an ACME mapping at a public CA is a warning, not a refusal.
func TestAddWarnsOfUnreachableIPs(t *testing.T) {
	tests := []struct {
		name, directory string
		in              Input
		want            string // "" for no warning
	}{
		{"loopback at Let's Encrypt", "https://acme-v02.api.letsencrypt.org/directory", acmeIn("", "http-01", "", "127.0.0.1"),
			`mapping "127-0-0-1": 127.0.0.1 is a loopback address, which the public CA at https://acme-v02.api.letsencrypt.org/directory cannot connect to`},
		{"private at another public CA", "https://acme.example.net/dir", acmeIn("", "tls-alpn-01", "", "10.1.2.3"), "10.1.2.3 is a private address"},
		{"link-local IPv6", "https://acme.example.net/dir", acmeIn("", "tls-alpn-01", "", "fe80::1"), "fe80::1 is a link-local address"},
		{"loopback at a CA on loopback", "https://127.0.0.1:14000/dir", acmeIn("", "http-01", "", "127.0.0.1"), ""},
		{"loopback at a CA on localhost", "https://localhost:14000/dir", acmeIn("", "http-01", "", "::1"), ""},
		{"public address", "https://acme-v02.api.letsencrypt.org/directory", acmeIn("", "http-01", "", "8.8.8.8"), ""},
		{"self-signed loopback", "https://acme-v02.api.letsencrypt.org/directory", selfSignedIn("", "web", 0, "127.0.0.1"), ""},
		{"no account yet", "", acmeIn("", "http-01", "", "127.0.0.1"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			if err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
				tx.Config.ACME.Directory = tc.directory
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			_, warnings, err := Add(context.Background(), s, tc.in, now0)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want == "" && len(warnings) > 0:
				t.Errorf("warnings %q, want none", warnings)
			case tc.want != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.want)):
				t.Errorf("warnings %q, want one containing %q", warnings, tc.want)
			}
		})
	}
}

// TestImportIPHosts: import goes through the same rules, naming the line.
func TestImportIPHosts(t *testing.T) {
	s, root := newStore(t)
	before := snapshot(t, root)
	in := importLines(
		`{"listener":"web","hosts":["[::1]"],"source":"self-signed"}`,
		`{"listener":"api","hosts":["192.0.2.1"],"source":"acme","challenge":"dns-01","dns_credential":"cf"}`,
	)
	_, _, err := Import(context.Background(), s, strings.NewReader(in), "test", now0)
	wantFault(t, err, fault.Invalid, "line 2", "cannot be validated with DNS-01")
	assertUnchanged(t, before, root)

	in = importLines(
		`{"listener":"web","hosts":["[::1]"],"source":"self-signed"}`,
		`{"listener":"web","hosts":["0:0::1"],"source":"self-signed"}`,
	)
	_, _, err = Import(context.Background(), s, strings.NewReader(in), "test", now0)
	wantFault(t, err, fault.Invalid, "line 2", `"::1"`)
	assertUnchanged(t, before, root)

	added, _, err := Import(context.Background(), s, strings.NewReader(importLines(`{"listener":"web","hosts":["[::1]"],"source":"acme","challenge":"tls-alpn-01"}`)), "test", now0)
	if err != nil || len(added) != 1 || !slices.Equal(mustConfig(t, s).Mappings[0].Hosts, []string{"::1"}) {
		t.Fatalf("import of an IP host: %v, %v", added, err)
	}
}
