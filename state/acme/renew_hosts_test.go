package acme

import (
	"crypto/x509"
	"net"
	"testing"

	"github.com/p2pstream/p2ptls/state/pki"
)

// TestSameHostsIsPKIs: the shortcut never answers otherwise than pki's
// set comparison, whatever the hosts and the certificate's names.
func TestSameHostsIsPKIs(t *testing.T) {
	ip4 := net.ParseIP("192.0.2.1").To4()
	tests := []struct {
		desc  string
		hosts []string
		dns   []string
		ips   []net.IP
		want  bool
	}{
		{"one name", []string{"a.example.com"}, []string{"a.example.com"}, nil, true},
		{"two names in order", []string{"a.example.com", "*.a.example.com"}, []string{"a.example.com", "*.a.example.com"}, nil, true},
		{"two names, other order", []string{"*.a.example.com", "a.example.com"}, []string{"a.example.com", "*.a.example.com"}, nil, true},
		{"another name", []string{"a.example.com"}, []string{"b.example.com"}, nil, false},
		{"one more in the certificate", []string{"a.example.com"}, []string{"a.example.com", "b.example.com"}, nil, false},
		{"one more in the mapping", []string{"a.example.com", "b.example.com"}, []string{"a.example.com"}, nil, false},
		{"case differs", []string{"A.Example.com"}, []string{"a.example.com"}, nil, true},
		{"upper case on both sides", []string{"A.EXAMPLE.COM"}, []string{"A.EXAMPLE.COM"}, nil, true},
		{"space around the host", []string{" a.example.com "}, []string{"a.example.com"}, nil, true},
		{"space on both sides", []string{" a.example.com"}, []string{" a.example.com"}, nil, false},
		{"duplicate host", []string{"a.example.com", "a.example.com"}, []string{"a.example.com"}, nil, true},
		{"duplicates on both sides", []string{"a.example.com", "a.example.com"}, []string{"a.example.com", "a.example.com"}, nil, true},
		{"an address as a DNS name", []string{"192.0.2.1"}, []string{"192.0.2.1"}, nil, false},
		{"an address as an IP name", []string{"192.0.2.1"}, nil, []net.IP{ip4}, true},
		{"name and address", []string{"a.example.com", "192.0.2.1"}, []string{"a.example.com"}, []net.IP{ip4}, true},
		{"an extra address", []string{"a.example.com"}, []string{"a.example.com"}, []net.IP{ip4}, false},
		{"unicode", []string{"ſ.example.com"}, []string{"ſ.example.com"}, nil, true},
		{"unicode against its folding", []string{"ſ.example.com"}, []string{"s.example.com"}, nil, false},
		{"empty host", []string{""}, []string{""}, nil, false},
		{"no hosts", nil, nil, nil, true},
		{"IPv6 as a DNS name", []string{"2001:db8::1"}, []string{"2001:db8::1"}, nil, false},
		{"digits and a letter", []string{"1.2.3.4a"}, []string{"1.2.3.4a"}, nil, true},
		{"a number", []string{"12345"}, []string{"12345"}, nil, true},
	}
	for _, tc := range tests {
		leaf := &x509.Certificate{DNSNames: tc.dns, IPAddresses: tc.ips}
		want := pki.ParseNames(tc.hosts).Equal(leaf)
		if want != tc.want {
			t.Fatalf("%s: pki says %v, the table %v: fix the table", tc.desc, want, tc.want)
		}
		if got := sameHosts(leaf, tc.hosts); got != want {
			t.Errorf("%s: sameHosts %v, pki %v", tc.desc, got, want)
		}
		if sameHostsPlain(leaf, tc.hosts) && !want {
			t.Errorf("%s: the shortcut says yes, pki no", tc.desc)
		}
	}
}

// TestSameHostsAllocatesNothingForPlainNames: the common case takes the
// shortcut (one pass decides it 100k times).
func TestSameHostsAllocatesNothingForPlainNames(t *testing.T) {
	leaf := &x509.Certificate{DNSNames: []string{"m000050.example.com", "*.m000050.example.com"}}
	hosts := []string{"m000050.example.com", "*.m000050.example.com"}
	if n := testing.AllocsPerRun(100, func() {
		if !sameHosts(leaf, hosts) {
			t.Fatal("not the same hosts")
		}
	}); n != 0 {
		t.Errorf("%v allocations per decision, want none", n)
	}
}
