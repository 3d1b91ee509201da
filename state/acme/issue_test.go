package acme

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

var quiet = Options{Log: slog.New(slog.DiscardHandler)}

// TestRenewThatIssuesNothingWritesNothing: a renewal pass that is not due,
// backs off or only looks (--dry-run) leaves every file as it was, the
// config and the revision included: serve's passes over 100k mappings must
// not rewrite the state.
func TestRenewThatIssuesNothingWritesNothing(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		desc    string
		issued  time.Time
		opts    RenewOptions
		backoff bool
		renewed bool // reported as renewed (a dry run: due)
	}{
		{desc: "not due", issued: now.Add(-24 * time.Hour)},
		{desc: "backing off", issued: now.Add(-80 * 24 * time.Hour), backoff: true},
		{desc: "due, dry run", issued: now.Add(-80 * 24 * time.Hour), opts: RenewOptions{DryRun: true}, renewed: true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			srv := ariServer(t, false, nil)
			s := renewState(t, srv, tc.issued, 90*24*time.Hour)
			if tc.backoff {
				err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
					return mappings.SaveMeta(context.Background(), tx, "m", mappings.Meta{Source: state.SourceACME, Attempts: 1, RetryAt: now.Add(time.Hour)})
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			root := s.(*state.Dir).Root()
			before := statetest.Snapshot(t, root)
			tc.opts.Options = quiet
			r, err := Renew(context.Background(), s, func() time.Time { return now }, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Failed) != 0 || (len(r.Renewed) == 1) != tc.renewed || len(r.Renewed)+len(r.Skipped) != 1 {
				t.Errorf("report %+v", r)
			}
			statetest.AssertSame(t, before, statetest.Snapshot(t, root))
		})
	}
}

// TestFailedIssueIsRecordedInOneChange: an order that fails (here at its
// first step: there is no account) is recorded in the mapping's meta.toml,
// in one Apply, and Attempted says so; refusals before any order are not.
func TestFailedIssueIsRecordedInOneChange(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	d := state.OpenDir(t.TempDir(), time.Second)
	if _, err := state.AddListener(ctx, d, state.Listener{Name: "web", Addr: ":8443", HTTPAddr: ":8080"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []state.Mapping{
		{ID: "a", Listener: "web", Hosts: []string{"a.example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01},
		{ID: "ss", Listener: "web", Hosts: []string{"ss.example.test"}, Source: state.SourceSelfSigned},
	} {
		if _, _, err := mappings.Add(ctx, d, mappings.Input{Mapping: m}, now); err != nil {
			t.Fatal(err)
		}
	}
	c := &statetest.Recorder{Dir: d}
	err := Issue(ctx, c, "a", now, quiet)
	statetest.WantFault(t, err, fault.Failure, `mapping "a"`, "there is no ACME account")
	if !Attempted(err) {
		t.Errorf("Attempted(%v) = false", err)
	}
	want := []string{"certs/public/a/meta.toml"}
	if len(c.Applies) != 1 || !slices.Equal(c.Applies[0], want) || len(c.Loose) != 0 {
		t.Errorf("applies %q, single writes %q; want one Apply of %q", c.Applies, c.Loose, want)
	}
	meta, err := mappings.LoadMeta(ctx, d, "a")
	if err != nil || meta.Attempts != 1 || meta.LastError != "there is no ACME account" || !meta.RetryAt.Equal(now.Add(backoffBase)) {
		t.Errorf("the attempt is not recorded: %+v, %v", meta, err)
	}

	// Refused before any order: nothing is written, and no attempt.
	for _, tc := range []struct {
		id   string
		kind fault.Kind
		msg  string
	}{
		{"nope", fault.NotFound, `mapping "nope" does not exist`},
		{"ss", fault.Failure, "not an ACME mapping"},
	} {
		c := &statetest.Recorder{Dir: d}
		err := Issue(ctx, c, tc.id, now, quiet)
		statetest.WantFault(t, err, tc.kind, tc.msg)
		if Attempted(err) || len(c.Applies)+len(c.Loose) != 0 {
			t.Errorf("%s: Attempted %v, applies %q, writes %q; want none", tc.id, Attempted(err), c.Applies, c.Loose)
		}
	}
}
