package acme

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// ariScript is an ACME directory whose renewal info answers what the test
// last set: a window (raw JSON, so that invalid ones can be served), a
// Retry-After header; it counts the requests.
type ariScript struct {
	srv        *httptest.Server
	mu         sync.Mutex
	body       string
	retryAfter string
	asked      int
}

func newARIScript(t *testing.T) *ariScript {
	a := &ariScript{}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/dir":
			json.NewEncoder(w).Encode(map[string]string{"newNonce": a.srv.URL + "/nonce", "newAccount": a.srv.URL + "/acct",
				"newOrder": a.srv.URL + "/order", "renewalInfo": a.srv.URL + "/renewal-info"})
		case strings.HasPrefix(r.URL.Path, "/renewal-info/"):
			a.mu.Lock()
			a.asked++
			body, retry := a.body, a.retryAfter
			a.mu.Unlock()
			if retry != "" {
				w.Header().Set("Retry-After", retry)
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// answer sets the window [start, end] and the explanation URL (none when
// empty), with Retry-After retry.
func (a *ariScript) answer(start, end time.Time, explanation, retry string) {
	w := map[string]any{"suggestedWindow": map[string]time.Time{"start": start, "end": end}}
	if explanation != "" {
		w["explanationURL"] = explanation
	}
	b, _ := json.Marshal(w)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.body, a.retryAfter = string(b), retry
}

func (a *ariScript) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.asked
	a.asked = 0
	return n
}

// TestARIWait: the server's Retry-After is honoured between 1 h and 24 h
// (RFC 9773, 4.3.2: the client sets reasonable limits; see the constants
// for why these), 6 h without one.
func TestARIWait(t *testing.T) {
	for _, tc := range []struct {
		retry, want time.Duration
	}{
		{0, 6 * time.Hour},
		{-time.Second, 6 * time.Hour},
		{10 * time.Second, time.Hour},
		{time.Hour, time.Hour},
		{90 * time.Minute, 90 * time.Minute},
		{24 * time.Hour, 24 * time.Hour},
		{10 * 24 * time.Hour, 24 * time.Hour},
	} {
		if got := ariWait(tc.retry); got != tc.want {
			t.Errorf("ariWait(%v) = %v, want %v", tc.retry, got, tc.want)
		}
	}
}

// TestRenewalInfoAnswers: what one renewal info answer records, through a
// real renewal run: the window and the time chosen in it, the explanation
// URL, and when to ask again (the Retry-After as delay-seconds or as an
// HTTP date). An invalid window (end at or before start, RFC 9773 4.2) and
// a Retry-After that does not parse are long-term errors (4.3.3): no
// window, asked again in 6 h, the lifetime rule decides meanwhile.
func TestRenewalInfoAnswers(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second) // an HTTP-date Retry-After is relative to the real clock
	start, end := now.Add(24*time.Hour), now.Add(48*time.Hour)
	tests := []struct {
		desc         string
		start, end   time.Time
		explanation  string
		retry        string
		window       bool
		recheck      time.Duration
		recheckSlack time.Duration
	}{
		{desc: "window and explanation", start: start, end: end, explanation: "https://ca.example/ari?why=load", retry: "21600", window: true, recheck: 6 * time.Hour},
		{desc: "Retry-After as an HTTP date", start: start, end: end, retry: now.Add(3 * time.Hour).Format(http.TimeFormat), window: true, recheck: 3 * time.Hour, recheckSlack: 5 * time.Second},
		{desc: "end before start", start: end, end: start, retry: "3600", recheck: 6 * time.Hour},
		{desc: "end equal to start", start: start, end: start, retry: "3600", recheck: 6 * time.Hour},
		{desc: "Retry-After that does not parse", start: start, end: end, retry: "soon", recheck: 6 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			a := newARIScript(t)
			a.answer(tc.start, tc.end, tc.explanation, tc.retry)
			s := renewState(t, a.srv, now.Add(-24*time.Hour), 90*24*time.Hour)
			r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Skipped) != 1 || a.count() != 1 {
				t.Fatalf("%+v: want m skipped after one request", r)
			}
			meta, err := mappings.LoadMeta(ctx, s, "m")
			if err != nil {
				t.Fatal(err)
			}
			if d := meta.ARI.CheckAt.Sub(now.Add(tc.recheck)); d < -tc.recheckSlack || d > tc.recheckSlack {
				t.Errorf("ari_check_at %s, want %s", meta.ARI.CheckAt, now.Add(tc.recheck))
			}
			if !tc.window {
				if meta.ARI.HasWindow() || meta.ARI.ExplanationURL != "" || !strings.HasPrefix(r.Reasons["m"], "renews from ") {
					t.Errorf("recorded %+v, reason %q: want no window and the lifetime rule", meta.ARI, r.Reasons["m"])
				}
				return
			}
			if !meta.ARI.WindowStart.Equal(tc.start) || !meta.ARI.WindowEnd.Equal(tc.end) || meta.ARI.ExplanationURL != tc.explanation {
				t.Errorf("recorded %+v, want the window %s to %s and explanation %q", meta.ARI, tc.start, tc.end, tc.explanation)
			}
			if meta.NextRenewalAt.Before(tc.start) || !meta.NextRenewalAt.Before(tc.end) {
				t.Errorf("next_renewal_at %s, want a time in [%s, %s)", meta.NextRenewalAt, tc.start, tc.end)
			}
			// mapping show and list (JSON ari_window_start, ari_window_end,
			// ari_explanation_url) show what was recorded.
			cfg, err := state.LoadConfig(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			info, _, err := mappings.Show(ctx, s, cfg, "m", now)
			if err != nil {
				t.Fatal(err)
			}
			list, err := mappings.List(ctx, s, cfg, "", now)
			if err != nil {
				t.Fatal(err)
			}
			for how, i := range map[string]mappings.Info{"show": info, "list": list[0]} {
				if i.ARIWindowStart == nil || !i.ARIWindowStart.Equal(tc.start) || i.ARIWindowEnd == nil || !i.ARIWindowEnd.Equal(tc.end) || i.ARIExplanationURL != tc.explanation {
					t.Errorf("%s: ari_window_start %v, ari_window_end %v, ari_explanation_url %q; want %s, %s, %q", how, i.ARIWindowStart, i.ARIWindowEnd, i.ARIExplanationURL, tc.start, tc.end, tc.explanation)
				}
			}
		})
	}
}

// TestExpiredCertificateIsNotAskedAbout: RFC 9773 (4.3) forbids asking
// about an expired certificate, and one is due whatever a window says.
// Before, the renewal info was asked, and a window in the future kept an
// expired certificate serving until that window came.
func TestExpiredCertificateIsNotAskedAbout(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a := newARIScript(t)
	a.answer(now.Add(24*time.Hour), now.Add(48*time.Hour), "", "")
	s := renewState(t, a.srv, now.Add(-7*24*time.Hour), 6*24*time.Hour)
	r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Renewed) != 1 || !strings.HasPrefix(r.Reasons["m"], "expired on ") {
		t.Errorf("%+v: want m due because it expired", r)
	}
	if n := a.count(); n != 0 {
		t.Errorf("the renewal info of an expired certificate was asked %d times", n)
	}
}

// TestWindowMovedEarlier: when the server moves the window of a
// certificate earlier (RFC 9773, 4.2: a revocation ahead), the next time
// it is asked the mapping is due at once when the window is over, and the
// operator is told, with the server's explanation URL.
func TestWindowMovedEarlier(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a := newARIScript(t)
	a.answer(now.Add(24*time.Hour), now.Add(48*time.Hour), "", "3600")
	s := renewState(t, a.srv, now.Add(-24*time.Hour), 6*24*time.Hour)
	var logs bytes.Buffer
	o := RenewOptions{Options: Options{Log: slog.New(slog.NewTextHandler(&logs, nil))}, DryRun: false}
	run := func(at time.Time, dry bool) *Report {
		t.Helper()
		o.DryRun = dry
		r, err := Renew(ctx, s, func() time.Time { return at }, o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run(now, false); len(r.Skipped) != 1 {
		t.Fatalf("%+v: want m skipped in its future window", r)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a first answer warned:\n%s", logs.String())
	}
	// An hour later (the Retry-After) the window is over: renew now.
	later := now.Add(time.Hour)
	why := "https://ca.example/incident/2026-06-01"
	a.answer(now.Add(-2*time.Hour), now.Add(-time.Hour), why, "3600")
	r := run(later, true)
	if a.count() != 2 || len(r.Renewed) != 1 || r.Reasons["m"] != "inside the ACME server's renewal window" {
		t.Errorf("%+v: want m due at once, asked twice in all", r)
	}
	out := logs.String()
	for _, want := range []string{"level=WARN", "renewed now", "mapping=m", "explanation_url=" + why} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// A window moved earlier, still ahead: told, not due.
	logs.Reset()
	// (The dry run recorded nothing: the first answer stands, due to be
	// asked again at later.)
	a.answer(now.Add(2*time.Hour), now.Add(3*time.Hour), why, "3600")
	r = run(later, false)
	if len(r.Skipped) != 1 {
		t.Errorf("%+v: want m skipped until the new window", r)
	}
	out = logs.String()
	for _, want := range []string{"level=WARN", "moved the renewal window", "previous_window_start=" + now.Add(24*time.Hour).Format("2006-01-02T15:04:05"), "explanation_url=" + why} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if meta, _ := mappings.LoadMeta(ctx, s, "m"); meta.ARI.ExplanationURL != why || !meta.ARI.WindowStart.Equal(now.Add(2*time.Hour)) {
		t.Errorf("recorded %+v, want the moved window and its explanation", meta.ARI)
	}
}

// ariScale is how many ACME mappings TestRenewalInfoScheduleAtScale has;
// P2PTLS_ARI_SCALE=100000 measures at 100k (each pass's wall and CPU time
// is logged).
func ariScale(t *testing.T) int {
	if v := os.Getenv("P2PTLS_ARI_SCALE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("P2PTLS_ARI_SCALE=%q: want a count", v)
		}
		return n
	}
	return 2000
}

// cpuTime is the process's user+sys time so far.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestRenewalInfoScheduleAtScale: a pass over many ACME mappings with
// nothing due asks the server only about the certificates whose
// ari_check_at has come (one in a hundred here), and the pass right after
// asks about none.
func TestRenewalInfoScheduleAtScale(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a := newARIScript(t)
	a.answer(now.Add(24*time.Hour), now.Add(48*time.Hour), "", "21600")
	s := renewState(t, a.srv, now.Add(-24*time.Hour), 90*24*time.Hour)
	ca, err := pki.NewCA("scale issuer", now.Add(-48*time.Hour), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	scale := ariScale(t)
	window := mappings.ARI{WindowStart: now.Add(24 * time.Hour), WindowEnd: now.Add(48 * time.Hour)}
	stale := 0
	err = state.Update(ctx, s, "test", func(tx *state.Tx) error {
		for i := range scale {
			id := fmt.Sprintf("s%05d", i)
			m := state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}
			tx.Config.Mappings = append(tx.Config.Mappings, m)
			kp, err := pki.IssueServer(ca, pki.ParseNames(m.Hosts), now.Add(-24*time.Hour), 90*24*time.Hour)
			if err != nil {
				return err
			}
			meta := mappings.Meta{Source: state.SourceACME, FingerprintSHA256: pki.Fingerprint(kp.Cert), ARI: window, NextRenewalAt: now.Add(30 * time.Hour)}
			meta.ARI.CheckAt = now.Add(time.Duration(1+i%50) * time.Hour)
			if i%100 == 0 {
				meta.ARI.CheckAt = now.Add(-time.Duration(1+i%3) * time.Minute)
				stale++
			}
			if err := mappings.WriteCertificate(ctx, tx, id, kp, meta); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stale++ // "m", never asked
	for pass, want := range []int{stale, 0} {
		wall, cpu := time.Now(), cpuTime(t)
		r, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pass %d over %d ACME mappings: %v wall, %v CPU", pass+1, scale+1, time.Since(wall).Round(time.Millisecond), (cpuTime(t) - cpu).Round(time.Millisecond))
		if len(r.Skipped) != scale+1 {
			t.Fatalf("pass %d: %d skipped, %d renewed, %d failed; want all %d skipped", pass+1, len(r.Skipped), len(r.Renewed), len(r.Failed), scale+1)
		}
		if n := a.count(); n != want {
			t.Errorf("pass %d asked the renewal info %d times, want %d (the certificates whose ari_check_at came)", pass+1, n, want)
		}
	}
}

// TestRenewalTimeKeptWhileTheWindowStays: asked again (each Retry-After),
// a server answering the same window keeps the time chosen in it; a moved
// window gets a new one. Drawn again at every ask, the renewal came early
// in the window nearly always (found by serve/renewal's pebble test).
func TestRenewalTimeKeptWhileTheWindowStays(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a := newARIScript(t)
	start, end := now.Add(24*time.Hour), now.Add(30*24*time.Hour) // wide: two draws alike are unlikely
	a.answer(start, end, "", "3600")
	s := renewState(t, a.srv, now.Add(-24*time.Hour), 90*24*time.Hour)
	chosen := func(at time.Time) time.Time {
		t.Helper()
		if _, err := Renew(ctx, s, func() time.Time { return at }, RenewOptions{Options: quiet}); err != nil {
			t.Fatal(err)
		}
		meta, err := mappings.LoadMeta(ctx, s, "m")
		if err != nil {
			t.Fatal(err)
		}
		return meta.NextRenewalAt
	}
	first := chosen(now)
	for i := 1; i <= 5; i++ {
		if got := chosen(now.Add(time.Duration(i) * time.Hour)); !got.Equal(first) {
			t.Fatalf("ask %d: renewal time %s, want the one chosen first, %s", i+1, got, first)
		}
	}
	if n := a.count(); n != 6 {
		t.Fatalf("asked %d times, want 6", n)
	}
	// Moved: a time in the new window.
	start2, end2 := now.Add(40*24*time.Hour), now.Add(41*24*time.Hour)
	a.answer(start2, end2, "", "3600")
	if got := chosen(now.Add(6 * time.Hour)); got.Before(start2) || got.After(end2) {
		t.Errorf("moved window: renewal time %s, want one in [%s, %s]", got, start2, end2)
	}
}

// TestRenewedCertificateIsAskedAboutAtOnce: a renewal keeps the old
// certificate's renewal info in meta.toml (obtain changes the fingerprint
// and leaves the rest); the new certificate is asked about on the next
// run (RFC 9773, 4.3: at once after issuance), and the old window is
// neither shown nor used for it. Before, the old answer passed for the
// new certificate's until its ari_check_at, up to 24 h.
func TestRenewedCertificateIsAskedAboutAtOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	a := newARIScript(t)
	oldStart, oldEnd := now.Add(24*time.Hour), now.Add(48*time.Hour)
	a.answer(oldStart, oldEnd, "https://ca.example/old", "86400")
	s := renewState(t, a.srv, now.Add(-24*time.Hour), 90*24*time.Hour)
	if _, err := Renew(ctx, s, func() time.Time { return now }, RenewOptions{Options: quiet}); err != nil {
		t.Fatal(err)
	}
	// What obtain leaves after a renewal: a new certificate, the meta
	// loaded, its fingerprint and times changed, its ARI fields kept.
	meta, err := mappings.LoadMeta(ctx, s, "m")
	if err != nil || !meta.ARI.HasWindow() {
		t.Fatalf("meta %+v, %v: want the first answer recorded", meta, err)
	}
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"a.example.test"}), now, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	meta.FingerprintSHA256, meta.NextRenewalAt = pki.Fingerprint(kp.Cert), pki.RenewalTime(kp.Cert)
	if err := mappings.WriteCertificate(ctx, s, "m", kp, meta); err != nil {
		t.Fatal(err)
	}
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := mappings.Show(ctx, s, cfg, "m", now)
	if err != nil {
		t.Fatal(err)
	}
	if info.ARIWindowStart != nil || info.ARIExplanationURL != "" {
		t.Errorf("the new certificate shows the old one's window %v (%q)", info.ARIWindowStart, info.ARIExplanationURL)
	}
	a.count()
	newStart, newEnd := now.Add(50*24*time.Hour), now.Add(52*24*time.Hour)
	a.answer(newStart, newEnd, "", "21600")
	later := now.Add(time.Hour)
	if _, err := Renew(ctx, s, func() time.Time { return later }, RenewOptions{Options: quiet}); err != nil {
		t.Fatal(err)
	}
	if n := a.count(); n != 1 {
		t.Errorf("the new certificate was asked about %d times on the next run, want 1", n)
	}
	meta, _ = mappings.LoadMeta(ctx, s, "m")
	if !meta.ARI.WindowStart.Equal(newStart) || meta.ARI.FingerprintSHA256 != pki.Fingerprint(kp.Cert) || meta.ARI.ExplanationURL != "" {
		t.Errorf("recorded %+v, want the new certificate's window", meta.ARI)
	}
}
