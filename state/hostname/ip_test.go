package hostname

import (
	"net/netip"
	"testing"
)

// TestNormalizeIP covers every IP form a mapping host accepts, its stored
// form, and every refusal.
func TestNormalizeIP(t *testing.T) {
	tests := []struct {
		desc, in, want string
		err            string // a phrase the error must contain; "" means accepted
	}{
		{desc: "IPv4", in: "192.0.2.1", want: "192.0.2.1"},
		{desc: "IPv4 loopback", in: "127.0.0.1", want: "127.0.0.1"},
		{desc: "IPv4 trailing dot and space", in: " 127.0.0.1. ", want: "127.0.0.1"},
		{desc: "IPv6 loopback", in: "::1", want: "::1"},
		{desc: "IPv6 bracketed", in: "[::1]", want: "::1"},
		{desc: "IPv6 leading zeros", in: "::0001", want: "::1"},
		{desc: "IPv6 upper-case", in: "2001:DB8::A", want: "2001:db8::a"},
		{desc: "IPv6 uncompressed", in: "2001:0db8:0000:0000:0000:0000:0000:0001", want: "2001:db8::1"},
		{desc: "IPv6 longest zero run compressed", in: "2001:db8:0:0:1:0:0:0", want: "2001:db8:0:0:1::"},
		{desc: "IPv6 single zero group kept", in: "2001:db8:0:1:1:1:1:1", want: "2001:db8:0:1:1:1:1:1"},
		{desc: "IPv6 embedded IPv4 form", in: "64:ff9b::192.0.2.1", want: "64:ff9b::c000:201"},
		{desc: "IPv4-mapped IPv6", in: "::ffff:192.0.2.1", err: `host "::ffff:192.0.2.1" is an IPv4-mapped IPv6 address; certificates and clients treat it as the IPv4 address, so give "192.0.2.1"`},
		{desc: "IPv4-mapped IPv6 in hex", in: "[::ffff:c000:201]", err: `so give "192.0.2.1"`},
		{desc: "zone", in: "fe80::1%eth0", err: `host "fe80::1%eth0" has the zone "%eth0", which no certificate can name; give the address without it, e.g. "fe80::1"`},
		{desc: "zone bracketed", in: "[fe80::1%25eth0]", err: `has the zone "%25eth0"`},
		{desc: "CIDR IPv4", in: "10.0.0.0/8", err: `host "10.0.0.0/8" is a network (CIDR); a certificate names single addresses, so give each address as its own host, e.g. "10.0.0.0"`},
		{desc: "CIDR IPv6", in: "2001:db8::/32", err: "is a network (CIDR)"},
		{desc: "CIDR host route", in: "192.0.2.1/32", err: "is a network (CIDR)"},
		{desc: "leading zero", in: "010.0.0.1", err: `host "010.0.0.1" has the part "010" with a leading zero, which some software reads as octal; write the address without leading zeros`},
		{desc: "leading zero last", in: "192.0.2.01", err: `the part "01" with a leading zero`},
		{desc: "shortened", in: "127.1", err: "is a shortened IPv4 address"},
		{desc: "three parts", in: "10.0.1", err: "is a shortened IPv4 address"},
		{desc: "five parts", in: "1.2.3.4.5", err: "is not a valid IPv4 address"},
		{desc: "out of range", in: "300.1.1.1", err: "is not a valid IPv4 address"},
		{desc: "hex IPv4", in: "0x7f.0.0.1", err: "ends in a numeric label"},
		{desc: "wildcard IPv4", in: "*.1.2.3.4", err: `host "*.1.2.3.4" is a wildcard over an IP address; an IP certificate names each address exactly, so give the address itself, e.g. "1.2.3.4"`},
		{desc: "wildcard partial IPv4", in: "*.2.3.4", err: "is a wildcard over an IP address"},
		{desc: "wildcard IPv6", in: "*.::1", err: "is a wildcard over an IP address"},
		{desc: "unspecified IPv4", in: "0.0.0.0", err: "is the unspecified address"},
		{desc: "unspecified IPv6", in: "::", err: "is the unspecified address"},
		{desc: "multicast", in: "224.0.0.1", err: "is a multicast or broadcast address"},
		{desc: "broadcast", in: "255.255.255.255", err: "is a multicast or broadcast address"},
		{desc: "IPv6 multicast", in: "ff02::1", err: "is a multicast or broadcast address"},
		{desc: "URL with IP", in: "https://192.0.2.1/", err: `give only the address, e.g. "192.0.2.1"`},
		{desc: "URL with IPv6", in: "https://[2001:db8::1]:8443/", err: `give only the address, e.g. "2001:db8::1"`},
		{desc: "bare IPv6 with port", in: "::1:443", want: "::1:443"}, // a valid address: 0:0:0:0:0:0:1:443
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := Normalize(tc.in)
			checkResult(t, tc.in, got, err, tc.want, tc.err)
			if err == nil {
				if again, err := Normalize(got); err != nil || again != got {
					t.Fatalf("Normalize(%q) = %q, %v; want it unchanged", got, again, err)
				}
				if !IsIP(got) {
					t.Fatalf("IsIP(%q) = false", got)
				}
			}
		})
	}
}

func TestCanonicalIPDoesNotAllocate(t *testing.T) {
	for _, h := range []string{"192.0.2.1", "2001:db8::1"} {
		if !canonicalIP(h) {
			t.Fatalf("canonicalIP(%q) = false", h)
		}
		if n := testing.AllocsPerRun(100, func() { _, _ = Normalize(h) }); n != 0 {
			t.Errorf("Normalize(%q) allocates %v times; a stored IP host must take the fast path", h, n)
		}
	}
	for _, h := range []string{"::0001", "[::1]", "::ffff:1.2.3.4", "fe80::1%eth0", "0.0.0.0", "2001:DB8::1"} {
		if canonicalIP(h) {
			t.Errorf("canonicalIP(%q) = true; it is not the stored form", h)
		}
	}
}

func TestIPWildcardRules(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"1.2.3.4", "1.2.3.4", true},
		{"*.2.3.4", "1.2.3.4", false}, // a DNS SAN that reads like an address covers no IP
		{"*.example.com", "a.example.com", true},
		{"::1", "::1", true},
	} {
		if got := Matches(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Matches(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	for _, name := range []string{"1.2.3.4", "2001:db8::1", "10.0.0.1"} {
		if w := WildcardFor(name); w != "" {
			t.Errorf("WildcardFor(%q) = %q, want none", name, w)
		}
	}
	if w := WildcardFor("a.example.com"); w != "*.example.com" {
		t.Errorf("WildcardFor(a.example.com) = %q", w)
	}
	for h, want := range map[string]bool{"1.2.3.4": true, "::1": true, "example.com": false, "a1.example.b2": false, "*.example.com": false} {
		if IsIP(h) != want {
			t.Errorf("IsIP(%q) = %v, want %v", h, !want, want)
		}
	}
}

func TestNonPublicIP(t *testing.T) {
	for s, want := range map[string]bool{
		"127.0.0.1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true, "169.254.1.1": true,
		"100.64.0.1": true, "192.0.2.1": true, "::1": true, "fe80::1": true, "fd00::1": true, "2001:db8::1": true,
		"8.8.8.8": false, "1.1.1.1": false, "2606:4700::1111": false,
	} {
		if got := NonPublicIP(netip.MustParseAddr(s)); got != want {
			t.Errorf("NonPublicIP(%s) = %v, want %v", s, got, want)
		}
	}
}
