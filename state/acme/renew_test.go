package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// ariServer is an ACME directory that only answers renewalInfo, with the
// window the test sets; without ari it does not advertise the endpoint.
func ariServer(t *testing.T, ari bool, window func() (time.Time, time.Time)) *httptest.Server {
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/dir":
			dir := map[string]string{"newNonce": srv.URL + "/nonce", "newAccount": srv.URL + "/acct", "newOrder": srv.URL + "/order"}
			if ari {
				dir["renewalInfo"] = srv.URL + "/renewal-info"
			}
			json.NewEncoder(w).Encode(dir)
		case strings.HasPrefix(r.URL.Path, "/renewal-info/"):
			start, end := window()
			json.NewEncoder(w).Encode(map[string]any{"suggestedWindow": map[string]time.Time{"start": start, "end": end}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// renewState is a store with an account at srv and ACME mapping "m" whose
// certificate was issued at issued and lives lifetime.
func renewState(t *testing.T, srv *httptest.Server, issued time.Time, lifetime time.Duration) state.Store {
	t.Helper()
	ctx := context.Background()
	s := state.OpenDir(t.TempDir(), time.Second)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	acct := &Account{Email: "ops@example.test", Directory: srv.URL + "/dir", key: key, caPEM: pki.EncodeCert(srv.Certificate().Raw)}
	if err := saveAccount(ctx, s, acct); err != nil {
		t.Fatal(err)
	}
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: ":8443", HTTPAddr: ":8080"}); err != nil {
		t.Fatal(err)
	}
	m := state.Mapping{ID: "m", Listener: "web", Hosts: []string{"a.example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}
	if _, _, err := mappings.Add(ctx, s, mappings.Input{Mapping: m}, issued); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test issuer", issued.Add(-time.Hour), 24*time.Hour*365)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.IssueServer(ca, pki.ParseNames(m.Hosts), issued, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	if err := mappings.WriteCertificate(ctx, s, "m", leaf, mappings.Meta{Source: state.SourceACME, FingerprintSHA256: pki.Fingerprint(leaf.Cert)}); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIsDue(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	past := func() (time.Time, time.Time) { return now.Add(-48 * time.Hour), now.Add(-24 * time.Hour) }
	future := func() (time.Time, time.Time) { return now.Add(24 * time.Hour), now.Add(48 * time.Hour) }
	tests := []struct {
		desc     string
		ari      bool
		window   func() (time.Time, time.Time)
		issued   time.Time
		lifetime time.Duration
		opts     RenewOptions
		meta     func(*mappings.Meta)
		hosts    []string
		due      bool
		why      string
	}{
		{"inside the ARI window", true, past, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, nil, nil, true, "inside the ACME server's renewal window"},
		{"before the ARI window, even with little life left", true, future, now.Add(-80 * 24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, nil, nil, false, "outside the ACME server's renewal window"},
		{"no ARI: a third of the lifetime left", false, nil, now.Add(-61 * 24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, nil, nil, true, "less than a third"},
		{"no ARI: fresh", false, nil, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, nil, nil, false, "renews from"},
		{"no ARI: short-lived renews at half", false, nil, now.Add(-3*24*time.Hour - time.Hour), 6 * 24 * time.Hour, RenewOptions{}, nil, nil, true, "less than a third"},
		{"--days above what is left", true, future, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{Days: 100}, nil, nil, true, "renewing below 100"},
		{"--days below what is left", true, past, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{Days: 30}, nil, nil, false, "renewing below 30"},
		{"forced", true, future, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{Force: true}, nil, nil, true, "forced"},
		{"backing off", true, past, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, func(m *mappings.Meta) { m.Attempts, m.RetryAt = 2, now.Add(time.Hour) }, nil, false, "backing off after 2 failed attempts"},
		{"forced through back-off", true, future, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{Force: true}, func(m *mappings.Meta) { m.RetryAt = now.Add(time.Hour) }, nil, true, "forced"},
		{"hosts changed", true, future, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, nil, []string{"a.example.test", "b.example.test"}, true, "hosts changed"},
		{"the mapping changed (mapping set)", true, future, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, func(m *mappings.Meta) { m.Reissue = "changed --challenge at 2026-06-01T11:00:00Z" }, nil, true, "the mapping changed --challenge"},
		{"the mapping changed, but backing off", true, future, now.Add(-24 * time.Hour), 90 * 24 * time.Hour, RenewOptions{}, func(m *mappings.Meta) {
			m.Reissue, m.Attempts, m.RetryAt = "changed --challenge", 1, now.Add(time.Hour)
		}, nil, false, "backing off"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			srv := ariServer(t, tc.ari, tc.window)
			s := renewState(t, srv, tc.issued, tc.lifetime)
			if tc.meta != nil {
				meta, _ := mappings.LoadMeta(context.Background(), s, "m")
				tc.meta(&meta)
				if err := mappings.SaveMeta(context.Background(), s, "m", meta); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := state.LoadConfig(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			m := cfg.Mappings[0]
			if tc.hosts != nil {
				m.Hosts = tc.hosts
			}
			// The first decision (from the certs memo's summaries, twice:
			// a miss, then a hit) and the one under the lock (the files
			// parsed) agree.
			sums := mappings.NewSummaries(s)
			for _, c := range []struct {
				how  string
				sums *mappings.Summaries
			}{{"summarized", sums}, {"summarized again", sums}, {"parsed", nil}} {
				v := isDue(context.Background(), c.sums, s, cfg, m, now, tc.opts, &ariClients{})
				due, why, leaf := v.due, v.why, v.leaf
				if due != tc.due || !strings.Contains(why, tc.why) {
					t.Errorf("%s: isDue = %v, %q; want %v, %q", c.how, due, why, tc.due, tc.why)
				}
				if c.sums == nil && due && leaf == nil {
					t.Errorf("%s: isDue gave obtain no certificate to replace", c.how)
				}
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, 5 * time.Minute}, {2, 10 * time.Minute}, {3, 20 * time.Minute}, {9, 21*time.Hour + 20*time.Minute}, {10, 24 * time.Hour}, {50, 24 * time.Hour}} {
		if got := backoff(tc.n); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestRegisterRefusesBadInput(t *testing.T) {
	s := state.OpenDir(t.TempDir(), time.Second)
	tests := []struct {
		desc string
		in   RegisterInput
		want string
	}{
		{"no --agree-tos", RegisterInput{Email: "ops@example.test"}, "--agree-tos"},
		{"bad email", RegisterInput{Email: "ops", AgreeTOS: true}, "not an email"},
		{"plain http directory", RegisterInput{Email: "ops@example.test", Directory: "http://x/dir", AgreeTOS: true}, "not an https URL"},
		{"EAB kid without key", RegisterInput{Email: "ops@example.test", EABKid: "k", AgreeTOS: true}, "HMAC"},
		{"unreadable CA file", RegisterInput{Email: "ops@example.test", CAFile: "/nonexistent", AgreeTOS: true}, "cannot read"},
	}
	// --ca-file naming a FIFO or a device is refused at once (bounded,
	// regular-only read), before any network.
	for _, h := range statetest.HostilePaths(t, t.TempDir()) {
		tests = append(tests, struct {
			desc string
			in   RegisterInput
			want string
		}{"CA file is " + h.Desc, RegisterInput{Email: "ops@example.test", Directory: "https://127.0.0.1:1/dir", CAFile: h.Path, AgreeTOS: true}, "the ACME CA file (--ca-file): cannot read " + h.Path + ": " + h.Says})
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var err error
			statetest.Within(t, 5*time.Second, func() { _, err = Register(context.Background(), s, tc.in, time.Now()) })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Register = %v, want %q", err, tc.want)
			}
			if tc.in.CAFile != "" && fault.KindOf(err) != fault.Invalid {
				t.Errorf("Register = %v: kind %v, want Invalid (exit 2)", err, fault.KindOf(err))
			}
		})
	}
	if names, _ := s.List(context.Background(), ""); len(names) != 0 {
		t.Errorf("refused registrations wrote %v", names)
	}
}

// lockCounter counts the changes a store is asked to lock for.
type lockCounter struct {
	state.Store
	locks int
}

func (l *lockCounter) Lock(ctx context.Context, purpose string) (func() error, error) {
	l.locks++
	return l.Store.Lock(ctx, purpose)
}

// TestRenewNotDueTakesNoLock: a mapping that is not due, or a dry run, is
// decided from the state as loaded; only a renewal takes the lock (and
// with it a load of every record): a pass with nothing due over 100k
// mappings must not load them 100k times, nor wait for a running change.
func TestRenewNotDueTakesNoLock(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		desc   string
		issued time.Time
		opts   RenewOptions
		locks  int
	}{
		{desc: "not due", issued: now.Add(-24 * time.Hour)},
		{desc: "due, dry run", issued: now.Add(-80 * 24 * time.Hour), opts: RenewOptions{DryRun: true}},
		{desc: "due", issued: now.Add(-80 * 24 * time.Hour), locks: 1},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			srv := ariServer(t, false, nil)
			s := &lockCounter{Store: renewState(t, srv, tc.issued, 90*24*time.Hour)}
			tc.opts.Options = quiet
			if _, err := Renew(context.Background(), s, func() time.Time { return now }, tc.opts); err != nil {
				t.Fatal(err)
			}
			if s.locks != tc.locks {
				t.Errorf("%d locks, want %d", s.locks, tc.locks)
			}
		})
	}
}

// TestRenewAsksOneClientForRenewalInfo: one renewal run asks the renewal
// info of every certificate with one client, which fetches the directory
// once; a client per mapping fetched it (over a new TLS connection) for
// each of them.
func TestRenewAsksOneClientForRenewalInfo(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	requests := map[string]int{}
	future := func() (time.Time, time.Time) { return now.Add(24 * time.Hour), now.Add(48 * time.Hour) }
	inner := ariServer(t, true, future)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests[strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]]++
		mu.Unlock()
		inner.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	// The directory names the inner server's endpoints; requests to them
	// are not counted, only the directory's, which go to srv.
	s := renewState(t, srv, now.Add(-24*time.Hour), 90*24*time.Hour)
	for _, id := range []string{"m2", "m3"} {
		m := state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}
		if _, _, err := mappings.Add(ctx, s, mappings.Input{Mapping: m}, now); err != nil {
			t.Fatal(err)
		}
		kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), now.Add(-24*time.Hour), 90*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := mappings.WriteCertificate(ctx, s, id, kp, mappings.Meta{Source: state.SourceACME}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Skipped) != 3 {
		t.Fatalf("report %+v, want 3 skipped", r)
	}
	for id, why := range r.Reasons {
		if !strings.HasPrefix(why, "outside the ACME server's renewal window: renews from ") {
			t.Errorf("%s: %q, want the renewal info's answer", id, why)
		}
	}
	if requests["dir"] != 1 {
		t.Errorf("the directory was fetched %d times, want once: %v", requests["dir"], requests)
	}
}

// ariAsker is an ACME directory whose renewal info answers window with
// the Retry-After header retryAfter (none when empty), or status when it
// is not 200; it counts the renewal info requests.
type ariAsker struct {
	srv        *httptest.Server
	mu         sync.Mutex
	asked      int
	retryAfter string
	status     int
}

func newARIAsker(t *testing.T, start, end time.Time) *ariAsker {
	a := &ariAsker{status: http.StatusOK}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/dir":
			json.NewEncoder(w).Encode(map[string]string{"newNonce": a.srv.URL + "/nonce", "newAccount": a.srv.URL + "/acct",
				"newOrder": a.srv.URL + "/order", "renewalInfo": a.srv.URL + "/renewal-info"})
		case strings.HasPrefix(r.URL.Path, "/renewal-info/"):
			a.mu.Lock()
			a.asked++
			retry, status := a.retryAfter, a.status
			a.mu.Unlock()
			if retry != "" {
				w.Header().Set("Retry-After", retry)
			}
			if status != http.StatusOK {
				w.Header().Set("Content-Type", "application/problem+json")
				w.WriteHeader(status)
				json.NewEncoder(w).Encode(map[string]any{"type": "urn:ietf:params:acme:error:malformed", "detail": "no such certificate", "status": status})
				return
			}
			json.NewEncoder(w).Encode(map[string]any{"suggestedWindow": map[string]time.Time{"start": start, "end": end}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *ariAsker) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.asked
	a.asked = 0
	return n
}

// TestRenewAsksRenewalInfoOnSchedule: the renewal info of a certificate is
// asked once, its answer (window, the time chosen in it, and when to ask
// again: the server's Retry-After within 1 h and 24 h, 6 h when it says
// nothing or answers with an error without one) recorded in meta.toml, and asked again only once that time
// has passed, or for a certificate that is not the one the answer was
// about. A pass every 10 minutes over 100k certificates asked the server
// 100k times before.
func TestRenewAsksRenewalInfoOnSchedule(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	start, end := now.Add(24*time.Hour), now.Add(48*time.Hour)
	tests := []struct {
		desc       string
		retryAfter string
		status     int
		recheck    time.Duration
		window     bool
	}{
		{"Retry-After of 2 h", "7200", http.StatusOK, 2 * time.Hour, true},
		{"no Retry-After", "", http.StatusOK, 6 * time.Hour, true},
		{"Retry-After below an hour", "10", http.StatusOK, time.Hour, true},
		{"Retry-After above a day", "172800", http.StatusOK, 24 * time.Hour, true},
		// RFC 9773, 4.3.3: an error is asked again after its
		// Retry-After, else 6 h (a long-term error).
		{"an error for the certificate", "", http.StatusNotFound, 6 * time.Hour, false},
		{"an error with a Retry-After", "7200", http.StatusServiceUnavailable, 2 * time.Hour, false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			a := newARIAsker(t, start, end)
			a.retryAfter, a.status = tc.retryAfter, tc.status
			s := renewState(t, a.srv, now.Add(-24*time.Hour), 90*24*time.Hour)
			run := func(at time.Time) *Report {
				t.Helper()
				r, err := Renew(ctx, s, func() time.Time { return at }, RenewOptions{Options: quiet})
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Skipped) != 1 {
					t.Fatalf("at %s: %+v, want m skipped", at, r)
				}
				return r
			}
			r := run(now)
			if n := a.count(); n != 1 {
				t.Fatalf("first run asked %d times, want 1", n)
			}
			meta, err := mappings.LoadMeta(ctx, s, "m")
			if err != nil {
				t.Fatal(err)
			}
			if want := now.Add(tc.recheck); !meta.ARI.CheckAt.Equal(want) {
				t.Errorf("ari_check_at %s, want %s", meta.ARI.CheckAt, want)
			}
			if tc.window {
				if !meta.ARI.WindowStart.Equal(start) || !meta.ARI.WindowEnd.Equal(end) || meta.NextRenewalAt.Before(start) || meta.NextRenewalAt.After(end) {
					t.Errorf("recorded %+v, next_renewal_at %s: want the window %s to %s and a time in it", meta.ARI, meta.NextRenewalAt, start, end)
				}
				want := meta.NextRenewalAt
				if meta.ARI.CheckAt.Before(want) {
					want = meta.ARI.CheckAt
				}
				if !r.Next.Equal(want) {
					t.Errorf("Next %s, want %s", r.Next, want)
				}
			} else if meta.ARI.HasWindow() || !r.Next.Equal(meta.ARI.CheckAt) {
				t.Errorf("recorded %+v, Next %s: want no window and the next look at ari_check_at", meta.ARI, r.Next)
			}
			run(now.Add(tc.recheck - time.Second))
			if n := a.count(); n != 0 {
				t.Errorf("asked %d times before ari_check_at, want 0", n)
			}
			run(now.Add(tc.recheck))
			if n := a.count(); n != 1 {
				t.Errorf("asked %d times at ari_check_at, want 1", n)
			}
		})
	}
}

// TestRecordedRenewalInfoIsAboutOneCertificate: an answer recorded for
// one certificate says nothing about another put in its place (by hand,
// or a restore): that one is asked about, and due by its own answer.
func TestRecordedRenewalInfoIsAboutOneCertificate(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a := newARIAsker(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	s := renewState(t, a.srv, now.Add(-24*time.Hour), 90*24*time.Hour)
	meta, err := mappings.LoadMeta(ctx, s, "m")
	if err != nil {
		t.Fatal(err)
	}
	// An answer about this certificate that says "not yet" for a day.
	meta.ARI = mappings.ARI{WindowStart: now.Add(24 * time.Hour), WindowEnd: now.Add(48 * time.Hour), CheckAt: now.Add(24 * time.Hour)}
	meta.NextRenewalAt = now.Add(30 * time.Hour)
	if err := mappings.SaveMeta(ctx, s, "m", meta); err != nil {
		t.Fatal(err)
	}
	r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := a.count(); n != 0 || len(r.Skipped) != 1 {
		t.Fatalf("with a fresh answer: asked %d times, %+v; want 0 and skipped", n, r)
	}
	// Another certificate in place, as a hand copy would leave it.
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"a.example.test"}), now.Add(-time.Hour), 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, mappings.MappingDir("m")+"/"+mappings.KeyFileName, kp.KeyPEM, state.SecretMode); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, mappings.MappingDir("m")+"/"+mappings.CertFileName, kp.CertPEM, state.PublicMode); err != nil {
		t.Fatal(err)
	}
	r, err = Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := a.count(); n != 1 || len(r.Renewed) != 1 || r.Reasons["m"] != "inside the ACME server's renewal window" {
		t.Errorf("another certificate: asked %d times, %+v; want 1 and due by its answer", n, r)
	}
}
