package pki_test

import (
	"crypto/x509"
	"net"
	"reflect"
	"testing"

	"github.com/p2pstream/p2ptls/state/pki"
)

func ips(ss ...string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		ip := net.ParseIP(s)
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		out = append(out, ip)
	}
	return out
}

func TestParseNames(t *testing.T) {
	tests := []struct {
		desc  string
		hosts []string
		want  pki.Names
	}{
		{"empty", nil, pki.Names{}},
		{"DNS names and IPs split, order kept",
			[]string{"b.example", "127.0.0.1", "a.example", "::1"},
			pki.Names{DNS: []string{"b.example", "a.example"}, IPs: ips("127.0.0.1", "::1")}},
		{"DNS names lower-cased and de-duplicated case-insensitively",
			[]string{"Example.COM", "example.com", "EXAMPLE.com", "www.example.com"},
			pki.Names{DNS: []string{"example.com", "www.example.com"}}},
		{"IPs de-duplicated across spellings",
			[]string{"::1", "0:0:0:0:0:0:0:1", "127.0.0.1", "::ffff:127.0.0.1"},
			pki.Names{IPs: ips("::1", "127.0.0.1")}},
		{"IPv4 kept in 4-byte form", []string{"192.0.2.1"}, pki.Names{IPs: []net.IP{{192, 0, 2, 1}}}},
		{"full IPv6", []string{"2001:db8::1"}, pki.Names{IPs: ips("2001:db8::1")}},
		{"wildcard is a DNS name", []string{"*.Example.com"}, pki.Names{DNS: []string{"*.example.com"}}},
		{"blank entries and surrounding spaces dropped",
			[]string{"", "  ", " localhost ", " 10.0.0.1"},
			pki.Names{DNS: []string{"localhost"}, IPs: ips("10.0.0.1")}},
		{"bracketed IPv6 is not an IP", []string{"[::1]"}, pki.Names{DNS: []string{"[::1]"}}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := pki.ParseNames(tc.hosts); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ParseNames(%q) = %#v, want %#v", tc.hosts, got, tc.want)
			}
		})
	}
}

func TestNamesEqualMissing(t *testing.T) {
	cert := &x509.Certificate{
		DNSNames:    []string{"example.com", "*.example.com", "localhost"},
		IPAddresses: []net.IP{{127, 0, 0, 1}, net.IPv6loopback},
	}
	tests := []struct {
		desc        string
		hosts       []string
		wantEqual   bool
		wantMissing []string
	}{
		{"same names, same order",
			[]string{"example.com", "*.example.com", "localhost", "127.0.0.1", "::1"}, true, nil},
		{"same names, other order and case",
			[]string{"::1", "LOCALHOST", "127.0.0.1", "*.example.com", "Example.com"}, true, nil},
		{"subset is not equal but misses nothing",
			[]string{"example.com", "::1"}, false, nil},
		{"extra DNS name and IP are missing",
			[]string{"example.com", "*.example.com", "localhost", "127.0.0.1", "::1", "new.example.com", "10.0.0.1"},
			false, []string{"new.example.com", "10.0.0.1"}},
		{"wildcard does not cover a name exactly",
			[]string{"www.example.com"}, false, []string{"www.example.com"}},
		{"IPv4-mapped spelling matches the IPv4 SAN",
			[]string{"::ffff:127.0.0.1"}, false, nil},
		{"no names", nil, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			n := pki.ParseNames(tc.hosts)
			if got := n.Equal(cert); got != tc.wantEqual {
				t.Errorf("Equal = %v, want %v", got, tc.wantEqual)
			}
			if got := n.Missing(cert); !reflect.DeepEqual(got, tc.wantMissing) {
				t.Errorf("Missing = %q, want %q", got, tc.wantMissing)
			}
		})
	}

	t.Run("DNS SAN spelled like an IP is not the IP", func(t *testing.T) {
		odd := &x509.Certificate{DNSNames: []string{"127.0.0.1"}}
		n := pki.ParseNames([]string{"127.0.0.1"})
		if n.Equal(odd) {
			t.Error("Equal matched an IP against a DNS SAN")
		}
		if got, want := n.Missing(odd), []string{"127.0.0.1"}; !reflect.DeepEqual(got, want) {
			t.Errorf("Missing = %q, want %q", got, want)
		}
	})
	t.Run("empty names equal a certificate without SANs", func(t *testing.T) {
		if !(pki.Names{}).Equal(&x509.Certificate{}) {
			t.Error("Equal = false, want true")
		}
	})
}
