package pki

import (
	"crypto/x509"
	"net"
	"slices"
	"testing"
)

func TestCovers(t *testing.T) {
	cert := &x509.Certificate{
		DNSNames:    []string{"App.Example.com.", "*.example.net", "192.0.2.9"},
		IPAddresses: []net.IP{net.ParseIP("192.0.2.7").To4(), net.ParseIP("::ffff:192.0.2.8"), net.ParseIP("2001:db8::7")},
	}
	for host, want := range map[string]bool{
		"app.example.com": true, "a.example.net": true, "example.net": false, "*.example.net": true,
		"192.0.2.7": true, "192.0.2.8": true, "2001:db8::7": true, "2001:db8::8": false,
		"192.0.2.9": false, // a DNS SAN that reads like the address covers no IP host
	} {
		if got := Covers(cert, host); got != want {
			t.Errorf("Covers(%q) = %v, want %v", host, got, want)
		}
	}
	if got, want := SANList(cert), []string{"App.Example.com.", "*.example.net", "192.0.2.9", "192.0.2.7", "192.0.2.8", "2001:db8::7"}; !slices.Equal(got, want) {
		t.Errorf("SANList = %q, want %q", got, want)
	}
}
