package issuance

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

var (
	ctx  = context.Background()
	now0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

const day = 24 * time.Hour

// fixture is a state with one mapping of every kind "cert issue" meets:
//
//	ss-valid      self-signed, valid
//	ss-expired    self-signed, expired
//	ss-expiring   self-signed, inside its renewal window
//	up            manual (uploaded), valid
//	disk          file, valid
//	acme-pending  ACME, never issued
//	acme-valid    ACME, issued and valid
//	acme-backoff  ACME, never issued, backing off after a failure
func fixture(t *testing.T) (*state.Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	s := state.OpenDir(root, 2*time.Second)
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: ":8443", HTTPAddr: ":8080"}); err != nil {
		t.Fatal(err)
	}
	add := func(at time.Time, in mappings.Input) {
		t.Helper()
		in.Mapping.Listener = "web"
		if _, _, err := mappings.Add(ctx, s, in, at); err != nil {
			t.Fatalf("add %s: %v", in.Mapping.ID, err)
		}
	}
	selfSigned := func(id string, days int) state.Mapping {
		return state.Mapping{ID: id, Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned, Days: days}
	}
	acmeMapping := func(id string) state.Mapping {
		return state.Mapping{ID: id, Hosts: []string{id + ".example.com"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01, KeyType: "ec256"}
	}
	add(now0, mappings.Input{Mapping: selfSigned("ss-valid", 90)})
	add(now0.Add(-40*day), mappings.Input{Mapping: selfSigned("ss-expired", 30)})
	add(now0.Add(-70*day), mappings.Input{Mapping: selfSigned("ss-expiring", 90)})
	kp := keyPair(t, now0.Add(-day), 90*day, "up.example.com")
	add(now0, mappings.Input{Mapping: state.Mapping{ID: "up", Hosts: []string{"up.example.com"}, Source: state.SourceManual}, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
	files := t.TempDir()
	fkp := keyPair(t, now0.Add(-day), 90*day, "disk.example.com")
	certFile, keyFile := filepath.Join(files, "c.pem"), filepath.Join(files, "k.pem")
	for p, b := range map[string][]byte{certFile: fkp.CertPEM, keyFile: fkp.KeyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	add(now0, mappings.Input{Mapping: state.Mapping{ID: "disk", Hosts: []string{"disk.example.com"}, Source: state.SourceFile, CertFile: certFile, KeyFile: keyFile}})
	for _, id := range []string{"acme-pending", "acme-valid", "acme-backoff"} {
		add(now0, mappings.Input{Mapping: acmeMapping(id)})
	}
	// As acme.Issue leaves them: a certificate with its record, and a
	// failed attempt with its back-off.
	akp := keyPair(t, now0.Add(-day), 90*day, "acme-valid.example.com")
	err := state.Update(ctx, s, "test", func(tx *state.Tx) error {
		if err := mappings.WriteCertificate(ctx, tx, "acme-valid", akp, mappings.Meta{Source: state.SourceACME, IssuedAt: now0.Add(-day), NotAfter: akp.Cert.NotAfter}); err != nil {
			return err
		}
		return mappings.SaveMeta(ctx, tx, "acme-backoff", mappings.Meta{Source: state.SourceACME, LastAttemptAt: now0, LastError: "no", Attempts: 1, RetryAt: now0.Add(time.Hour)})
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func keyPair(t *testing.T, from time.Time, validity time.Duration, hosts ...string) *pki.KeyPair {
	t.Helper()
	kp, err := pki.SelfSigned(pki.ParseNames(hosts), from, validity)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestSelect: which mappings "cert issue" takes, and what --all leaves out
// and why.
func TestSelect(t *testing.T) {
	s, _ := fixture(t)
	tests := []struct {
		name    string
		sel     Selection
		want    []string
		skipped map[string]string // id -> a part of the reason
	}{
		{"named, as given", Selection{IDs: []string{"up", "nope", "ss-valid"}}, []string{"up", "nope", "ss-valid"}, nil},
		{"all: ACME and self-signed without a valid certificate, not backing off", Selection{All: true},
			[]string{"acme-pending", "ss-expired", "ss-expiring"}, // in id order, as records load
			map[string]string{"ss-valid": "is valid", "acme-valid": "is valid", "up": "source manual", "disk": "source file",
				"acme-backoff": "backing off (failed) until 2026-03-01T13:00:00Z"}},
		{"all with force: every ACME and self-signed one", Selection{All: true, Force: true},
			[]string{"acme-backoff", "acme-pending", "acme-valid", "ss-expired", "ss-expiring", "ss-valid"},
			map[string]string{"up": "cannot issue", "disk": "cannot issue"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, skipped, err := Select(ctx, s, tc.sel, now0)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("selected %q, want %q", ids, tc.want)
			}
			if len(skipped) != len(tc.skipped) {
				t.Errorf("skipped %+v, want %v", skipped, tc.skipped)
			}
			for _, sk := range skipped {
				if want, ok := tc.skipped[sk.ID]; !ok || !strings.Contains(sk.Reason, want) {
					t.Errorf("skipped %s because %q, want %q", sk.ID, sk.Reason, want)
				}
			}
		})
	}
}

// TestIssueBySource: what Issue does with each source, and that a refusal
// leaves the state as it was.
func TestIssueBySource(t *testing.T) {
	tests := []struct {
		id        string
		fails     bool
		kind      fault.Kind
		msg, hint string
		ordered   bool // BeforeOrder ran: an ACME order was started
		attempted bool // the failure is a recorded ACME attempt
	}{
		{id: "ss-valid"},
		{id: "ss-expired"},
		{id: "up", fails: true, kind: fault.Failure, msg: "uploaded certificate, which p2ptls cannot renew", hint: "mapping add --id up"},
		{id: "disk", fails: true, kind: fault.Failure, msg: "serves the files", hint: "replace the files on disk"},
		{id: "nope", fails: true, kind: fault.NotFound, msg: `mapping "nope" does not exist`, hint: "p2ptls mapping list"},
		// No account is registered: the order fails at its first step,
		// without the network, and is recorded like any failed order.
		{id: "acme-pending", fails: true, kind: fault.Failure, msg: "no ACME account", hint: "acme account register", ordered: true, attempted: true},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			s, root := fixture(t)
			cfg, err := state.LoadConfig(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			var before *mappings.Cert
			if m, ok := cfg.Mapping(tc.id); ok {
				before, _ = mappings.Load(ctx, s, *m)
			}
			snap := statetest.Snapshot(t, root)
			ordered := false
			err = Issue(ctx, s, tc.id, now0, Options{ACME: acme.Options{Log: slog.New(slog.DiscardHandler)}, BeforeOrder: func() { ordered = true }})
			if ordered != tc.ordered {
				t.Errorf("an ACME order started: %v, want %v", ordered, tc.ordered)
			}
			if got := acme.Attempted(err); got != tc.attempted {
				t.Errorf("Attempted(%v) = %v, want %v", err, got, tc.attempted)
			}
			if !tc.fails {
				if err != nil {
					t.Fatal(err)
				}
				m, _ := cfg.Mapping(tc.id)
				after, err := mappings.Load(ctx, s, *m)
				meta, merr := mappings.LoadMeta(ctx, s, tc.id)
				if err != nil || merr != nil || after.Chain[0].SerialNumber.Cmp(before.Chain[0].SerialNumber) == 0 || !meta.IssuedAt.Equal(now0) {
					t.Errorf("no new certificate from now: %v, %v, %+v", err, merr, meta)
				}
				return
			}
			statetest.WantFault(t, err, tc.kind, tc.msg)
			statetest.WantHint(t, err, tc.hint)
			if !tc.attempted {
				after := statetest.Snapshot(t, root)
				delete(after, state.RevisionFile)
				delete(snap, state.RevisionFile)
				statetest.AssertSame(t, snap, after)
				return
			}
			meta, err := mappings.LoadMeta(ctx, s, tc.id)
			if err != nil || meta.Attempts != 1 || !strings.Contains(meta.LastError, tc.msg) || !meta.RetryAt.After(now0) {
				t.Errorf("the attempt is not recorded: %+v, %v", meta, err)
			}
		})
	}
}

// TestRun: every selected mapping is tried, one failure does not stop the
// others, and the run's error is the mapping's own for one, a count for
// several.
func TestRun(t *testing.T) {
	tests := []struct {
		ids            []string
		issued, failed []string
		err            string // "" for none
		kind           fault.Kind
	}{
		{ids: nil, issued: []string{}, failed: []string{}},
		{ids: []string{"ss-valid"}, issued: []string{"ss-valid"}, failed: []string{}},
		{ids: []string{"up"}, issued: []string{}, failed: []string{"up"}, err: "uploaded certificate", kind: fault.Failure},
		{ids: []string{"nope"}, issued: []string{}, failed: []string{"nope"}, err: "does not exist", kind: fault.NotFound},
		{ids: []string{"up", "ss-valid", "nope"}, issued: []string{"ss-valid"}, failed: []string{"up", "nope"}, err: "2 of 3 mappings failed: up, nope", kind: fault.Failure},
		{ids: []string{"up", "disk"}, issued: []string{}, failed: []string{"up", "disk"}, err: "2 of 2 mappings failed", kind: fault.Failure},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.ids, ","), func(t *testing.T) {
			s, _ := fixture(t)
			var seen []string
			r, err := Run(ctx, s, tc.ids, func() time.Time { return now0 }, Options{}, func(id string, err error) {
				seen = append(seen, id)
				if slices.Contains(tc.failed, id) == (err == nil) {
					t.Errorf("%s: done with %v", id, err)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Issued, tc.issued) || !slices.Equal(r.Failed, tc.failed) || len(r.Errors) != len(tc.failed) {
				t.Errorf("report %+v, want issued %q, failed %q", r, tc.issued, tc.failed)
			}
			if !slices.Equal(seen, tc.ids) {
				t.Errorf("done called for %q, want %q", seen, tc.ids)
			}
			for _, id := range tc.failed {
				if r.Errors[id] == "" || strings.Contains(r.Errors[id], "\n") {
					t.Errorf("error of %s: %q", id, r.Errors[id])
				}
			}
			err = r.Err()
			if tc.err == "" {
				if err != nil {
					t.Errorf("Err() = %v", err)
				}
				return
			}
			statetest.WantFault(t, err, tc.kind, tc.err)
		})
	}
}

// TestPending: the ACME mappings serve issues at once are the ones without
// a certificate that are not backing off, and the changed ones that mapping
// set marked for a new order (Meta.Reissue), unless they back off.
func TestPending(t *testing.T) {
	s, _ := fixture(t)
	// acme-valid has a certificate: marked for a new order, it is pending
	// once a change names it; a second one is marked and backing off.
	akp := keyPair(t, now0.Add(-day), 90*day, "acme-reissue-backoff.example.com")
	if _, _, err := mappings.Add(ctx, s, mappings.Input{Mapping: state.Mapping{ID: "acme-reissue-backoff", Listener: "web",
		Hosts: []string{"acme-reissue-backoff.example.com"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01, KeyType: "ec256"}}, now0); err != nil {
		t.Fatal(err)
	}
	err := state.Update(ctx, s, "test", func(tx *state.Tx) error {
		if err := mappings.WriteCertificate(ctx, tx, "acme-reissue-backoff", akp, mappings.Meta{Source: state.SourceACME, IssuedAt: now0.Add(-day), NotAfter: akp.Cert.NotAfter}); err != nil {
			return err
		}
		return mappings.SaveMeta(ctx, tx, "acme-reissue-backoff", mappings.Meta{Source: state.SourceACME, IssuedAt: now0.Add(-day), NotAfter: akp.Cert.NotAfter,
			Reissue: "changed hosts", Attempts: 1, RetryAt: now0.Add(30 * time.Minute)})
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		at      time.Time
		changed []string
		want    []string
		retry   time.Time
	}{
		{"no certificate", now0, nil, []string{"acme-pending"}, now0.Add(time.Hour)},
		{"back-off over", now0.Add(2 * time.Hour), nil, []string{"acme-backoff", "acme-pending"}, time.Time{}},
		{"certificate, not marked", now0, []string{"acme-valid", "ss-valid", "gone"}, []string{"acme-pending"}, now0.Add(time.Hour)},
		{"marked, backing off", now0, []string{"acme-reissue-backoff"}, []string{"acme-pending"}, now0.Add(30 * time.Minute)},
		{"marked, back-off over", now0.Add(2 * time.Hour), []string{"acme-reissue-backoff"}, []string{"acme-backoff", "acme-pending", "acme-reissue-backoff"}, time.Time{}},
		{"marked, not changed", now0.Add(2 * time.Hour), nil, []string{"acme-backoff", "acme-pending"}, time.Time{}},
	}
	for _, tc := range tests {
		ids, retry, err := Pending(ctx, s, tc.at, tc.changed)
		if err != nil || !slices.Equal(ids, tc.want) || !retry.Equal(tc.retry) {
			t.Errorf("%s: Pending at %v = %q, %v, %v; want %q, %v", tc.name, tc.at, ids, retry, err, tc.want, tc.retry)
		}
	}
	// What mapping set writes is what marks it: acme-valid changed hosts.
	if _, _, err := mappings.Set(ctx, s, "acme-valid", mappings.Changes{Hosts: []string{"acme-valid.example.com", "www.acme-valid.example.com"}}, now0, nil, mappings.Fields{}); err != nil {
		t.Fatal(err)
	}
	ids, _, err := Pending(ctx, s, now0, []string{"acme-valid"})
	if err != nil || !slices.Equal(ids, []string{"acme-pending", "acme-valid"}) {
		t.Errorf("after mapping set: Pending = %q, %v; want acme-pending and acme-valid", ids, err)
	}
	if err := os.WriteFile(filepath.Join(s.Root(), state.ConfigFile), []byte("schema_version = [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var broken *state.ConfigFileError
	if _, _, err := Pending(ctx, s, now0, nil); !errors.As(err, &broken) {
		t.Errorf("Pending on a broken p2ptls.toml = %v", err)
	}
	if r, err := Run(ctx, s, []string{"acme-pending", "ss-valid"}, time.Now, Options{}, nil); !errors.As(err, &broken) || r != nil {
		t.Errorf("Run on a broken p2ptls.toml = %+v, %v; want the config's error before any mapping", r, err)
	}
}
