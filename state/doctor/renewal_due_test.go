package doctor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

func TestRenewalGrace(t *testing.T) {
	for _, tc := range []struct {
		lifetime, want time.Duration
	}{
		{6 * day, 13 * time.Hour},
		{10 * day, 13 * time.Hour},
		{45 * day, 45 * day / 20},
		{90 * day, 90 * day / 20},
	} {
		if got := renewalGrace(tc.lifetime); got != tc.want {
			t.Errorf("renewalGrace(%v) = %v, want %v", tc.lifetime, got, tc.want)
		}
	}
}

// TestRenewalDue: a certificate past its renewal time by more than the
// grace warns (an expired one is mappings.expiry's failure, not this
// check's), naming the mapping, the time and what should have renewed it:
// a 6-day ACME certificate by its own half-life, not a fixed 30 days; an
// ACME renewal time moved by ARI; a manual certificate ("replace").
func TestRenewalDue(t *testing.T) {
	s := acmeState(t)
	want(t, run(input(s), checkRenewalDue), IDRenewalDue, OK, "0 certificates checked")
	addMapping(t, s, acmeMapping("short", "web", "http-01", "", "short.example.com"))
	// pki backdates an hour: a lifetime of 6 days and 1 hour, renewed
	// when half is left.
	issue(t, s, "short", []string{"short.example.com"}, 6*day, mappings.Meta{})
	shortDue := now0.Add(-time.Hour).Add((6*day + time.Hour) / 2)
	addMapping(t, s, acmeMapping("ari", "web", "http-01", "", "ari.example.com"))
	issue(t, s, "ari", []string{"ari.example.com"}, 90*day, mappings.Meta{NextRenewalAt: now0.Add(10 * day),
		LastAttemptAt: now0.Add(11 * day), LastError: "connection refused during HTTP-01", Attempts: 1})
	ariGrace := (90*day + time.Hour) / 20

	tests := []struct {
		desc    string
		at      time.Time
		running bool
		status  Status
		msg     []string
		hint    []string
		absent  []string
	}{
		{desc: "right after issue", at: now0.Add(time.Hour), status: OK, msg: []string{"2 certificates checked"}},
		{desc: "6-day certificate at its renewal time", at: shortDue, status: OK},
		{desc: "6-day certificate inside the grace", at: shortDue.Add(13 * time.Hour), status: OK},
		{desc: "6-day certificate past the grace, no serve", at: shortDue.Add(13*time.Hour + time.Second), status: Warn,
			msg:    []string{"mapping short", "renewal was due on " + shortDue.Format(time.RFC3339), "no attempt was recorded"},
			hint:   []string{"serve is not running", "p2ptls-renew.timer", "every 12 hours"},
			absent: []string{"mapping ari"}},
		{desc: "6-day certificate past the grace, serve running", at: shortDue.Add(14 * time.Hour), running: true, status: Warn,
			msg: []string{"mapping short"}, hint: []string{"serve (pid", "its log for mapping short"}},
		{desc: "ARI time past the grace, last attempt failed", at: now0.Add(10*day + ariGrace + time.Minute), status: Warn,
			msg:  []string{"mapping ari", "due on " + now0.Add(10*day).Format(time.RFC3339), "connection refused during HTTP-01"},
			hint: []string{IDLastRenewal, "cert issue ari"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			writeStatus(t, s, tc.running)
			in := input(s)
			in.Now = tc.at
			c := run(in, checkRenewalDue)
			want(t, c, IDRenewalDue, tc.status, tc.msg...)
			wantHint(t, c, tc.hint...)
			for _, a := range tc.absent {
				if strings.Contains(c.Message, a) {
					t.Errorf("message %q names %q", c.Message, a)
				}
			}
		})
	}

	t.Run("expired is not this check's", func(t *testing.T) {
		in := input(s)
		in.Now = now0.Add(7 * day)
		c := run(in, checkRenewalDue)
		if strings.Contains(c.Message, "mapping short") {
			t.Errorf("an expired certificate warned here: %s", c.Message)
		}
	})

	t.Run("manual certificate", func(t *testing.T) {
		s := acmeState(t)
		ca := mustCA(t)
		kp := mustServer(t, ca, 90*day, "up.example.com")
		m := state.Mapping{ID: "up", Listener: "web", Hosts: []string{"up.example.com"}, Source: state.SourceManual}
		if _, _, err := mappings.Add(context.Background(), s, mappings.Input{Mapping: m, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM}, now0); err != nil {
			t.Fatal(err)
		}
		in := input(s)
		in.Now = now0.Add(60*day + 90*day/20 + day)
		// p2ptls does not renew it: mappings.expiry warns as soon as it is due.
		want(t, run(in, checkRenewalDue), IDRenewalDue, OK)
		c := run(in, checkExpiry)
		want(t, c, IDExpiry, Warn, "mapping up", "manual certificate is due for renewal", "replace it before it expires on")
		wantHint(t, c, "mapping add --id up")
	})
}
