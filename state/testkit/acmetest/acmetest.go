// Package acmetest starts a real ACME test environment on 127.0.0.1 for
// tests: pebble (the ACME server), pebble-challtestsrv (the DNS data), a DNS
// front that adds SOA/NS answers for the test zones, and a Cloudflare API
// emulator (cftest) whose TXT records show up in that DNS.
//
// Typical use with lego:
//
//	env := acmetest.Start(t, acmetest.Options{HTTPPort: port})
//	cfg := lego.NewConfig(user)
//	cfg.CADirURL = env.DirectoryURL
//	cfg.HTTPClient = env.HTTPClient()
//	...
//	// DNS-01 (lego's resolver list is process-wide):
//	cf := cloudflare.NewDefaultConfig()
//	cf.AuthToken, cf.BaseURL = "good-token", env.Cloudflare.URL
//	client.Challenge.SetDNS01Provider(provider,
//		dns01.AddRecursiveNameservers([]string{env.DNSResolver}),
//		dns01.DisableAuthoritativeNssPropagationRequirement(),
//		dns01.RecursiveNSsPropagationRequirement())
//
// Every name resolves to 127.0.0.1 (IPv4 only; Env.Resolve points one
// elsewhere), so pebble validates HTTP-01 on 127.0.0.1:HTTPPort and
// TLS-ALPN-01 on 127.0.0.1:TLSPort.
//
// The binaries are built with the go command from the module that contains
// the test (the versions go.mod pins) the first time Start runs in a test
// process, and kept under os.TempDir for later processes.
package acmetest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

// Options configure Start.
type Options struct {
	// HTTPPort and TLSPort are where pebble's VA connects on 127.0.0.1 for
	// HTTP-01 and TLS-ALPN-01: the ports of the listener under test. Zero
	// picks a free port where nothing listens (such validations then fail
	// with "connection refused").
	HTTPPort, TLSPort int
	// Zones are the DNS zones of the DNS front and of the Cloudflare
	// emulator's account. Default ["example.test"].
	Zones []string
	// CFTokens are the Cloudflare emulator's API tokens. Default
	// {"good-token": {ZoneRead: true, DNSEdit: true}}.
	CFTokens map[string]cftest.Perms
	// Profiles configures pebble with two profiles, "default" (90 days) and
	// "shortlived" (6 days). Pebble then picks one AT RANDOM for an order that
	// names none: tests must set ObtainRequest.Profile. When false, exactly
	// one profile, "default" (90 days), is configured.
	Profiles bool
	// EABKeys (key id -> base64url HMAC key), when set, make pebble require
	// external account binding with one of them.
	EABKeys map[string]string
}

// Env is a running environment. Start registers its shutdown with t.Cleanup.
type Env struct {
	// DirectoryURL is pebble's ACME directory, https://127.0.0.1:PORT/dir.
	DirectoryURL string
	// CAFile is the PEM file to trust for DirectoryURL (pebble.minica.pem);
	// HTTPClient already trusts it.
	CAFile string
	// DNSResolver is the DNS front, 127.0.0.1:PORT (UDP and TCP), for
	// --dns-resolvers and lego's dns01.AddRecursiveNameservers.
	DNSResolver string
	// Cloudflare is the Cloudflare API emulator; its TXT records are served by
	// DNSResolver (and seen by pebble).
	Cloudflare *cftest.Server
	// Zones are the zones of the DNS front and of the Cloudflare account.
	Zones []string
	// HTTPPort and TLSPort are the ports pebble validates HTTP-01 and
	// TLS-ALPN-01 on (Options' values, or the free ports picked).
	HTTPPort, TLSPort int
	// ChallTestSrvURL is challtestsrv's management API (http://127.0.0.1:PORT),
	// e.g. for /add-a or /set-cname; see pebble's cmd/pebble-challtestsrv.
	ChallTestSrvURL string
	// PebbleManagementURL is pebble's management API (https, CAFile), e.g.
	// /roots/0, /intermediates/0, /set-renewal-info/.
	PebbleManagementURL string

	t        testing.TB
	front    *dnsFront
	chall    *proc
	pebble   *proc
	client   *http.Client // trusts CAFile
	plain    *http.Client // for challtestsrv
	cf       atomic.Pointer[cftest.Server]
	roots    []*x509.Certificate
	inters   []*x509.Certificate
	procsMu  sync.Mutex
	allProcs []*proc

	// For RestartPebble: the binaries, the working directory and Start's
	// options.
	bins binaries
	dir  string
	opts Options
}

// startAttempts is how often a process is restarted with new ports when a
// port picked as free was taken meanwhile.
const startAttempts = 3

// readyTimeout bounds the wait for a process to answer.
const readyTimeout = 30 * time.Second

// Start starts the environment. It fails the test (never skips it) when
// something cannot start, with the tail of the processes' output.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if len(o.Zones) == 0 {
		o.Zones = []string{"example.test"}
	}
	if o.CFTokens == nil {
		o.CFTokens = map[string]cftest.Perms{"good-token": {ZoneRead: true, DNSEdit: true}}
	}
	for _, p := range []*int{&o.HTTPPort, &o.TLSPort} {
		if *p == 0 {
			port, err := freePort(false)
			if err != nil {
				t.Fatalf("acmetest: %v", err)
			}
			*p = port
		}
	}

	bins := getBinaries()
	if bins.err != nil {
		t.Fatalf("acmetest: building pebble: %v", bins.err)
	}
	dir := t.TempDir()
	e := &Env{
		t:        t,
		Zones:    append([]string(nil), o.Zones...),
		HTTPPort: o.HTTPPort,
		TLSPort:  o.TLSPort,
		CAFile:   filepath.Join(bins.pebbleDir, "test", "certs", "pebble.minica.pem"),
		plain: &http.Client{Timeout: 10 * time.Second,
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	caPEM, err := os.ReadFile(e.CAFile)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("acmetest: no certificate in %s", e.CAFile)
	}
	e.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}}
	t.Cleanup(e.client.CloseIdleConnections)

	// challtestsrv: the DNS data, every name -> 127.0.0.1, its own challenge
	// servers off so the ports stay free for the listener under test.
	var challDNS string
	e.chall = e.startWithRetry("pebble-challtestsrv", func() (*proc, func() error, error) {
		mport, err := freePort(false)
		if err != nil {
			return nil, nil, err
		}
		dport, err := freePort(true)
		if err != nil {
			return nil, nil, err
		}
		mgmt := fmt.Sprintf("127.0.0.1:%d", mport)
		challDNS = fmt.Sprintf("127.0.0.1:%d", dport)
		p, err := startProc("pebble-challtestsrv", bins.chall, dir, nil, []string{
			"-management", mgmt, "-dnsserver", challDNS,
			"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
			"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		})
		if err != nil {
			return nil, nil, err
		}
		e.ChallTestSrvURL = "http://" + mgmt
		return p, func() error {
			for _, network := range []string{"udp", "tcp"} {
				if _, err := query(network, challDNS, "ready.acmetest.invalid", dns.TypeA); err != nil {
					return err
				}
			}
			resp, err := e.plain.Get(e.ChallTestSrvURL + "/")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		}, nil
	})

	e.front, err = startDNSFront(o.Zones, challDNS)
	if err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	t.Cleanup(e.front.stop)
	e.DNSResolver = e.front.addr

	// Registered after challtestsrv's cleanup: closed (and its handlers
	// finished) before challtestsrv stops.
	e.Cloudflare = cftest.New(t, cftest.Options{Zones: o.Zones, Tokens: o.CFTokens, OnTXT: e.onTXT})
	e.cf.Store(e.Cloudflare)

	// pebble, resolving through the DNS front.
	e.bins, e.dir, e.opts = bins, dir, o
	e.startPebble(o)
	return e
}

// startPebble starts pebble with o's profiles and EAB keys on new ports,
// resolving through the DNS front, and fetches its new hierarchy.
func (e *Env) startPebble(o Options) {
	e.t.Helper()
	o.HTTPPort, o.TLSPort = e.HTTPPort, e.TLSPort
	cfgPath := filepath.Join(e.dir, "pebble-config.json")
	e.pebble = e.startWithRetry("pebble", func() (*proc, func() error, error) {
		lport, err := freePort(false)
		if err != nil {
			return nil, nil, err
		}
		mport, err := freePort(false)
		if err != nil {
			return nil, nil, err
		}
		listen := fmt.Sprintf("127.0.0.1:%d", lport)
		mgmt := fmt.Sprintf("127.0.0.1:%d", mport)
		if err := writePebbleConfig(cfgPath, e.bins.pebbleDir, listen, mgmt, o); err != nil {
			return nil, nil, err
		}
		p, err := startProc("pebble", e.bins.pebble, e.dir, []string{
			"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0",
		}, []string{"-config", cfgPath, "-dnsserver", e.DNSResolver})
		if err != nil {
			return nil, nil, err
		}
		e.DirectoryURL = "https://" + listen + "/dir"
		e.PebbleManagementURL = "https://" + mgmt
		return p, func() error {
			if _, err := e.get(e.DirectoryURL); err != nil {
				return err
			}
			_, err := e.get(e.PebbleManagementURL + "/roots/0")
			return err
		}, nil
	})

	// Pebble makes a new hierarchy at each start and keeps it in memory only:
	// fetch it now so that Roots works after StopPebble too.
	e.roots = e.fetchCerts(e.PebbleManagementURL + "/roots/0")
	e.inters = e.fetchCerts(e.PebbleManagementURL + "/intermediates/0")
}

// startWithRetry starts a process with start and waits until ready succeeds.
func (e *Env) startWithRetry(name string, start func() (*proc, func() error, error)) *proc {
	e.t.Helper()
	for attempt := 1; ; attempt++ {
		p, ready, err := start()
		if err != nil {
			e.t.Fatalf("acmetest: %s: %v", name, err)
		}
		e.procsMu.Lock()
		e.allProcs = append(e.allProcs, p)
		e.procsMu.Unlock()
		e.t.Cleanup(p.stop)
		err = p.waitFor(readyTimeout, ready)
		if err == nil {
			return p
		}
		p.stop()
		if p.addrInUse() && attempt < startAttempts {
			continue
		}
		e.t.Fatalf("acmetest: %v\n%s", err, p.tail())
	}
}

func writePebbleConfig(path, pebbleDir, listen, mgmt string, o Options) error {
	type profile struct {
		Description    string `json:"description"`
		ValidityPeriod uint64 `json:"validityPeriod"`
	}
	profiles := map[string]profile{
		"default": {Description: "acmetest default profile (90 days)", ValidityPeriod: 90 * 24 * 3600},
	}
	if o.Profiles {
		profiles["shortlived"] = profile{Description: "acmetest short-lived profile (6 days)", ValidityPeriod: 6 * 24 * 3600}
	}
	certs := filepath.Join(pebbleDir, "test", "certs", "localhost")
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    filepath.Join(certs, "cert.pem"),
		"privateKey":                     filepath.Join(certs, "key.pem"),
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": len(o.EABKeys) > 0,
		"externalAccountMACKeys":         o.EABKeys,
		"domainBlocklist":                []string{"blocked-domain.example"},
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       profiles,
	}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// get fetches url with the client that trusts CAFile and wants 200.
func (e *Env) get(url string) ([]byte, error) {
	resp, err := e.client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

func (e *Env) fetchCerts(url string) []*x509.Certificate {
	e.t.Helper()
	body, err := e.get(url)
	if err != nil {
		e.t.Fatalf("acmetest: %v\n%s", err, e.pebble.tail())
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, body = pem.Decode(body)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			e.t.Fatalf("acmetest: %s: %v", url, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		e.t.Fatalf("acmetest: %s: no certificate", url)
	}
	return certs
}

// HTTPClient returns a new HTTP client that trusts CAFile (for lego's
// Config.HTTPClient) and uses no proxy.
func (e *Env) HTTPClient() *http.Client {
	tr := e.client.Transport.(*http.Transport).Clone()
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

// Roots returns a pool with pebble's issuing root, to verify issued chains
// (with the chain's intermediates, or Intermediates). Pebble makes a new root
// at each start; the pool is the one fetched by Start.
func (e *Env) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range e.roots {
		pool.AddCert(c)
	}
	return pool
}

// Intermediates returns a pool with pebble's intermediate certificate, for
// verifying a leaf that was stored without its chain.
func (e *Env) Intermediates(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range e.inters {
		pool.AddCert(c)
	}
	return pool
}

// StopPebble stops the ACME server: afterwards DirectoryURL refuses
// connections ("the CA went away"). The DNS front, challtestsrv and the
// Cloudflare emulator keep running. It is idempotent.
func (e *Env) StopPebble() { e.pebble.stop() }

// SetRejectChallenges makes every validation for host fail (reject=true) or
// work again (false): challtestsrv answers SERVFAIL for host and for
// _acme-challenge.host, so pebble cannot resolve host for HTTP-01 and
// TLS-ALPN-01 (the order's authorization becomes invalid with a DNS
// problem) and nobody can read its DNS-01 TXT record (lego's own propagation
// check fails first). SOA/NS answers of the DNS front are not affected.
func (e *Env) SetRejectChallenges(t testing.TB, host string, reject bool) {
	t.Helper()
	path := "/clear-servfail"
	if reject {
		path = "/set-servfail"
	}
	host = strings.TrimSuffix(host, ".")
	for _, h := range []string{host, "_acme-challenge." + host} {
		if err := e.challPost(path, map[string]string{"host": dns.Fqdn(h)}); err != nil {
			t.Fatalf("acmetest: %v", err)
		}
	}
}

// Resolve makes host resolve to addr (an IPv4 address such as 127.0.0.3)
// instead of 127.0.0.1, so pebble validates HTTP-01 and TLS-ALPN-01 for
// host there: the address of one of several replicas. Pebble's VA asks
// the DNS for every validation, so it takes effect at the next one.
func (e *Env) Resolve(t testing.TB, host, addr string) {
	t.Helper()
	host = dns.Fqdn(strings.TrimSuffix(host, "."))
	if err := e.challPost("/clear-a", map[string]string{"host": host}); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
	if err := e.challPost("/add-a", map[string]any{"host": host, "addresses": []string{addr}}); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// Logs returns the tail of the output of pebble and challtestsrv.
func (e *Env) Logs() string {
	e.procsMu.Lock()
	defer e.procsMu.Unlock()
	var parts []string
	for _, p := range e.allProcs {
		parts = append(parts, p.tail())
	}
	return strings.Join(parts, "\n")
}

// onTXT mirrors the Cloudflare emulator's TXT records into challtestsrv.
// cftest serializes the calls, in the order of the changes.
func (e *Env) onTXT(fqdn, value string, present bool) {
	host := dns.Fqdn(fqdn)
	var err error
	if present {
		err = e.challPost("/set-txt", map[string]string{"host": host, "value": value})
	} else {
		// /clear-txt removes every value of the name; a wildcard and its
		// apex share one: put back the values that remain.
		err = e.challPost("/clear-txt", map[string]string{"host": host})
		for _, v := range e.cf.Load().TXT(fqdn) {
			if err != nil {
				break
			}
			err = e.challPost("/set-txt", map[string]string{"host": host, "value": v})
		}
	}
	if err != nil {
		e.t.Errorf("acmetest: mirroring Cloudflare TXT %s=%q (present=%v) into challtestsrv: %v",
			fqdn, value, present, err)
	}
}

func (e *Env) challPost(path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := e.plain.Post(e.ChallTestSrvURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("challtestsrv %s %s: %s %s", path, b, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// String describes the environment, for logs.
func (e *Env) String() string {
	return fmt.Sprintf("acmetest.Env{directory=%s dns=%s cloudflare=%s http-01=:%d tls-alpn-01=:%d}",
		e.DirectoryURL, e.DNSResolver, e.Cloudflare.URL, e.HTTPPort, e.TLSPort)
}
