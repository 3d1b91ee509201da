package issuance

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// pebbleState is a state directory with an account at a fresh pebble, a
// listener whose ports pebble validates against, and a Cloudflare
// credential "cf" for the emulator.
type pebbleState struct {
	*state.Dir
	env *acmetest.Env
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func newPebbleState(t testing.TB) *pebbleState {
	t.Helper()
	ctx := context.Background()
	httpPort, tlsPort := freePort(t), freePort(t)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: httpPort, TLSPort: tlsPort})
	d := state.OpenDir(t.TempDir(), 30*time.Second)
	if _, err := acme.Register(ctx, d, acme.RegisterInput{Email: "ops@example.test", Directory: env.DirectoryURL, CAFile: env.CAFile, AgreeTOS: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	l := state.Listener{Name: "web", Addr: "127.0.0.1:" + strconv.Itoa(tlsPort), HTTPAddr: "127.0.0.1:" + strconv.Itoa(httpPort)}
	if _, err := state.AddListener(ctx, d, l); err != nil {
		t.Fatal(err)
	}
	if err := dnscred.Add(ctx, d, state.DNSCredential{Name: "cf", Provider: "cloudflare", Enabled: true, APIBaseURL: env.Cloudflare.URL}, "good-token"); err != nil {
		t.Fatal(err)
	}
	return &pebbleState{Dir: d, env: env}
}

// add adds n ACME mappings PREFIX-0… with challenge ch and returns their ids.
func (p *pebbleState) add(t testing.TB, prefix, ch string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		m := state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.test"}, Source: state.SourceACME, Challenge: ch}
		if ch == state.ChallengeDNS01 {
			m.DNSCredential = "cf"
		}
		if _, _, err := mappings.Add(context.Background(), p.Dir, mappings.Input{Mapping: m}, time.Now()); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func quietACME(resolvers []string, n int) acme.Options {
	return acme.Options{Log: slog.New(slog.DiscardHandler), DNSResolvers: resolvers, Concurrency: n}
}

// TestRunConcurrentDNS01Resolvers: DNS-01 orders run at once, from two
// runs that name different resolver sets (lego keeps one list for the
// process): under -race nothing races, and every one is issued, each
// checked at resolvers that answer. Before the resolver gate, lego's list
// was written by every order as it started.
func TestRunConcurrentDNS01Resolvers(t *testing.T) {
	p := newPebbleState(t)
	sets := [][]string{{p.env.DNSResolver}, {p.env.DNSResolver, p.env.DNSResolver}}
	ids := [][]string{p.add(t, "a", state.ChallengeDNS01, 3), p.add(t, "b", state.ChallengeDNS01, 3)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reps := make([]*Report, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			r, err := Run(ctx, p.Dir, ids[i], time.Now, Options{ACME: quietACME(sets[i], 3)}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			reps[i] = r
		})
	}
	wg.Wait()
	for i, r := range reps {
		if r == nil || len(r.Issued) != 3 {
			t.Errorf("run %d: %+v", i, r)
		}
	}
}

// TestRunConcurrentHTTP01WithoutServe: HTTP-01 and TLS-ALPN-01 orders
// run at once without serve share the one socket each binds for the
// validation (a second bind would fail: address in use), and every one is
// issued.
func TestRunConcurrentHTTP01WithoutServe(t *testing.T) {
	p := newPebbleState(t)
	ids := append(p.add(t, "h", state.ChallengeHTTP01, 4), p.add(t, "t", state.ChallengeTLSALPN01, 4)...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := Run(ctx, p.Dir, ids, time.Now, Options{ACME: quietACME(nil, 8)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Issued) != len(ids) {
		t.Fatalf("issued %d of %d: %+v", len(r.Issued), len(ids), r.Errors)
	}
	for _, id := range ids {
		if _, err := os.Stat(p.Root() + "/certs/public/" + id + "/cert.pem"); err != nil {
			t.Errorf("mapping %s: %v", id, err)
		}
	}
}
