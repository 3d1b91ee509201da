package doctor

import (
	"context"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

const acmeDir = "https://acme.example.test/directory"

// acmeState has listeners "web" (:443, HTTP :80) and "alt" (:8443, HTTP
// :8080), "bare" (:9443, no HTTP address), an ACME account and an enabled
// DNS credential "cf" with its token.
func acmeState(t *testing.T) *state.Dir {
	t.Helper()
	s := newStore(t)
	addListener(t, s, state.Listener{Name: "web", Addr: ":443", HTTPAddr: ":80"})
	addListener(t, s, state.Listener{Name: "alt", Addr: ":8443", HTTPAddr: ":8080"})
	addListener(t, s, state.Listener{Name: "bare", Addr: ":9443"})
	addCredential(t, s, "cf", true, "cf-token-0123456789")
	registerAccount(t, s, acmeDir)
	return s
}

func acmeMapping(id, listener, challenge, cred string, hosts ...string) state.Mapping {
	return state.Mapping{ID: id, Listener: listener, Hosts: hosts, Source: state.SourceACME, Challenge: challenge, DNSCredential: cred}
}

// issue puts an ACME certificate for m's hosts in place, valid from
// now0 for validity, with meta.
func issue(t *testing.T, s *state.Dir, id string, hosts []string, validity time.Duration, meta mappings.Meta) {
	t.Helper()
	kp, err := pki.SelfSigned(pki.ParseNames(hosts), now0, validity)
	if err != nil {
		t.Fatal(err)
	}
	meta.NotAfter = kp.Cert.NotAfter
	meta.IssuedAt = now0
	if meta.NextRenewalAt.IsZero() {
		meta.NextRenewalAt = pki.RenewalTime(kp.Cert)
	}
	if err := mappings.WriteCertificate(context.Background(), s, id, kp, meta); err != nil {
		t.Fatal(err)
	}
}

func TestACMEAccount(t *testing.T) {
	s := newStore(t)
	addListener(t, s, state.Listener{Name: "web", Addr: ":443", HTTPAddr: ":80"})
	want(t, run(input(s), checkACMEAccount), IDACMEAccount, OK, "no ACME mappings")
	addMapping(t, s, acmeMapping("app", "web", "http-01", "", "app.example.com"))
	c := run(input(s), checkACMEAccount)
	want(t, c, IDACMEAccount, Fail, "1 ACME mapping cannot be issued", "no ACME account")
	wantHint(t, c, "acme account register")
	registerAccount(t, s, acmeDir)
	want(t, run(input(s), checkACMEAccount), IDACMEAccount, OK, "ops@example.com")
}

func TestWildcardChallenge(t *testing.T) {
	s := acmeState(t)
	want(t, run(input(s), checkWildcardChallenge), IDWildcardChallenge, OK, "no mappings")
	addMapping(t, s, acmeMapping("wild", "web", "dns-01", "cf", "*.example.com"))
	want(t, run(input(s), checkWildcardChallenge), IDWildcardChallenge, OK, "1 ACME mapping with wildcard hosts, all with DNS-01")

	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			s := newStore(t)
			writeConfig(t, s, `schema_version = 1
[[listeners]]
name = "web"
addr = ":443"
http_addr = ":80"
[[mappings]]
id = "wild"
listener = "web"
hosts = ["*.example.com", "example.com"]
source = "acme"
challenge = "`+challenge+`"
`)
			c := run(input(s), checkWildcardChallenge)
			want(t, c, IDWildcardChallenge, Fail, "mapping wild", "*.example.com", "need DNS-01")
			wantHint(t, c, "dns-01")
		})
	}
}

func TestDNSCredential(t *testing.T) {
	s := acmeState(t)
	addCredential(t, s, "off", false, "off-token-0123456789")
	addCredential(t, s, "notoken", true, "")
	want(t, run(input(s), checkDNSCredential), IDDNSCredential, OK, "no DNS-01 mappings")
	addMapping(t, s, acmeMapping("good", "web", "dns-01", "cf", "good.example.com"))
	want(t, run(input(s), checkDNSCredential), IDDNSCredential, OK, "1 DNS-01 mapping")

	addMapping(t, s, acmeMapping("disabled", "web", "dns-01", "off", "d.example.com"))
	addMapping(t, s, acmeMapping("tokenless", "web", "dns-01", "notoken", "t.example.com"))
	c := run(input(s), checkDNSCredential)
	want(t, c, IDDNSCredential, Fail, `mapping disabled uses the DNS credential "off", which is disabled`, `mapping tokenless uses the DNS credential "notoken"`, "token file")
	wantHint(t, c, "dns-credential enable off", "dns-credential add notoken --replace")

	// A hand-written record can name a credential that does not exist.
	mustWrite(t, s, state.RecordName("ghost"), []byte("id = \"ghost\"\nlistener = \"web\"\nhosts = [\"g.example.com\"]\nsource = \"acme\"\nchallenge = \"dns-01\"\ndns_credential = \"nope\"\n"), state.SecretMode)
	want(t, run(input(s), checkDNSCredential), IDDNSCredential, Fail, `"nope", which does not exist`)
}

func TestChallengePorts(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		m      state.Mapping
		status Status
		msg    string
	}{
		{"HTTP-01 on port 80", acmeMapping("a", "web", "http-01", "", "a.example.com"), OK, "validate on listeners"},
		{"TLS-ALPN-01 on port 443", acmeMapping("a", "web", "tls-alpn-01", "", "a.example.com"), OK, "validate on listeners"},
		{"DNS-01 anywhere", acmeMapping("a", "bare", "dns-01", "cf", "a.example.com"), OK, "no HTTP-01 or TLS-ALPN-01"},
		{"HTTP-01 without an HTTP address", acmeMapping("a", "bare", "http-01", "", "a.example.com"), Fail, "listener bare has no HTTP address"},
		{"HTTP-01 on port 8080", acmeMapping("a", "alt", "http-01", "", "a.example.com"), Warn, ":8080, not port 80"},
		{"TLS-ALPN-01 on port 8443", acmeMapping("a", "alt", "tls-alpn-01", "", "a.example.com"), Warn, ":8443, not port 443"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := acmeState(t)
			addMapping(t, s, tc.m)
			c := run(input(s), checkChallengePorts)
			want(t, c, IDChallengePorts, tc.status, tc.msg)
			if tc.status == Warn {
				wantHint(t, c, "port forwarding")
			}
		})
	}
}

func TestCoverage(t *testing.T) {
	t.Run("self-signed covers its hosts", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, state.Mapping{ID: "app", Listener: "web", Hosts: []string{"app.example.com", "www.example.com"}, Source: state.SourceSelfSigned})
		want(t, run(input(s), checkCoverage), IDCoverage, OK, "1 mapping (2 hosts)")
	})
	t.Run("ACME not issued yet", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, acmeMapping("app", "web", "http-01", "", "app.example.com"))
		c := run(input(s), checkCoverage)
		want(t, c, IDCoverage, Fail, "mapping app", "not issued yet")
		wantHint(t, c, "p2ptls cert issue app")
	})
	t.Run("ACME issued", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, acmeMapping("wild", "web", "dns-01", "cf", "*.example.com", "example.com"))
		issue(t, s, "wild", []string{"*.example.com", "example.com"}, 90*day, mappings.Meta{})
		want(t, run(input(s), checkCoverage), IDCoverage, OK)
	})
	t.Run("certificate lacks a host", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, acmeMapping("app", "web", "dns-01", "cf", "app.example.com", "x.y.example.com"))
		// A wildcard SAN covers one label: not x.y.example.com.
		issue(t, s, "app", []string{"*.example.com"}, 90*day, mappings.Meta{})
		want(t, run(input(s), checkCoverage), IDCoverage, Fail, "does not cover x.y.example.com (it covers *.example.com)")
	})
	t.Run("ACME not issued yet, served meanwhile by a valid wildcard", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, acmeMapping("wild", "web", "dns-01", "cf", "*.example.com"))
		issue(t, s, "wild", []string{"*.example.com"}, 90*day, mappings.Meta{})
		addMapping(t, s, acmeMapping("dns", "web", "dns-01", "cf", "dns.example.com"))
		c := run(input(s), checkCoverage)
		want(t, c, IDCoverage, Warn, "mapping dns (dns.example.com) has no certificate (not issued yet); meanwhile mapping wild serves its hosts with its valid wildcard certificate")
		wantHint(t, c, "p2ptls cert issue dns")
		// Once the wildcard has expired, clients refuse what serves the name.
		in := input(s)
		in.Now = now0.Add(91 * day)
		want(t, run(in, checkCoverage), IDCoverage, Fail, "mapping dns (dns.example.com) has no certificate: not issued yet")
	})
	t.Run("a wildcard that is not issued either serves nothing", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, acmeMapping("wild", "web", "dns-01", "cf", "*.example.com"))
		addMapping(t, s, acmeMapping("dns", "web", "dns-01", "cf", "dns.example.com"))
		want(t, run(input(s), checkCoverage), IDCoverage, Fail, "mapping dns", "mapping wild")
	})
	t.Run("key of another certificate", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, state.Mapping{ID: "app", Listener: "web", Hosts: []string{"app.example.com"}, Source: state.SourceSelfSigned})
		mustWrite(t, s, "certs/public/app/key.pem", mustCA(t).KeyPEM, state.SecretMode)
		want(t, run(input(s), checkCoverage), IDCoverage, Fail, "does not match")
	})
}

func TestExpiry(t *testing.T) {
	s := acmeState(t)
	want(t, run(input(s), checkExpiry), IDExpiry, OK, "no mappings")
	addMapping(t, s, state.Mapping{ID: "self", Listener: "web", Hosts: []string{"self.example.com"}, Source: state.SourceSelfSigned, Days: 90})
	for _, tc := range []struct {
		after  time.Duration
		status Status
		msg    string
	}{
		{0, OK, "1 certificate checked"},
		{70 * day, Warn, "due for renewal"},
		{91 * day, Fail, "expired on"},
	} {
		in := input(s)
		in.Now = now0.Add(tc.after)
		c := run(in, checkExpiry)
		want(t, c, IDExpiry, tc.status, tc.msg)
		if tc.status != OK {
			wantHint(t, c, "cert issue self")
		}
	}

	// An ACME certificate past its renewal time is mappings.renewal_due's
	// warning (after a grace), never this check's: it fails only once expired.
	t.Run("ACME renewal overdue", func(t *testing.T) {
		s := acmeState(t)
		addMapping(t, s, acmeMapping("app", "web", "http-01", "", "app.example.com"))
		issue(t, s, "app", []string{"app.example.com"}, 90*day, mappings.Meta{NextRenewalAt: now0.Add(10 * day)})
		in := input(s)
		for _, d := range []time.Duration{5 * day, 12 * day, 70 * day} {
			in.Now = now0.Add(d)
			want(t, run(in, checkExpiry), IDExpiry, OK)
		}
		want(t, run(in, checkRenewalDue), IDRenewalDue, Warn, "renewal was due on")
		in.Now = now0.Add(91 * day)
		want(t, run(in, checkExpiry), IDExpiry, Fail, "expired")
	})
}

func TestLastRenewal(t *testing.T) {
	s := acmeState(t)
	addMapping(t, s, acmeMapping("new", "web", "http-01", "", "new.example.com"))
	addMapping(t, s, acmeMapping("old", "web", "http-01", "", "old.example.com"))
	issue(t, s, "old", []string{"old.example.com"}, 90*day, mappings.Meta{})
	want(t, run(input(s), checkLastRenewal), IDLastRenewal, OK, "2 ACME mappings")

	// The renewal of "old" failed: its certificate still serves.
	issue(t, s, "old", []string{"old.example.com"}, 90*day, mappings.Meta{LastAttemptAt: now0, LastError: "connection refused", Attempts: 1, RetryAt: now0.Add(5 * time.Minute)})
	c := run(input(s), checkLastRenewal)
	want(t, c, IDLastRenewal, Warn, "mapping old", "connection refused", "serves until")
	wantHint(t, c, "cert issue old")

	// The first issuance of "new" failed: nothing serves its hosts.
	if err := mappings.SaveMeta(context.Background(), s, "new", mappings.Meta{LastAttemptAt: now0, LastError: "rate limited"}); err != nil {
		t.Fatal(err)
	}
	want(t, run(input(s), checkLastRenewal), IDLastRenewal, Fail, "mapping new", "rate limited", "no valid certificate")
}
