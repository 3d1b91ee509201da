package acmetest

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// RestartPebble stops the ACME server and starts a new one configured with
// o's Profiles and EABKeys (o's other fields are ignored: the DNS front,
// challtestsrv, the Cloudflare emulator and the validation ports stay).
// Pebble keeps nothing: the new one has a new DirectoryURL (new ports),
// new roots and no accounts, so a client registers again. Use it to
// change what the CA offers, e.g. drop a profile (Profiles false).
func (e *Env) RestartPebble(t testing.TB, o Options) {
	t.Helper()
	e.pebble.stop()
	e.startPebble(o)
}

// CAA is one CAA property for AddCAA: tag "issue", "issuewild" or "iodef"
// and its value, e.g. `pebble.letsencrypt.org; validationmethods=http-01`.
type CAA struct {
	Tag   string `json:"tag"`
	Value string `json:"value"`
}

// AddCAA makes the DNS answer CAA queries for host (exactly that name)
// with the records policies, besides those added before. Names without
// CAA records answer NOERROR with none.
func (e *Env) AddCAA(t testing.TB, host string, policies ...CAA) {
	t.Helper()
	body := map[string]any{"host": dns.Fqdn(strings.TrimSuffix(host, ".")), "policies": policies}
	if err := e.challPost("/add-caa", body); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// ClearCAA removes every CAA record of host.
func (e *Env) ClearCAA(t testing.TB, host string) {
	t.Helper()
	if err := e.challPost("/clear-caa", map[string]string{"host": dns.Fqdn(strings.TrimSuffix(host, "."))}); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}

// SetServFail makes challtestsrv answer SERVFAIL to every query for host
// (exactly that name), or stop doing so (fail false).
func (e *Env) SetServFail(t testing.TB, host string, fail bool) {
	t.Helper()
	path := "/clear-servfail"
	if fail {
		path = "/set-servfail"
	}
	if err := e.challPost(path, map[string]string{"host": dns.Fqdn(strings.TrimSuffix(host, "."))}); err != nil {
		t.Fatalf("acmetest: %v", err)
	}
}
