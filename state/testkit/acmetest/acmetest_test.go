package acmetest_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/go-acme/lego/v4/challenge/http01"
	"github.com/go-acme/lego/v4/challenge/tlsalpn01"
	"github.com/go-acme/lego/v4/lego"
	"github.com/go-acme/lego/v4/providers/dns/cloudflare"
	"github.com/go-acme/lego/v4/registration"
	"github.com/miekg/dns"

	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

type user struct {
	key crypto.PrivateKey
	reg *registration.Resource
}

func (u *user) GetEmail() string                        { return "" }
func (u *user) GetRegistration() *registration.Resource { return u.reg }
func (u *user) GetPrivateKey() crypto.PrivateKey        { return u.key }

// newClient registers a new ACME account with pebble.
func newClient(t *testing.T, env *acmetest.Env) *lego.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u := &user{key: key}
	cfg := lego.NewConfig(u)
	cfg.CADirURL = env.DirectoryURL
	cfg.HTTPClient = env.HTTPClient()
	cfg.Certificate.KeyType = certcrypto.EC256
	client, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatalf("lego.NewClient: %v", err)
	}
	u.reg, err = client.Registration.Register(registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return client
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// verify checks that the PEM bundle chains to env's root and covers names.
func verify(t *testing.T, env *acmetest.Env, bundle []byte, names ...string) *x509.Certificate {
	t.Helper()
	certs, err := certcrypto.ParsePEMBundle(bundle)
	if err != nil {
		t.Fatalf("parse bundle: %v", err)
	}
	if len(certs) < 2 {
		t.Fatalf("bundle has %d certificates, want leaf and intermediate", len(certs))
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	for _, name := range names {
		_, err := certs[0].Verify(x509.VerifyOptions{
			Roots:         env.Roots(t),
			Intermediates: inter,
			DNSName:       name,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("verify for %q: %v (SANs %v)", name, err, certs[0].DNSNames)
		}
	}
	// The stored intermediate works as well as the chain's.
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: env.Roots(t),
		Intermediates: env.Intermediates(t)}); err != nil {
		t.Errorf("verify with env.Intermediates: %v", err)
	}
	// A root pool alone does not verify the leaf: Roots holds no intermediate.
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: env.Roots(t)}); err == nil {
		t.Error("leaf verified without its intermediate")
	}
	return certs[0]
}

// TestIssue obtains, concurrently, a wildcard + apex certificate via DNS-01
// through the Cloudflare emulator and a certificate via HTTP-01.
func TestIssue(t *testing.T) {
	t.Parallel()
	start := time.Now()
	httpPort := freePort(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: httpPort})
	t.Logf("started in %s: %s", time.Since(start).Round(time.Millisecond), env)
	if env.HTTPPort != httpPort || env.TLSPort == 0 {
		t.Fatalf("ports: %d %d", env.HTTPPort, env.TLSPort)
	}

	dnsClient, httpClient := newClient(t, env), newClient(t, env)

	cf := cloudflare.NewDefaultConfig()
	cf.AuthToken = "good-token"
	cf.BaseURL = env.Cloudflare.URL
	cf.PollingInterval = 250 * time.Millisecond
	cf.PropagationTimeout = 20 * time.Second
	provider, err := cloudflare.NewDNSProviderConfig(cf)
	if err != nil {
		t.Fatal(err)
	}
	// Sets lego's process-wide resolver list: no other test here uses DNS-01.
	err = dnsClient.Challenge.SetDNS01Provider(provider,
		dns01.AddRecursiveNameservers([]string{env.DNSResolver}),
		dns01.DisableAuthoritativeNssPropagationRequirement(),
		dns01.RecursiveNSsPropagationRequirement())
	if err != nil {
		t.Fatal(err)
	}
	err = httpClient.Challenge.SetHTTP01Provider(http01.NewProviderServer("127.0.0.1", strconv.Itoa(httpPort)))
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		t0 := time.Now()
		res, err := dnsClient.Certificate.Obtain(certificate.ObtainRequest{
			Domains: []string{"*.example.test", "example.test"},
			Bundle:  true,
		})
		if err != nil {
			t.Errorf("DNS-01 obtain: %v\n%s", err, env.Logs())
			return
		}
		t.Logf("DNS-01 wildcard + apex: %s", time.Since(t0).Round(time.Millisecond))
		leaf := verify(t, env, res.Certificate, "example.test", "x.example.test")
		if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 89*24*time.Hour {
			t.Errorf("validity %s, want the default profile's 90 days", got)
		}
	})
	wg.Go(func() {
		t0 := time.Now()
		res, err := httpClient.Certificate.Obtain(certificate.ObtainRequest{
			Domains: []string{"a.example.test"},
			Bundle:  true,
		})
		if err != nil {
			t.Errorf("HTTP-01 obtain: %v\n%s", err, env.Logs())
			return
		}
		t.Logf("HTTP-01: %s", time.Since(t0).Round(time.Millisecond))
		verify(t, env, res.Certificate, "a.example.test")
	})
	wg.Wait()

	// lego cleaned up: no TXT record is left, in the emulator or in DNS.
	if got := env.Cloudflare.TXT("_acme-challenge.example.test"); got != nil {
		t.Errorf("Cloudflare TXT left: %q", got)
	}
	r, err := dnsQuery(t, "udp", env.DNSResolver, "_acme-challenge.example.test", dns.TypeTXT)
	if err == nil && len(r.Answer) != 0 {
		t.Errorf("DNS TXT left: %v", r.Answer)
	}
	if env.Cloudflare.Requests() < 5 {
		t.Errorf("Cloudflare requests = %d", env.Cloudflare.Requests())
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

func dnsQuery(t *testing.T, network, addr, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// TestEnv covers the DNS front, the Cloudflare -> DNS mirroring, profiles,
// SetRejectChallenges and StopPebble.
func TestEnv(t *testing.T) {
	t.Parallel()
	start := time.Now()
	httpPort, tlsPort := freePort(t), freePort(t)
	env := acmetest.Start(t, acmetest.Options{
		HTTPPort: httpPort, TLSPort: tlsPort, Profiles: true,
		Zones: []string{"example.test", "other.test"},
	})
	t.Logf("started in %s", time.Since(start).Round(time.Millisecond))

	t.Run("dns front", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			r, err := dnsQuery(t, network, env.DNSResolver, "example.test", dns.TypeSOA)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.Authoritative {
				t.Fatalf("%s SOA apex: %v %v", network, err, r)
			}
			if soa := r.Answer[0].(*dns.SOA); soa.Hdr.Name != "example.test." {
				t.Errorf("SOA owner %q", soa.Hdr.Name)
			}
			r, err = dnsQuery(t, network, env.DNSResolver, "_acme-challenge.www.Other.Test", dns.TypeSOA)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 ||
				r.Ns[0].Header().Name != "other.test." {
				t.Errorf("%s SOA below apex: %v %v", network, err, r)
			}
			r, err = dnsQuery(t, network, env.DNSResolver, "example.test", dns.TypeNS)
			if err != nil || len(r.Answer) != 2 {
				t.Errorf("%s NS: %v %v", network, err, r)
			}
			r, err = dnsQuery(t, network, env.DNSResolver, "anything.example.test", dns.TypeA)
			if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
				t.Errorf("%s A (relayed): %v %v", network, err, r)
			}
			r, err = dnsQuery(t, network, env.DNSResolver, "anything.example.test", dns.TypeAAAA)
			if err != nil || len(r.Answer) != 0 {
				t.Errorf("%s AAAA (relayed): %v %v", network, err, r)
			}
		}
		// lego's zone lookup, as the Cloudflare provider does it.
		zone, err := dns01.FindZoneByFqdnCustom("_acme-challenge.a.b.other.test.", []string{env.DNSResolver})
		if err != nil || zone != "other.test." {
			t.Errorf("FindZoneByFqdnCustom = %q, %v", zone, err)
		}
	})

	t.Run("cloudflare to dns", func(t *testing.T) {
		const name = "_acme-challenge.m.example.test"
		api := func(method, path, body string) map[string]any {
			t.Helper()
			req, _ := http.NewRequest(method, env.Cloudflare.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer good-token")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out["success"] != true {
				t.Fatalf("%s %s: %d %v %v", method, path, resp.StatusCode, err, out)
			}
			return out
		}
		txt := func() []string {
			t.Helper()
			r, err := dnsQuery(t, "udp", env.DNSResolver, name, dns.TypeTXT)
			if err != nil {
				t.Fatal(err)
			}
			var vals []string
			for _, rr := range r.Answer {
				vals = append(vals, strings.Join(rr.(*dns.TXT).Txt, ""))
			}
			slices.Sort(vals)
			return vals
		}
		base := "/zones/" + env.Cloudflare.ZoneID("example.test") + "/dns_records"
		var ids []string
		for _, v := range []string{"one", "two"} {
			res := api("POST", base, `{"type":"TXT","name":"`+name+`","content":"\"`+v+`\"","ttl":120}`)
			ids = append(ids, res["result"].(map[string]any)["id"].(string))
		}
		if got := txt(); !slices.Equal(got, []string{"one", "two"}) {
			t.Fatalf("TXT = %q", got)
		}
		api("DELETE", base+"/"+ids[0], "")
		if got := txt(); !slices.Equal(got, []string{"two"}) {
			t.Fatalf("TXT after deleting one = %q (the sibling must survive)", got)
		}
		api("DELETE", base+"/"+ids[1], "")
		if got := txt(); got != nil {
			t.Fatalf("TXT after deleting both = %q", got)
		}
	})

	t.Run("directory lists profiles", func(t *testing.T) {
		resp, err := env.HTTPClient().Get(env.DirectoryURL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var dir struct {
			Meta struct {
				Profiles map[string]string `json:"profiles"`
			} `json:"meta"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
			t.Fatal(err)
		}
		if len(dir.Meta.Profiles) != 2 || dir.Meta.Profiles["shortlived"] == "" || dir.Meta.Profiles["default"] == "" {
			t.Errorf("profiles = %v", dir.Meta.Profiles)
		}
	})

	t.Run("issue", func(t *testing.T) {
		okClient, badClient := newClient(t, env), newClient(t, env)
		if err := okClient.Challenge.SetHTTP01Provider(
			http01.NewProviderServer("127.0.0.1", strconv.Itoa(httpPort))); err != nil {
			t.Fatal(err)
		}
		if err := badClient.Challenge.SetTLSALPN01Provider(
			tlsalpn01.NewProviderServer("127.0.0.1", strconv.Itoa(tlsPort))); err != nil {
			t.Fatal(err)
		}
		env.SetRejectChallenges(t, "r.example.test", true)

		var wg sync.WaitGroup
		wg.Go(func() {
			t0 := time.Now()
			res, err := okClient.Certificate.Obtain(certificate.ObtainRequest{
				Domains: []string{"s.other.test"}, Bundle: true, Profile: "shortlived",
			})
			if err != nil {
				t.Errorf("HTTP-01 shortlived: %v\n%s", err, env.Logs())
				return
			}
			t.Logf("HTTP-01 shortlived: %s", time.Since(t0).Round(time.Millisecond))
			leaf := verify(t, env, res.Certificate, "s.other.test")
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 6*24*time.Hour-time.Hour || got > 6*24*time.Hour+time.Hour {
				t.Errorf("validity %s, want 6 days", got)
			}
		})
		wg.Go(func() {
			t0 := time.Now()
			_, err := badClient.Certificate.Obtain(certificate.ObtainRequest{
				Domains: []string{"r.example.test"}, Bundle: true, Profile: "default",
			})
			if err == nil {
				t.Error("TLS-ALPN-01 for a rejected host succeeded")
				return
			}
			t.Logf("rejected in %s: %v", time.Since(t0).Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), "r.example.test") {
				t.Errorf("error does not name the host: %v", err)
			}
		})
		wg.Wait()
		env.SetRejectChallenges(t, "r.example.test", false)
	})

	t.Run("resolve", func(t *testing.T) {
		env.Resolve(t, "replica.example.test", "127.0.0.3")
		r, err := dnsQuery(t, "udp", env.DNSResolver, "replica.example.test", dns.TypeA)
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.0.0.3" {
			t.Errorf("A after Resolve: %v %v", err, r)
		}
	})

	t.Run("fault proxy holds and counts", func(t *testing.T) {
		p := env.StartFaultProxy(t)
		orderURL := strings.Replace(p.DirectoryURL, "/dir", "/order-plz", 1)
		post := func(ctx context.Context) (int, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, orderURL, strings.NewReader("{}"))
			if err != nil {
				return 0, err
			}
			req.Header.Set("Content-Type", "application/jose+json")
			resp, err := env.HTTPClient().Do(req)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}
		waiting := func(n int) {
			t.Helper()
			for deadline := time.Now().Add(10 * time.Second); p.Waiting("new-order") != n; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d requests held, want %d", p.Waiting("new-order"), n)
				}
			}
		}
		p.Hold("new-order")
		// A client that goes away while held: its request never reaches pebble.
		ctx, cancel := context.WithCancel(context.Background())
		gone := make(chan error, 1)
		go func() { _, err := post(ctx); gone <- err }()
		waiting(1)
		cancel()
		if err := <-gone; err == nil {
			t.Error("a cancelled held request got an answer")
		}
		waiting(0)
		// One that waits is let through by Release, with pebble's answer
		// (an unsigned body: malformed).
		answered := make(chan int, 1)
		go func() { code, _ := post(context.Background()); answered <- code }()
		waiting(1)
		select {
		case code := <-answered:
			t.Fatalf("held request answered %d before Release", code)
		case <-time.After(100 * time.Millisecond):
		}
		p.Release("new-order")
		if code := <-answered; code != http.StatusBadRequest {
			t.Errorf("released request: %d, want pebble's 400", code)
		}
		if code, err := post(context.Background()); err != nil || code != http.StatusBadRequest {
			t.Errorf("after Release: %d %v", code, err)
		}
		if n := p.Count("new-order"); n != 3 {
			t.Errorf("Count(new-order) = %d, want 3", n)
		}
		if n := p.Count("challenge"); n != 0 {
			t.Errorf("Count(challenge) = %d, want 0", n)
		}
	})

	t.Run("stop pebble", func(t *testing.T) {
		roots := env.Roots(t)
		env.StopPebble()
		env.StopPebble() // idempotent
		c := env.HTTPClient()
		c.Timeout = 2 * time.Second
		if resp, err := c.Get(env.DirectoryURL); err == nil {
			resp.Body.Close()
			t.Fatal("directory still answers after StopPebble")
		} else if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("err = %v, want connection refused", err)
		}
		if !roots.Equal(env.Roots(t)) {
			t.Error("Roots changed after StopPebble")
		}
		// The rest of the environment keeps working.
		if r, err := dnsQuery(t, "udp", env.DNSResolver, "example.test", dns.TypeSOA); err != nil || len(r.Answer) != 1 {
			t.Errorf("DNS front after StopPebble: %v %v", err, r)
		}
	})
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}
