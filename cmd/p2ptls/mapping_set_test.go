package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// TestMappingSet: "mapping set" changes a mapping in place, "mapping show"
// shows it, a running serve presents the regenerated self-signed
// certificate for the new hosts; refusals exit 2 (bad input) or 1 (not
// found) with one sentence and change nothing.
func TestMappingSet(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "a.example.test", "--self-signed", "--id", "dev")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "taken.example.test", "--self-signed", "--id", "other")
	for _, tc := range []struct {
		desc string
		args []string
		code int
		msg  string
	}{
		{"nothing to change", []string{"dev"}, 2, "nothing to change"},
		{"no such mapping", []string{"nope", "--upstream", "http://127.0.0.1:1"}, 1, `mapping "nope" does not exist`},
		{"host mapped by another", []string{"dev", "--host", "taken.example.test"}, 2, `by mapping "other"`},
		{"challenge on self-signed", []string{"dev", "--challenge", "http-01"}, 2, "takes no --challenge"},
		{"bad host", []string{"dev", "--host", "bad host"}, 2, "bad host"},
	} {
		// Before serve starts: a running serve writes run/ on its own schedule.
		before := snapshot(t, p.dir)
		r := p2ptls(t, p.env, append([]string{"mapping", "set"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tc.desc, r.code, r.stderr, tc.code, tc.msg)
		}
		assertSameSnapshot(t, before, snapshot(t, p.dir))
	}

	p.serve = startServe(t, p.env)
	certFile := filepath.Join(p.dir, "certs", "public", "dev", "cert.pem")
	eventually(t, 10*time.Second, func() error { return serves(web, "a.example.test", fileSerial(t, certFile)) })

	p.must(t, "mapping", "set", "dev", "--host", "b.example.test", "--host", "c.example.test", "--upstream", "http://127.0.0.1:9")
	var shown struct {
		Hosts    []string `json:"hosts"`
		Upstream string   `json:"upstream"`
		Status   string   `json:"status"`
	}
	if err := json.Unmarshal([]byte(p.must(t, "mapping", "show", "dev", "--output", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if strings.Join(shown.Hosts, ",") != "b.example.test,c.example.test" || shown.Upstream != "http://127.0.0.1:9" || shown.Status != "valid" {
		t.Errorf("mapping show after set: %+v", shown)
	}
	regenerated := fileSerial(t, certFile)
	for _, sni := range []string{"b.example.test", "c.example.test"} {
		eventually(t, 10*time.Second, func() error { return serves(web, sni, regenerated) })
	}
	// The old host is no longer mapped: the fallback answers it.
	if got, err := servedSerial(web, "a.example.test"); err != nil || got.Cmp(regenerated) == 0 {
		t.Errorf("a.example.test after set: serial %v, %v; want the fallback", got, err)
	}
}

// TestMappingSetACME: against pebble, a changed ACME mapping keeps its
// certificate and is due ("expiring") until cron's "cert renew" orders
// the new one with the new settings; new hosts its certificate covers
// none of make it pending, and "cert issue" orders at once.
func TestMappingSetACME(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	a.must(t, "mapping", "add", "--listener", "web", "--host", "set.example.test", "--acme", "--challenge", "http-01", "--id", "set")
	a.must(t, "cert", "issue", "set")
	first := a.verifyIssued(t, "set", "set.example.test")

	a.must(t, "mapping", "set", "set", "--challenge", "tls-alpn-01", "--key-type", "rsa2048")
	if m := a.mapping(t, "set"); m.Status != "expiring" {
		t.Errorf("after a change of challenge: %+v, want expiring", m)
	}
	if kept := a.verifyIssued(t, "set", "set.example.test"); kept.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("the change replaced the certificate before a new one was issued")
	}
	rep, r := a.renew(t)
	if r.code != 0 || len(rep.Renewed) != 1 || rep.Renewed[0] != "set" {
		t.Fatalf("cert renew after the change: exit %d %+v %s", r.code, rep, r.stderr)
	}
	second := a.verifyIssued(t, "set", "set.example.test")
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || pki.KeyType(second.PublicKey) != "RSA 2048" {
		t.Errorf("renewed certificate: serial %x (first %x), key %s", second.SerialNumber, first.SerialNumber, pki.KeyType(second.PublicKey))
	}
	if m := a.mapping(t, "set"); m.Status != "valid" {
		t.Errorf("after the renewal: %+v, want valid", m)
	}
	if rep, _ := a.renew(t); len(rep.Renewed) != 0 {
		t.Errorf("renewed again though nothing changed: %+v", rep)
	}

	a.must(t, "mapping", "set", "set", "--host", "moved.example.test")
	if m := a.mapping(t, "set"); m.Status != "pending" {
		t.Errorf("after new hosts the certificate does not cover: %+v, want pending", m)
	}
	a.must(t, "cert", "issue", "set")
	a.verifyIssued(t, "set", "moved.example.test")
}
