package doctor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// TestCAAPolicy: the decision on a relevant CAA set, without DNS.
func TestCAAPolicy(t *testing.T) {
	p := caaPolicy{identities: []string{"ca.test"}, accountURI: "https://ca.test/acct/1"}
	caa := func(tag, value string) *dns.CAA { return &dns.CAA{Tag: tag, Value: value} }
	host := caaTarget{name: "www.example.com.", challenge: "http-01"}
	wild := caaTarget{name: "example.com.", wildcard: true, challenge: "dns-01"}
	tests := []struct {
		desc    string
		t       caaTarget
		rrs     []*dns.CAA
		wantMsg string // "" when allowed
		wantFix string
	}{
		{desc: "no records", t: host},
		{desc: "allowed", t: host, rrs: []*dns.CAA{caa("issue", "ca.test")}},
		{desc: "allowed, case and spaces", t: host, rrs: []*dns.CAA{caa("ISSUE", " CA.test ;accounturi=https://ca.test/acct/1 ; validationmethods = dns-01, http-01")}},
		{desc: "one of two", t: host, rrs: []*dns.CAA{caa("issue", "other.test"), caa("issue", "ca.test")}},
		{desc: "only iodef", t: host, rrs: []*dns.CAA{caa("iodef", "mailto:x@example.com")}},
		{desc: "issuewild does not restrict a plain host", t: host, rrs: []*dns.CAA{caa("issuewild", "other.test")}},
		{desc: "other CA only", t: host, rrs: []*dns.CAA{caa("issue", "other.test")},
			wantMsg: `CAA does not allow ca.test: example.com. CAA 0 issue "other.test"`, wantFix: `add the record example.com. CAA 0 issue "ca.test"`},
		{desc: "no CA at all", t: host, rrs: []*dns.CAA{caa("issue", ";")},
			wantMsg: `CAA does not allow ca.test`, wantFix: `add the record example.com. CAA 0 issue "ca.test"`},
		{desc: "wildcard: issuewild takes precedence", t: wild, rrs: []*dns.CAA{caa("issue", "ca.test"), caa("issuewild", "other.test")},
			wantMsg: `issuewild "other.test"`, wantFix: `add the record example.com. CAA 0 issuewild "ca.test"`},
		{desc: "wildcard: issuewild allows", t: wild, rrs: []*dns.CAA{caa("issue", "other.test"), caa("issuewild", "ca.test")}},
		{desc: "wildcard: issue applies without issuewild", t: wild, rrs: []*dns.CAA{caa("issue", "other.test")},
			wantMsg: `issue "other.test"`, wantFix: `CAA 0 issue "ca.test"`},
		{desc: "accounturi of another account", t: host, rrs: []*dns.CAA{caa("issue", "ca.test; accounturi=https://ca.test/acct/9")},
			wantMsg: "allows only the account https://ca.test/acct/9, not p2ptls's https://ca.test/acct/1",
			wantFix: `to example.com. CAA 0 issue "ca.test; accounturi=https://ca.test/acct/1"`},
		{desc: "validationmethods without the challenge", t: host, rrs: []*dns.CAA{caa("issue", "ca.test; validationmethods=dns-01")},
			wantMsg: "does not allow the mapping's challenge http-01",
			wantFix: `to example.com. CAA 0 issue "ca.test; validationmethods=dns-01,http-01"`},
		{desc: "unknown critical tag", t: host, rrs: []*dns.CAA{caa("issue", "ca.test"), {Flag: 128, Tag: "tbs", Value: "x"}},
			wantMsg: "critical and unknown", wantFix: `remove the record example.com. CAA 128 tbs "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			msg, fix := p.check(tc.t, caaResult{done: true, owner: "example.com.", rrs: tc.rrs})
			if tc.wantMsg == "" {
				if msg != "" {
					t.Errorf("refused: %s (fix %s)", msg, fix)
				}
				return
			}
			if !strings.Contains(msg, tc.wantMsg) || !strings.Contains(fix, tc.wantFix) {
				t.Errorf("msg %q\nfix %q\nwant %q and %q", msg, fix, tc.wantMsg, tc.wantFix)
			}
		})
	}
}

// TestCheckCAAChalltestsrv: doctor's CAA check against the records of
// challtestsrv, through the DNS front, with a real account at pebble.
func TestCheckCAAChalltestsrv(t *testing.T) {
	env := acmetest.Start(t, acmetest.Options{})
	ident := "pebble.letsencrypt.org"
	type rec struct {
		host string
		caa  []acmetest.CAA
	}
	tests := []struct {
		desc      string
		host      string // a wildcard is DNS-01, anything else HTTP-01
		records   func(acctURI string) []rec
		servfail  string
		status    Status
		msg, hint string
	}{
		{desc: "allowed", host: "ok.example.test", status: OK,
			records: func(string) []rec { return []rec{{"ok.example.test", []acmetest.CAA{{Tag: "issue", Value: ident}}}} },
			msg:     "1 with CAA records that allow it"},
		{desc: "no record", host: "none.example.test", status: OK, msg: "0 with CAA records that allow it, 1 without any"},
		{desc: "other CA only", host: "other.example.test", status: Fail,
			records: func(string) []rec {
				return []rec{{"other.example.test", []acmetest.CAA{{Tag: "issue", Value: "letsencrypt.org"}}}}
			},
			msg:  `other.example.test (mapping m): CAA does not allow pebble.letsencrypt.org: other.example.test. CAA 0 issue "letsencrypt.org"`,
			hint: `add the record other.example.test. CAA 0 issue "pebble.letsencrypt.org"`},
		{desc: "wildcard: issuewild refuses though issue allows", host: "*.wild.example.test", status: Fail,
			records: func(string) []rec {
				return []rec{{"wild.example.test", []acmetest.CAA{{Tag: "issue", Value: ident}, {Tag: "issuewild", Value: "letsencrypt.org"}}}}
			},
			msg: `*.wild.example.test (mapping m): CAA does not allow`, hint: `wild.example.test. CAA 0 issuewild "pebble.letsencrypt.org"`},
		{desc: "wildcard: issuewild allows though issue refuses", host: "*.wild2.example.test", status: OK,
			records: func(string) []rec {
				return []rec{{"wild2.example.test", []acmetest.CAA{{Tag: "issue", Value: "letsencrypt.org"}, {Tag: "issuewild", Value: ident}}}}
			}},
		{desc: "accounturi of another account", host: "acct.example.test", status: Fail,
			records: func(string) []rec {
				return []rec{{"acct.example.test", []acmetest.CAA{{Tag: "issue", Value: ident + "; accounturi=https://127.0.0.1:1/my-account/999"}}}}
			},
			msg: "allows only the account https://127.0.0.1:1/my-account/999", hint: "accounturi=https://"},
		{desc: "accounturi of the account", host: "acct2.example.test", status: OK,
			records: func(uri string) []rec {
				return []rec{{"acct2.example.test", []acmetest.CAA{{Tag: "issue", Value: ident + "; accounturi=" + uri}}}}
			}},
		{desc: "validationmethods without the challenge", host: "vm.example.test", status: Fail,
			records: func(string) []rec {
				return []rec{{"vm.example.test", []acmetest.CAA{{Tag: "issue", Value: ident + "; validationmethods=dns-01"}}}}
			},
			msg: "does not allow the mapping's challenge http-01", hint: `vm.example.test. CAA 0 issue "pebble.letsencrypt.org; validationmethods=dns-01,http-01"`},
		{desc: "parent's record inherited", host: "www.parent.example.test", status: Fail,
			records: func(string) []rec {
				return []rec{{"parent.example.test", []acmetest.CAA{{Tag: "issue", Value: "letsencrypt.org"}}}}
			},
			msg: `www.parent.example.test (mapping m): CAA does not allow pebble.letsencrypt.org: parent.example.test. CAA 0 issue "letsencrypt.org"`},
		{desc: "the closest record set wins", host: "www.near.example.test", status: OK,
			records: func(string) []rec {
				return []rec{{"near.example.test", []acmetest.CAA{{Tag: "issue", Value: "letsencrypt.org"}}},
					{"www.near.example.test", []acmetest.CAA{{Tag: "issue", Value: ident}}}}
			}},
		{desc: "SERVFAIL warns", host: "broken.example.test", servfail: "broken.example.test", status: Warn,
			msg: "broken.example.test (mapping m): the CAA lookup failed"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := newStore(t)
			addListener(t, s, state.Listener{Name: "web", Addr: "127.0.0.1:8443", HTTPAddr: "127.0.0.1:8080"})
			acct, err := acme.Register(context.Background(), s, acme.RegisterInput{Email: "ops@example.test",
				Directory: env.DirectoryURL, CAFile: env.CAFile, AgreeTOS: true}, now0)
			if err != nil {
				t.Fatal(err)
			}
			m := state.Mapping{ID: "m", Listener: "web", Hosts: []string{tc.host}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}
			if strings.HasPrefix(tc.host, "*.") {
				addCredential(t, s, "cf", true, "good-token")
				m.Challenge, m.DNSCredential = state.ChallengeDNS01, "cf"
			}
			addMapping(t, s, m)
			if tc.records != nil {
				for _, r := range tc.records(acct.URI) {
					env.AddCAA(t, r.host, r.caa...)
				}
			}
			if tc.servfail != "" {
				env.SetServFail(t, tc.servfail, true)
			}
			in := input(s)
			in.Network, in.DNSResolvers = true, []string{env.DNSResolver}
			c := run(in, checkCAA)
			if c.Status != tc.status || !strings.Contains(c.Message, tc.msg) || !strings.Contains(c.Hint, tc.hint) {
				t.Errorf("got %s: %s (hint %q)\nwant %s with %q, hint %q", c.Status, c.Message, c.Hint, tc.status, tc.msg, tc.hint)
			}
		})
	}
}

// TestCheckCAABounded: names are looked up once however many hosts share
// them (each parent once too), and a check that runs out of time says how
// far it got instead of going on.
func TestCheckCAABounded(t *testing.T) {
	var queries atomic.Int64
	seen := map[string]*atomic.Int64{}
	const n = 300
	for i := range n {
		seen[fmt.Sprintf("h%d.zone.test.", i)] = new(atomic.Int64)
	}
	seen["zone.test."], seen["test."] = new(atomic.Int64), new(atomic.Int64)
	addr := startDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		if c := seen[r.Question[0].Name]; c != nil {
			c.Add(1)
		}
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})
	env := acmetest.Start(t, acmetest.Options{}) // the directory and the account
	s := newStore(t)
	addListener(t, s, state.Listener{Name: "web", Addr: "127.0.0.1:8443", HTTPAddr: "127.0.0.1:8080"})
	if _, err := acme.Register(context.Background(), s, acme.RegisterInput{Email: "ops@example.test",
		Directory: env.DirectoryURL, CAFile: env.CAFile, AgreeTOS: true}, now0); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		addMapping(t, s, state.Mapping{ID: fmt.Sprintf("m%d", i), Listener: "web", Hosts: []string{fmt.Sprintf("h%d.zone.test", i)},
			Source: state.SourceACME, Challenge: state.ChallengeHTTP01})
	}
	in := input(s)
	in.Network, in.DNSResolvers = true, []string{addr}
	c := run(in, checkCAA)
	if c.Status != OK {
		t.Fatalf("got %s: %s", c.Status, c.Message)
	}
	for name, cnt := range seen {
		if got := cnt.Load(); got != 1 {
			t.Errorf("%s was asked %d times, want once", name, got)
		}
	}
	if got := queries.Load(); got != n+2 {
		t.Errorf("%d queries, want %d", got, n+2)
	}

	old := caaTimeCap
	caaTimeCap = time.Nanosecond
	t.Cleanup(func() { caaTimeCap = old })
	c = run(in, checkCAA)
	if c.Status != Warn || !strings.Contains(c.Message, fmt.Sprintf("stopped early after 1ns: 0 of %d names checked", n)) {
		t.Errorf("with no time left: %s: %s", c.Status, c.Message)
	}
}

// startDNS serves handler on UDP 127.0.0.1 and returns its address.
func startDNS(t *testing.T, handler dns.HandlerFunc) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestCAATargets: IP hosts are left out, a wildcard is checked at its base
// name, and a name is checked once per challenge however many mappings
// have it.
func TestCAATargets(t *testing.T) {
	cfg := &state.Config{Mappings: []state.Mapping{
		{ID: "a", Source: state.SourceACME, Challenge: "http-01", Hosts: []string{"WWW.Example.com", "192.0.2.1", "2001:db8::1"}},
		{ID: "b", Source: state.SourceACME, Challenge: "dns-01", Hosts: []string{"*.example.com", "www.example.com"}},
		{ID: "c", Source: state.SourceACME, Challenge: "http-01", Hosts: []string{"www.example.com"}},
		{ID: "d", Source: state.SourceSelfSigned, Hosts: []string{"self.example.com"}},
	}}
	targets, owners := caaTargets(cfg)
	want := []caaTarget{
		{name: "www.example.com.", challenge: "http-01"},
		{name: "example.com.", wildcard: true, challenge: "dns-01"},
		{name: "www.example.com.", challenge: "dns-01"},
	}
	if fmt.Sprint(targets) != fmt.Sprint(want) || strings.Join(owners, ",") != "a,b,b" {
		t.Errorf("targets %v owners %v, want %v a,b,b", targets, owners, want)
	}
}
