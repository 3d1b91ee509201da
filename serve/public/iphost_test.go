package public

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/challenge"
)

// newFixtureOn is newFixture with the listener bound to addr (HOST:0 picks
// a free port on HOST).
func newFixtureOn(t *testing.T, addr string, mappings []state.Mapping) *fixture {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	addr = ln.Addr().String()
	ln.Close()
	return newFixtureWith(t, state.Listener{Name: "web", Addr: addr}, mappings, Options{})
}

// newFixtureWith is a fixture over listener lc, named "web", with
// mappings, each with a certificate, served with opts.
func newFixtureWith(t *testing.T, lc state.Listener, mappings []state.Mapping, opts Options) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	f := &fixture{t: t, dir: dir, store: state.OpenDir(dir, time.Second)}
	f.cfg = &state.Config{SchemaVersion: state.SchemaVersion, Listeners: []state.Listener{lc}}
	for _, m := range mappings {
		m.Listener, m.Source = "web", state.SourceManual
		f.cfg.Mappings = append(f.cfg.Mappings, m)
		f.writeCert(m)
	}
	if err := state.SaveConfig(context.Background(), f.store, f.cfg); err != nil {
		t.Fatal(err)
	}
	opts.Store, opts.Log = f.store, discardLog
	f.s = New(opts)
	if err := f.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopServer(f.s) })
	return f
}

// dialIP makes a TLS handshake without SNI (Go's client never sends an IP
// as SNI) to ip on the fixture's port, sends one request and returns the
// served leaf and the response body.
func (f *fixture) dialIP(ip string, protos ...string) (*x509.Certificate, string, error) {
	f.t.Helper()
	_, port, _ := net.SplitHostPort(f.addr())
	if len(protos) == 0 {
		protos = []string{"http/1.1"}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(ip, port),
		&tls.Config{InsecureSkipVerify: true, NextProtos: protos})
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	if conn.ConnectionState().ServerName != "" {
		f.t.Fatalf("the client sent SNI %q", conn.ConnectionState().ServerName)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	if protos[0] != "http/1.1" {
		return leaf, "", nil
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", ip)
	b, _ := io.ReadAll(conn)
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	return leaf, body, nil
}

// wantServed fails unless a no-SNI handshake to ip is served the
// certificate of the mapping for want (its IP SAN), "" for the fallback,
// and the request goes to that mapping's upstream.
func (f *fixture) wantServed(ip, want, body string) {
	f.t.Helper()
	leaf, got, err := f.dialIP(ip)
	if err != nil {
		f.t.Fatalf("handshake to %s: %v", ip, err)
	}
	if want == "" {
		if len(leaf.IPAddresses) != 0 || leaf.DNSNames[0] != "p2ptls-fallback.invalid" {
			f.t.Errorf("no SNI to %s: served %v %v, want the fallback", ip, leaf.DNSNames, leaf.IPAddresses)
		}
		return
	}
	if err := leaf.VerifyHostname(want); err != nil || len(leaf.IPAddresses) != 1 {
		f.t.Errorf("no SNI to %s: served IPs %v DNS %v, want the certificate for %s (%v)", ip, leaf.IPAddresses, leaf.DNSNames, want, err)
	}
	if body != "" && got != body {
		f.t.Errorf("no SNI to %s: request answered %q, want the upstream %q", ip, got, body)
	}
}

// TestNoSNISelectsByLocalAddress: one listener on all interfaces serves
// 127.0.0.1 and 127.0.0.2 each its own certificate, routes requests the
// same way, counts only a no-SNI handshake that found nothing as a
// fallback hit (under ""), and follows reloads.
func TestNoSNISelectsByLocalAddress(t *testing.T) {
	up1, up2, up3 := upstream(t, "one"), upstream(t, "two"), upstream(t, "three")
	f := newFixtureOn(t, "0.0.0.0:0", []state.Mapping{
		{ID: "one", Hosts: []string{"127.0.0.1"}, Upstream: up1},
		{ID: "two", Hosts: []string{"127.0.0.2"}, Upstream: up2},
		{ID: "name", Hosts: []string{"app.example.com"}},
	})
	l := f.listener()
	f.wantServed("127.0.0.1", "127.0.0.1", "one")
	f.wantServed("127.0.0.2", "127.0.0.2", "two")
	if hits := l.hits.Snapshot(); len(hits) != 0 {
		t.Errorf("fallback hits %v after handshakes that found their IP mapping", hits)
	}
	f.wantServed("127.0.0.3", "", "")
	if hits := l.hits.Snapshot(); hits[""] != 1 || len(hits) != 1 {
		t.Errorf("fallback hits %v, want one under \"\"", hits)
	}
	// SNI still wins: a name selects its mapping whatever the address.
	cs, _, _, err := f.get(&tls.Config{}, "app.example.com")
	if err != nil || cs.PeerCertificates[0].VerifyHostname("app.example.com") != nil {
		t.Errorf("SNI app.example.com on 127.0.0.1: %v", err)
	}

	// A reload adds and removes IP entries like any host.
	f.cfg.Mappings = append(f.cfg.Mappings[1:], state.Mapping{ID: "three", Listener: "web", Hosts: []string{"127.0.0.3"}, Source: state.SourceManual, Upstream: up3})
	f.writeCert(f.cfg.Mappings[len(f.cfg.Mappings)-1])
	f.reload()
	f.wantServed("127.0.0.3", "127.0.0.3", "three")
	f.wantServed("127.0.0.1", "", "")
	f.wantServed("127.0.0.2", "127.0.0.2", "two")
}

// TestNoSNIDualStack: a listener on "::" sees IPv4 clients as IPv4-mapped
// addresses; both families find their mapping.
func TestNoSNIDualStack(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no ::1 here: %v", err)
	} else {
		ln.Close()
	}
	f := newFixtureOn(t, "[::]:0", []state.Mapping{
		{ID: "v6", Hosts: []string{"::1"}},
		{ID: "v4", Hosts: []string{"127.0.0.1"}},
	})
	f.wantServed("::1", "::1", "")
	f.wantServed("127.0.0.1", "127.0.0.1", "")
}

// TestNoSNIOnIPv6Listener: a listener bound to ::1 itself.
func TestNoSNIOnIPv6Listener(t *testing.T) {
	f := newFixtureOn(t, "[::1]:0", []state.Mapping{{ID: "v6", Hosts: []string{"::1"}}})
	f.wantServed("::1", "::1", "")
}

// TestIPLiteralSNI: a client that sends an IP literal as SNI (RFC 6066
// forbids it, some do) gets that address's mapping, in any spelling.
func TestIPLiteralSNI(t *testing.T) {
	f := newFixture(t, []state.Mapping{{ID: "v4", Hosts: []string{"192.0.2.7"}}, {ID: "v6", Hosts: []string{"2001:db8::7"}}}, nil, Options{})
	l := f.listener()
	conn, peer := net.Pipe() // a Conn for the fallback's log line
	defer conn.Close()
	defer peer.Close()
	for sni, want := range map[string]string{"192.0.2.7": "192.0.2.7", "2001:DB8:0::7": "2001:db8::7", "[2001:db8::7]": "2001:db8::7", "192.0.2.8": ""} {
		c, err := l.getCertificate(&tls.ClientHelloInfo{ServerName: sni, Conn: conn})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if len(leaf.IPAddresses) > 0 {
			got = leaf.IPAddresses[0].String()
		}
		if got != want {
			t.Errorf("SNI %q served IP %q, want %q", sni, got, want)
		}
	}
}

// TestTLSALPN01ForIP: the CA's reverse-name SNI is answered with the
// challenge certificate published for the address.
func TestTLSALPN01ForIP(t *testing.T) {
	f := newFixture(t, []state.Mapping{{ID: "v4", Hosts: []string{"127.0.0.1"}}}, nil, Options{})
	if err := challenge.PublishTLSALPN01(context.Background(), f.store, "127.0.0.1", "key-auth"); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", f.addr(), &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{challenge.ALPNProto},
		ServerName: challenge.ReverseName(netip.MustParseAddr("127.0.0.1")),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cs := conn.ConnectionState()
	leaf := cs.PeerCertificates[0]
	if cs.NegotiatedProtocol != challenge.ALPNProto || len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Fatalf("acme-tls/1 for 1.0.0.127.in-addr.arpa: protocol %q, IP SANs %v; want the challenge certificate for 127.0.0.1", cs.NegotiatedProtocol, leaf.IPAddresses)
	}
	acmeExt := false
	for _, e := range leaf.Extensions {
		acmeExt = acmeExt || e.Id.String() == "1.3.6.1.5.5.7.1.31" // id-pe-acmeIdentifier
	}
	if !acmeExt {
		t.Error("the served certificate has no acmeIdentifier extension")
	}
}
