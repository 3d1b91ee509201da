package mappings

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// TestStatusFollowsTheCertificateAndARI: the status of an ACME mapping
// comes from its own certificate's lifetime (a 6-day one is valid right
// after issue, expiring at half its life) and from the ARI window's time
// (expiring once it came, though the lifetime rule would wait: a window
// moved earlier); an answer recorded about another certificate says
// nothing.
func TestStatusFollowsTheCertificateAndARI(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		desc     string
		lifetime time.Duration
		at       time.Time
		ari      bool
		otherFP  bool
		want     string
	}{
		{desc: "6 days, right after issue", lifetime: 6 * 24 * time.Hour, at: now.Add(time.Minute), want: StatusValid},
		{desc: "6 days, 2 days on", lifetime: 6 * 24 * time.Hour, at: now.Add(48 * time.Hour), want: StatusValid},
		{desc: "6 days, past half", lifetime: 6 * 24 * time.Hour, at: now.Add(72 * time.Hour), want: StatusExpiring},
		{desc: "90 days, ARI time came", lifetime: 90 * 24 * time.Hour, at: now.Add(11 * 24 * time.Hour), ari: true, want: StatusExpiring},
		{desc: "90 days, ARI time not yet", lifetime: 90 * 24 * time.Hour, at: now.Add(9 * 24 * time.Hour), ari: true, want: StatusValid},
		{desc: "90 days, ARI about another certificate", lifetime: 90 * 24 * time.Hour, at: now.Add(11 * 24 * time.Hour), ari: true, otherFP: true, want: StatusValid},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
			m := state.Mapping{ID: "a", Listener: "web", Hosts: []string{"a.example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}
			err := state.Update(ctx, s, "test", func(tx *state.Tx) error {
				tx.Config.Listeners = append(tx.Config.Listeners, state.Listener{Name: "web", Addr: ":443", HTTPAddr: ":80"})
				tx.Config.Mappings = append(tx.Config.Mappings, m)
				kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), now, tc.lifetime)
				if err != nil {
					return err
				}
				meta := Meta{Source: state.SourceACME, FingerprintSHA256: pki.Fingerprint(kp.Cert), NextRenewalAt: pki.RenewalTime(kp.Cert)}
				if tc.ari {
					meta.ARI = ARI{WindowStart: now.Add(9 * 24 * time.Hour), WindowEnd: now.Add(12 * 24 * time.Hour), CheckAt: now.Add(9*24*time.Hour + time.Hour)}
					meta.NextRenewalAt = now.Add(10 * 24 * time.Hour)
				}
				if tc.otherFP {
					meta.FingerprintSHA256 = "AB:CD"
				}
				return WriteCertificate(ctx, tx, m.ID, kp, meta)
			})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := state.LoadConfig(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			list, err := List(ctx, s, cfg, "", tc.at)
			if err != nil {
				t.Fatal(err)
			}
			info, _, err := Show(ctx, s, cfg, "a", tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if list[0].Status != tc.want || info.Status != tc.want {
				t.Errorf("list %q, show %q; want %q", list[0].Status, info.Status, tc.want)
			}
		})
	}
}
