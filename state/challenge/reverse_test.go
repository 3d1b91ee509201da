package challenge

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

func TestReverseName(t *testing.T) {
	for _, tc := range []struct{ ip, name string }{
		{"192.0.2.1", "1.2.0.192.in-addr.arpa"},
		{"127.0.0.1", "1.0.0.127.in-addr.arpa"},
		{"::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"},
		// RFC 8738 section 6's example.
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"},
	} {
		ip := netip.MustParseAddr(tc.ip)
		if got := ReverseName(ip); got != tc.name {
			t.Errorf("ReverseName(%s) = %q, want %q", ip, got, tc.name)
		}
		for _, n := range []string{tc.name, tc.name + "."} {
			if got, ok := IPFromReverse(n); !ok || got != ip {
				t.Errorf("IPFromReverse(%q) = %v, %v; want %s", n, got, ok, ip)
			}
		}
	}
	if got, ok := IPFromReverse("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.B.D.0.1.0.0.2.IP6.ARPA."); !ok || got != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("upper case: %v, %v", got, ok)
	}
	for _, bad := range []string{
		"in-addr.arpa", "2.0.192.in-addr.arpa", "1.1.2.0.192.in-addr.arpa", "01.2.0.192.in-addr.arpa", "256.2.0.192.in-addr.arpa",
		"1.0.ip6.arpa", "g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
		"10.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa", "example.com", "",
	} {
		if ip, ok := IPFromReverse(bad); ok {
			t.Errorf("IPFromReverse(%q) = %v, want no address", bad, ip)
		}
	}
}

// TestTLSALPN01ByReverseName: a certificate published for an IP (what
// lego's Present gets) is found by the reverse name the CA sends as SNI.
func TestTLSALPN01ByReverseName(t *testing.T) {
	ctx := context.Background()
	s := state.OpenDir(filepath.Join(t.TempDir(), "state"), 2*time.Second)
	for _, ip := range []string{"127.0.0.1", "::1"} {
		if err := PublishTLSALPN01(ctx, s, ip, "key-auth-"+ip); err != nil {
			t.Fatal(err)
		}
		name := ReverseName(netip.MustParseAddr(ip))
		c, err := TLSALPN01(ctx, s, name)
		if err != nil {
			t.Fatalf("TLSALPN01(%q): %v", name, err)
		}
		if len(c.Leaf.IPAddresses) != 1 || !c.Leaf.IPAddresses[0].Equal(net.ParseIP(ip)) {
			t.Errorf("TLSALPN01(%q) has IP SANs %v, want %s", name, c.Leaf.IPAddresses, ip)
		}
		if err := RemoveTLSALPN01(ctx, s, ip); err != nil {
			t.Fatal(err)
		}
		if _, err := TLSALPN01(ctx, s, name); err == nil {
			t.Errorf("TLSALPN01(%q) after CleanUp: still answered", name)
		}
	}
	// A DNS identifier that is a reverse name keeps its own file.
	const dnsName = "7.2.0.192.in-addr.arpa"
	if err := PublishTLSALPN01(ctx, s, dnsName, "k"); err != nil {
		t.Fatal(err)
	}
	if c, err := TLSALPN01(ctx, s, dnsName); err != nil || len(c.Leaf.DNSNames) != 1 || c.Leaf.DNSNames[0] != dnsName {
		t.Errorf("TLSALPN01(%q) = %v", dnsName, err)
	}
}
