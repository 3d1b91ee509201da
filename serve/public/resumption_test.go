package public

import (
	"crypto/tls"
	"strings"
	"sync"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// anyNameCache offers its one session for every server name, as a client
// (or an attacker) may: crypto/tls's own cache keys sessions by name.
type anyNameCache struct {
	mu sync.Mutex
	s  *tls.ClientSessionState
}

func (c *anyNameCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s, c.s != nil
}

func (c *anyNameCache) Put(_ string, s *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s != nil {
		c.s = s
	}
}

// A session resumes only for the name, mapping and certificate it was made
// for, in TLS 1.2 and 1.3; anything else gets a full handshake, and the
// request goes to the upstream of the certificate served.
func TestResumptionBoundToCertificate(t *testing.T) {
	tests := []struct {
		name       string
		made, used string
		change     func(f *fixture) // between the two connections
		resume     bool
		body       string // of the second request
	}{
		{name: "same name resumes", made: "app.example.com", used: "app.example.com", resume: true, body: "A"},
		{name: "another exact name", made: "app.example.com", used: "echo.example.com", body: "B"},
		{name: "from the fallback", made: "unknown.test", used: "echo.example.com", body: "B"},
		{name: "another name of one wildcard", made: "a.wild.test", used: "b.wild.test", body: "W"},
		{name: "same name, upper-case", made: "app.example.com", used: "APP.example.com", resume: true, body: "A"},
		{name: "mapping removed", made: "app.example.com", used: "app.example.com", change: func(f *fixture) {
			f.cfg.Mappings = f.cfg.Mappings[1:]
			f.reload()
		}},
		{name: "certificate changed", made: "app.example.com", used: "app.example.com", body: "A", change: func(f *fixture) {
			f.writeCert(f.cfg.Mappings[0])
			f.reload()
		}},
	}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tc := range tests {
			t.Run(tls.VersionName(version)+"/"+tc.name, func(t *testing.T) {
				f := newFixture(t, []state.Mapping{
					{ID: "app", Hosts: []string{"app.example.com"}, Upstream: upstream(t, "A")},
					{ID: "echo", Hosts: []string{"echo.example.com"}, Upstream: upstream(t, "B")},
					{ID: "wild", Hosts: []string{"*.wild.test"}, Upstream: upstream(t, "W")},
				}, nil, Options{})
				cfg := &tls.Config{ClientSessionCache: &anyNameCache{}, MinVersion: version, MaxVersion: version}
				if _, _, _, err := f.get(cfg, tc.made); err != nil {
					t.Fatal(err)
				}
				if tc.change != nil {
					tc.change(f)
				}
				cs, resp, body, err := f.get(cfg, tc.used)
				if err != nil {
					t.Fatal(err)
				}
				if cs.DidResume != tc.resume {
					t.Errorf("session made for %s, used for %s: resumed %v, want %v", tc.made, tc.used, cs.DidResume, tc.resume)
				}
				if tc.body != "" && body != tc.body {
					t.Errorf("routed to %q (status %d), want upstream %q", body, resp.StatusCode, tc.body)
				}
				if tc.body == "" && resp.StatusCode != 421 {
					t.Errorf("removed mapping: status %d %q, want 421", resp.StatusCode, strings.TrimSpace(body))
				}
				// A full handshake made a new session, which resumes.
				if !tc.resume {
					if cs, _, _, err := f.get(cfg, tc.used); err != nil || (!cs.DidResume && tc.body != "") {
						t.Errorf("a fresh session for %s did not resume: %v", tc.used, err)
					}
				}
			})
		}
	}
}
