package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// noSNILeaf makes a TLS handshake without SNI (Go's client sends none for
// an IP) to addr and returns the served leaf.
func noSNILeaf(addr string) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// servesIP reports whether a no-SNI handshake to addr gets the certificate
// with serial, whose IP SAN is ip.
func servesIP(addr, ip string, want *x509.Certificate) error {
	leaf, err := noSNILeaf(addr)
	if err != nil {
		return err
	}
	if leaf.SerialNumber.Cmp(want.SerialNumber) != 0 {
		return fmt.Errorf("no SNI to %s: serial %x (IPs %v, DNS %v), want %x", addr, leaf.SerialNumber, leaf.IPAddresses, leaf.DNSNames, want.SerialNumber)
	}
	if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != ip {
		return fmt.Errorf("no SNI to %s: IP SANs %v, want %s", addr, leaf.IPAddresses, ip)
	}
	return nil
}

// TestIPCertificates issues, against pebble, an HTTP-01 certificate for
// 127.0.0.1 and a TLS-ALPN-01 certificate for ::1 (pebble connects to the
// address itself and, for TLS-ALPN-01, sends the reverse-DNS name as SNI)
// by 'cert issue' while serve runs; handshakes without SNI to each address
// then get that certificate. A self-signed IP mapping is served the same
// way, and the refusals are exit 2 with the state unchanged.
func TestIPCertificates(t *testing.T) {
	t.Parallel()
	web, plain := freeAddr(t), freeAddr(t)
	tlsPort := port(t, web)
	web6 := net.JoinHostPort("::1", strconv.Itoa(tlsPort))
	if ln, err := net.Listen("tcp", web6); err != nil {
		t.Skipf("cannot listen on %s: %v", web6, err)
	} else {
		ln.Close()
	}
	env := acmetest.Start(t, acmetest.Options{HTTPPort: port(t, plain), TLSPort: tlsPort})
	p := newPublicState(t)
	a := &acmeState{publicServe: p, env: env, web: web, plain: plain}
	a.mappingCertFile = func(id string) string { return p.dir + "/certs/public/" + id + "/cert.pem" }
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", web, "--http-addr", plain)
	p.must(t, "listener", "add", "web6", "--addr", web6)
	self := freeAddr(t)
	p.must(t, "listener", "add", "self", "--addr", self)

	// Refused: exit 2, one sentence and a hint, nothing changed.
	before := p.must(t, "mapping", "list", "--output", "json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--host", "127.0.0.1", "--acme", "--challenge", "dns-01", "--dns-credential", "cf"}, "IP address 127.0.0.1 cannot be validated with DNS-01"},
		{[]string{"--host", "*.127.0.0.1", "--acme", "--challenge", "dns-01", "--dns-credential", "cf"}, "is a wildcard over an IP address"},
		{[]string{"--host", "fe80::1%eth0", "--self-signed"}, `has the zone "%eth0"`},
		{[]string{"--host", "10.0.0.0/8", "--self-signed"}, "is a network (CIDR)"},
		{[]string{"--host", "010.0.0.1", "--self-signed"}, "leading zero"},
	} {
		r := p2ptls(t, p.env, append([]string{"mapping", "add", "--listener", "web"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("mapping add %v: exit %d %q, want exit 2 with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if after := p.must(t, "mapping", "list", "--output", "json"); after != before {
		t.Errorf("a refused mapping add changed the mappings: %s", after)
	}

	a.serve = startServe(t, p.env)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "127.0.0.1", "--acme", "--challenge", "http-01", "--id", "ip4")
	r := p2ptls(t, p.env, "mapping", "add", "--listener", "web6", "--host", "[::0001]", "--acme", "--challenge", "tls-alpn-01", "--id", "ip6")
	if r.code != 0 || strings.Contains(r.stderr, "cannot connect") {
		// pebble on 127.0.0.1 is no public CA: no warning.
		t.Fatalf("mapping add ::1: exit %d %s", r.code, r.stderr)
	}
	p.must(t, "mapping", "add", "--listener", "self", "--host", "127.0.0.1", "--self-signed", "--id", "self4")
	var list []struct {
		ID    string   `json:"id"`
		Hosts []string `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(p.must(t, "mapping", "list", "--output", "json")), &list); err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if want := map[string]string{"ip4": "127.0.0.1", "ip6": "::1", "self4": "127.0.0.1"}[m.ID]; !slices.Equal(m.Hosts, []string{want}) {
			t.Errorf("mapping %s hosts %q, want [%s]", m.ID, m.Hosts, want)
		}
	}

	// serve answers both challenges; serve may have started an order of
	// its own, which the lock orders before or after this one.
	if r := p2ptls(t, p.env, "cert", "issue", "ip4", "ip6"); r.code != 0 {
		t.Fatalf("cert issue: exit %d %s", r.code, r.stderr)
	}
	// A mapping serve was ordering at that moment is skipped by cert issue
	// (its claim is held) and issued by serve: wait for both.
	for _, id := range []string{"ip4", "ip6"} {
		cert := a.mappingCertFile(id)
		eventually(t, 60*time.Second, func() error { _, err := os.Stat(cert); return err })
	}
	leaf4 := a.verifyIssued(t, "ip4", "127.0.0.1")
	leaf6 := a.verifyIssued(t, "ip6", "::1")
	eventually(t, 10*time.Second, func() error { return servesIP(web, "127.0.0.1", leaf4) })
	eventually(t, 10*time.Second, func() error { return servesIP(web6, "::1", leaf6) })
	if leaf4.NotAfter.Sub(leaf4.NotBefore) <= 0 || leaf4.IPAddresses[0].String() != "127.0.0.1" {
		t.Errorf("ip4 leaf: %v %v", leaf4.IPAddresses, leaf4.NotAfter)
	}

	// The self-signed IP mapping, without SNI on its own listener.
	eventually(t, 10*time.Second, func() error {
		leaf, err := noSNILeaf(self)
		if err != nil {
			return err
		}
		if len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" || leaf.Issuer.String() != leaf.Subject.String() {
			return fmt.Errorf("no SNI to %s: IPs %v issuer %s", self, leaf.IPAddresses, leaf.Issuer)
		}
		return nil
	})
	// No fallback was served for these handshakes.
	var st struct {
		Listeners []struct {
			Name         string           `json:"name"`
			FallbackHits map[string]int64 `json:"fallback_hits"`
		} `json:"listeners"`
	}
	out := p.must(t, "status", "--output", "json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Listeners) != 3 {
		t.Fatalf("status: %v: %s", err, out)
	}
	for _, l := range st.Listeners {
		if len(l.FallbackHits) != 0 {
			t.Errorf("listener %s: fallback hits %v after no-SNI handshakes to its IP mapping", l.Name, l.FallbackHits)
		}
	}
}

// TestIPCertificateWithoutServe: with no serve running, 'cert issue' binds
// the listener itself and its own TLS-ALPN-01 answerer maps the reverse-DNS
// SNI pebble sends back to the address.
func TestIPCertificateWithoutServe(t *testing.T) {
	t.Parallel()
	web := freeAddr(t)
	env := acmetest.Start(t, acmetest.Options{TLSPort: port(t, web)})
	p := newPublicState(t)
	a := &acmeState{publicServe: p, env: env, web: web}
	a.mappingCertFile = func(id string) string { return p.dir + "/certs/public/" + id + "/cert.pem" }
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "127.0.0.1", "--acme", "--challenge", "tls-alpn-01", "--id", "ip4")
	if r := p2ptls(t, p.env, "cert", "issue", "ip4"); r.code != 0 {
		t.Fatalf("cert issue without serve: exit %d %s", r.code, r.stderr)
	}
	if leaf := a.verifyIssued(t, "ip4", "127.0.0.1"); len(leaf.IPAddresses) != 1 || len(leaf.DNSNames) != 0 {
		t.Errorf("leaf SANs: IPs %v DNS %v, want only 127.0.0.1", leaf.IPAddresses, leaf.DNSNames)
	}
}
