package acme

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// TestWaits: a run lists the mappings it found not due with the time they
// may be due (Report.Waits), which serve's loop keeps instead of deciding
// them again at every pass; a mapping due, or decided without the renewal
// info because its server could not be reached, is not listed: the next
// run decides it again (and asks again). A server without renewal info,
// which the next run would find the same, is listed.
func TestWaits(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	issued, lifetime := now.Add(-24*time.Hour), 90*24*time.Hour
	noARI := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dir" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"newNonce": "https://127.0.0.1:1/nonce", "newAccount": "https://127.0.0.1:1/acct", "newOrder": "https://127.0.0.1:1/order"})
	}))
	t.Cleanup(noARI.Close)
	tests := []struct {
		desc   string
		server func(t *testing.T) *httptest.Server
		meta   func(*mappings.Meta)
		opts   RenewOptions
		waits  bool
		// next is the time listed, and Report.Next, from the lifetime
		// rule's time.
		next func(lifetimeAt time.Time) time.Time
	}{
		{desc: "a window answered", waits: true,
			server: func(t *testing.T) *httptest.Server {
				a := newARIScript(t)
				a.answer(now.Add(24*time.Hour), now.Add(48*time.Hour), "", "3600")
				return a.srv
			},
			next: func(time.Time) time.Time { return now.Add(time.Hour) }}, // the Retry-After comes first
		{desc: "a server without renewal info", waits: true,
			server: func(*testing.T) *httptest.Server { return noARI },
			next:   func(at time.Time) time.Time { return at }},
		{desc: "a server that cannot be reached", waits: false,
			server: func(t *testing.T) *httptest.Server {
				a := newARIScript(t)
				a.srv.Close()
				return a.srv
			},
			next: func(at time.Time) time.Time { return at }},
		{desc: "backing off", waits: true,
			server: func(t *testing.T) *httptest.Server { return newARIScript(t).srv },
			meta:   func(m *mappings.Meta) { m.Attempts, m.RetryAt = 1, now.Add(10*time.Minute) },
			next:   func(time.Time) time.Time { return now.Add(10 * time.Minute) }},
		{desc: "due", waits: false, opts: RenewOptions{Days: 100, DryRun: true},
			server: func(t *testing.T) *httptest.Server { return newARIScript(t).srv }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := renewState(t, tc.server(t), issued, lifetime)
			meta, err := mappings.LoadMeta(ctx, s, "m")
			if err != nil {
				t.Fatal(err)
			}
			if tc.meta != nil {
				tc.meta(&meta)
				if err := state.Update(ctx, s, "test", func(tx *state.Tx) error { return mappings.SaveMeta(ctx, tx, "m", meta) }); err != nil {
					t.Fatal(err)
				}
			}
			o := tc.opts
			o.Options = quiet
			r, err := Renew(ctx, s, func() time.Time { return now }, o)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(r.Waits, func(w Wait) bool { return w.ID == "m" })
			if (i >= 0) != tc.waits {
				t.Fatalf("waits %+v (reason %q): want m listed %v", r.Waits, r.Reasons["m"], tc.waits)
			}
			if tc.next == nil {
				return
			}
			cfg, err := state.LoadConfig(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			c, err := mappings.Load(ctx, s, cfg.Mappings[0])
			if err != nil {
				t.Fatal(err)
			}
			want := tc.next(pki.RenewalTime(c.Chain[0]))
			if i >= 0 && !r.Waits[i].Next.Equal(want) {
				t.Errorf("m waits until %s, want %s (reason %q)", r.Waits[i].Next, want, r.Reasons["m"])
			}
			if !r.Next.Equal(want) {
				t.Errorf("Report.Next %s, want %s", r.Next, want)
			}
		})
	}
}

// TestWaitEndsAtExpiry: a window that lies past the certificate's expiry
// does not keep it waiting past it: expired, it is due whatever the
// window says. Report.Next stays the window's.
func TestWaitEndsAtExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	a := newARIScript(t)
	a.answer(now.Add(24*time.Hour), now.Add(48*time.Hour), "", "86400")
	s := renewState(t, a.srv, now.Add(-time.Hour), 6*time.Hour)
	r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mappings.Load(ctx, s, cfg.Mappings[0])
	if err != nil {
		t.Fatal(err)
	}
	notAfter := c.Chain[0].NotAfter
	if len(r.Waits) != 1 || !r.Waits[0].Next.Equal(notAfter) {
		t.Errorf("waits %+v (reason %q), want m until its expiry %s", r.Waits, r.Reasons["m"], notAfter)
	}
	if !r.Next.Equal(now.Add(24 * time.Hour)) {
		t.Errorf("Report.Next %s, want the renewal info's Retry-After, %s", r.Next, now.Add(24*time.Hour))
	}
}

// TestRenewDecidesFromTheConfigGiven: with RenewOptions.Config the run
// decides the mappings of that config (of Only, if given), as serve's loop
// holds them, without loading the state's.
func TestRenewDecidesFromTheConfigGiven(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	s := renewState(t, newARIScript(t).srv, now.Add(-24*time.Hour), 90*24*time.Hour)
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	held := *cfg
	held.Mappings = slices.Clone(cfg.Mappings)
	held.Mappings[0].Hosts = []string{"moved.example.test"}
	held.Mappings = append(held.Mappings, state.Mapping{ID: "other", Listener: "web", Hosts: []string{"o.example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01})
	for _, tc := range []struct {
		only []string
		want []string
	}{
		{nil, []string{"m", "other"}},
		{[]string{"m"}, []string{"m"}},
		{[]string{"nowhere"}, nil},
	} {
		r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet, DryRun: true, Config: &held, Only: tc.only})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.Renewed, tc.want) {
			t.Errorf("only %v: due %v (%v), want %v", tc.only, r.Renewed, r.Reasons, tc.want)
		}
		if slices.Contains(tc.want, "m") && r.Reasons["m"] != "the mapping's hosts changed" {
			t.Errorf("only %v: m due because %q, want its hosts changed (in the config given)", tc.only, r.Reasons["m"])
		}
	}
}
