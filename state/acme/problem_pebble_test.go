package acme

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v4/acme"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

// -update rewrites testdata/problems/*.json from real orders against
// pebble (TestProblemsFromPebble).
var update = flag.Bool("update", false, "rewrite testdata/problems from pebble")

// errNode is an error tree as lego built it, for the fixtures: the texts
// and the types the summary looks at (joins, wrappers, problem documents,
// rate limits), so that a fixture rebuilds an error the summary reads as
// it read the real one.
type errNode struct {
	Kind       string                   `json:"kind"` // join, wrap, problem, rate_limited, text
	Msg        string                   `json:"msg,omitempty"`
	Problem    *legoacme.ProblemDetails `json:"problem,omitempty"`
	RetryAfter string                   `json:"retry_after,omitempty"`
	Children   []errNode                `json:"children,omitempty"`
}

func capture(err error) errNode {
	var rl *legoacme.RateLimitedError
	if errors.As(err, &rl) && errors.Unwrap(err) == rl.ProblemDetails || err == error(rl) {
		return errNode{Kind: "rate_limited", Problem: rl.ProblemDetails, RetryAfter: rl.RetryAfter}
	}
	switch e := err.(type) {
	case *legoacme.ProblemDetails:
		return errNode{Kind: "problem", Problem: e}
	case interface{ Unwrap() []error }:
		n := errNode{Kind: "join", Msg: err.Error()}
		for _, c := range e.Unwrap() {
			n.Children = append(n.Children, capture(c))
		}
		return n
	}
	if inner := errors.Unwrap(err); inner != nil {
		return errNode{Kind: "wrap", Msg: err.Error(), Children: []errNode{capture(inner)}}
	}
	return errNode{Kind: "text", Msg: err.Error()}
}

// fixedWrap is a wrapper rebuilt from a fixture: its text, and what it wraps.
type fixedWrap struct {
	msg string
	err error
}

func (e *fixedWrap) Error() string { return e.msg }
func (e *fixedWrap) Unwrap() error { return e.err }

// fixedJoin is a joined error rebuilt from a fixture: lego's
// per-identifier errors (resolver.obtainError) say their domains only in
// their text.
type fixedJoin struct {
	msg  string
	errs []error
}

func (e *fixedJoin) Error() string   { return e.msg }
func (e *fixedJoin) Unwrap() []error { return e.errs }

func (n errNode) rebuild() error {
	switch n.Kind {
	case "rate_limited":
		return &legoacme.RateLimitedError{ProblemDetails: n.Problem, RetryAfter: n.RetryAfter}
	case "problem":
		return n.Problem
	case "join":
		var errs []error
		for _, c := range n.Children {
			errs = append(errs, c.rebuild())
		}
		return &fixedJoin{n.Msg, errs}
	case "wrap":
		return &fixedWrap{n.Msg, n.Children[0].rebuild()}
	}
	return errors.New(n.Msg)
}

// problemFixture is one failure captured from pebble.
type problemFixture struct {
	Scenario string  `json:"scenario"`
	Text     string  `json:"text"` // err.Error() as lego said it
	Error    errNode `json:"error"`
}

func loadProblemFixture(t testing.TB, name string) problemFixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "problems", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f problemFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

// pebbleScenario is a mapping whose order pebble (or the fault proxy in
// front of it) refuses, and the summary that failure must get.
type pebbleScenario struct {
	name    string
	mapping state.Mapping
	fault   *acmetest.Fault // answered to new-order by the proxy
	want    string          // regexp of the summary
	reason  string
}

// TestProblemsFromPebble runs real failing orders against pebble and
// challtestsrv and checks their one-line summary; with -update it saves
// each error as a fixture of TestSummarize.
func TestProblemsFromPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pebble")
	}
	ctx := context.Background()
	closedHTTP, noALPN := freeTCPPort(t), tlsWithoutALPN(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: closedHTTP, TLSPort: noALPN,
		CFTokens: map[string]cftest.Perms{"good": {ZoneRead: true, DNSEdit: true}, "readonly": {ZoneRead: true}}})
	proxy := env.StartFaultProxy(t)
	now := time.Now()

	newState := func(t *testing.T, directory string, m state.Mapping) (state.Store, *state.Config) {
		d := state.OpenDir(t.TempDir(), 5*time.Second)
		// The listener's own addresses are free ports pebble does not
		// validate on: the validation meets what the test put there.
		if _, err := state.AddListener(ctx, d, state.Listener{Name: "web", Addr: "127.0.0.1:" + strconv.Itoa(freeTCPPort(t)),
			HTTPAddr: "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))}); err != nil {
			t.Fatal(err)
		}
		if _, err := Register(ctx, d, RegisterInput{Email: "ops@example.test", Directory: directory, CAFile: env.CAFile, AgreeTOS: true}, now); err != nil {
			t.Fatal(err)
		}
		for name, token := range map[string]string{"cf": "good", "cfro": "readonly"} {
			if err := dnscred.Add(ctx, d, state.DNSCredential{Name: name, Provider: state.ProviderCloudflare, APIBaseURL: env.Cloudflare.URL}, token); err != nil {
				t.Fatal(err)
			}
		}
		m.ID, m.Listener, m.Source = "m", "web", state.SourceACME
		if _, _, err := mappings.Add(ctx, d, mappings.Input{Mapping: m}, now); err != nil {
			t.Fatal(err)
		}
		cfg, err := state.LoadConfig(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		return d, cfg
	}
	rateLimited, paused := acmetest.RateLimited(3*time.Second), acmetest.Paused("rl.example.test")
	scenarios := []pebbleScenario{
		{name: "http01-connection-refused", mapping: state.Mapping{Hosts: []string{"closed.example.test"}, Challenge: state.ChallengeHTTP01},
			want: `^connection refused from 127\.0\.0\.1:` + strconv.Itoa(closedHTTP) + ` during HTTP-01$`, reason: mappings.BackoffFailed},
		{name: "tlsalpn01-without-acme-tls", mapping: state.Mapping{Hosts: []string{"alpn.example.test"}, Challenge: state.ChallengeTLSALPN01},
			want: `TLS-ALPN-01`, reason: mappings.BackoffFailed},
		{name: "dns01-no-zone", mapping: state.Mapping{Hosts: []string{"dns.nozone.test"}, Challenge: state.ChallengeDNS01, DNSCredential: "cf"},
			want: `^cloudflare: no DNS zone found for dns\.nozone\.test$`, reason: mappings.BackoffFailed},
		{name: "dns01-wildcard-apex-no-zone", mapping: state.Mapping{Hosts: []string{"*.dns.nozone.test", "dns.nozone.test"}, Challenge: state.ChallengeDNS01, DNSCredential: "cf"},
			want: `^cloudflare: no DNS zone found for dns\.nozone\.test$`, reason: mappings.BackoffFailed},
		{name: "dns01-wildcard-apex-cloudflare-refuses", mapping: state.Mapping{Hosts: []string{"*.w.example.test", "w.example.test"}, Challenge: state.ChallengeDNS01, DNSCredential: "cfro"},
			want: `^cloudflare: failed to create TXT record: [^;]*$`, reason: mappings.BackoffFailed},
		{name: "unknown-profile", mapping: state.Mapping{Hosts: []string{"profile.example.test"}, Challenge: state.ChallengeHTTP01, Profile: "nonesuch"},
			want: `^(malformed|invalidProfile): .*nonesuch`, reason: mappings.BackoffFailed},
		{name: "rate-limited", mapping: state.Mapping{Hosts: []string{"rl.example.test"}, Challenge: state.ChallengeHTTP01}, fault: &rateLimited,
			want: `^rate limited by the ACME server until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`, reason: mappings.BackoffRateLimited},
		{name: "account-paused", mapping: state.Mapping{Hosts: []string{"rl.example.test"}, Challenge: state.ChallengeHTTP01}, fault: &paused,
			want: `^the ACME account is paused: unpause at ` + regexp.QuoteMeta(acmetest.PausedURL) + `$`, reason: mappings.BackoffAccountPaused},
	}
	// The proxy answers every new order alike, so the faulted scenarios
	// run one after the other, the rest alongside.
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if sc.fault == nil {
				t.Parallel()
			}
			dir := env.DirectoryURL
			if sc.fault != nil {
				dir = proxy.DirectoryURL
				proxy.Set("new-order", *sc.fault)
				defer proxy.Clear()
			}
			s, cfg := newState(t, dir, sc.mapping)
			m, _ := cfg.Mapping("m")
			at := time.Now()
			_, _, err := order(ctx, s, cfg, *m, nil, at, &Options{Log: quiet.Log, DNSResolvers: []string{env.DNSResolver}})
			if err == nil {
				t.Fatal("the order succeeded")
			}
			p := Summarize(err, at)
			if !regexp.MustCompile(sc.want).MatchString(p.Summary) || p.Reason != sc.reason {
				t.Errorf("summary %q (reason %s), want /%s/ (%s); the error: %s", p.Summary, p.Reason, sc.want, sc.reason, err)
			}
			if got := capture(err).rebuild().Error(); got != err.Error() {
				t.Errorf("the fixture does not rebuild the error:\n%s\nwant\n%s", got, err)
			}
			if *update {
				b, _ := json.MarshalIndent(problemFixture{Scenario: sc.name, Text: err.Error(), Error: capture(err)}, "", "  ")
				if err := os.WriteFile(filepath.Join("testdata", "problems", sc.name+".json"), append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tlsWithoutALPN listens with TLS that offers no application protocol,
// as a listener that is not p2ptls's would, and returns its port.
func tlsWithoutALPN(t *testing.T) int {
	t.Helper()
	kp, err := pki.SelfSigned(pki.Names{DNS: []string{"alpn.example.test"}}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
