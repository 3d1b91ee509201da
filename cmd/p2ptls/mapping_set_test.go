package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	p.serve = startServe(t, p.env)
	certFile := filepath.Join(p.dir, "certs", "public", "dev", "cert.pem")
	eventually(t, 10*time.Second, func() error { return serves(web, "a.example.test", fileSerial(t, certFile)) })

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
		before := snapshot(t, p.dir)
		r := p2ptls(t, p.env, append([]string{"mapping", "set"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tc.desc, r.code, r.stderr, tc.code, tc.msg)
		}
		assertSameSnapshot(t, before, snapshot(t, p.dir))
	}

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
