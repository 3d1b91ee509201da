package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// TestDoctorCAA: 'doctor --network' looks the ACME hosts' CAA records up
// with --dns-resolvers (challtestsrv's records through the DNS front) and
// fails, naming the record and the record to add, when they allow another
// CA only; a host without records and an allowed one are fine.
func TestDoctorCAA(t *testing.T) {
	t.Parallel()
	env := acmetest.Start(t, acmetest.Options{})
	p := newPublicState(t)
	p.must(t, "acme", "account", "register", "--email", "ops@example.test", "--directory", env.DirectoryURL, "--ca-file", env.CAFile, "--agree-tos")
	p.must(t, "listener", "add", "web", "--addr", freeAddr(t), "--http-addr", freeAddr(t))
	for _, h := range []string{"ok", "none", "other"} {
		p.must(t, "mapping", "add", "--listener", "web", "--host", h+".example.test", "--acme", "--challenge", "http-01", "--id", h)
	}
	env.AddCAA(t, "ok.example.test", acmetest.CAA{Tag: "issue", Value: "pebble.letsencrypt.org"})
	env.AddCAA(t, "example.test", acmetest.CAA{Tag: "issue", Value: "pebble.letsencrypt.org; validationmethods=http-01"})
	env.AddCAA(t, "other.example.test", acmetest.CAA{Tag: "issue", Value: "letsencrypt.org"})

	caa := func(args ...string) (result, map[string]string) {
		r := p2ptls(t, p.env, append([]string{"doctor", "--output", "json"}, args...)...)
		var rep struct {
			Checks []map[string]string `json:"checks"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("doctor output: %v: %s %s", err, r.stdout, r.stderr)
		}
		for _, c := range rep.Checks {
			if c["id"] == "acme.caa" {
				return r, c
			}
		}
		t.Fatalf("no acme.caa check: %s", r.stdout)
		return r, nil
	}
	if _, c := caa(); c["status"] != "ok" || !strings.Contains(c["message"], "not checked: give --network") {
		t.Errorf("without --network: %v", c)
	}
	r, c := caa("--network", "--dns-resolvers", env.DNSResolver)
	if r.code != 1 || !strings.Contains(r.stderr, "acme.caa") || c["status"] != "fail" ||
		!strings.Contains(c["message"], `other.example.test (mapping other): CAA does not allow pebble.letsencrypt.org: other.example.test. CAA 0 issue "letsencrypt.org"`) ||
		strings.Contains(c["message"], "mapping ok") || strings.Contains(c["message"], "mapping none") ||
		c["hint"] != `add the record other.example.test. CAA 0 issue "pebble.letsencrypt.org"` {
		t.Errorf("doctor --network: exit %d %v\n%s", r.code, c, r.stderr)
	}
	// The fix applied: nothing fails any more (the parent's record, with
	// http-01 allowed, covers "none").
	env.ClearCAA(t, "other.example.test")
	env.AddCAA(t, "other.example.test", acmetest.CAA{Tag: "issue", Value: "pebble.letsencrypt.org"})
	if _, c := caa("--network", "--dns-resolvers", env.DNSResolver); c["status"] != "ok" || !strings.Contains(c["message"], "3 names checked") {
		t.Errorf("after the fix: %v", c)
	}
}
