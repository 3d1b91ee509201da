package mappings

import (
	"context"
	"errors"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// A rule that admit does not check but the config's validation does is
// still traced to the item of the batch that breaks it, and nothing is
// saved: commit leaves the one validation to Update.
func TestCommitTracesABrokenRuleToItsItem(t *testing.T) {
	ok := func(id string) prepared {
		return prepared{m: state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned, Days: 30}}
	}
	tests := []struct {
		name  string
		bad   func(m *state.Mapping)
		index int
	}{
		{"an upstream that is not http", func(m *state.Mapping) { m.Upstream = "ftp://127.0.0.1" }, 1},
		{"an unknown source", func(m *state.Mapping) { m.Source = "carrier-pigeon" }, 2},
		{"a wildcard on http-01", func(m *state.Mapping) {
			m.Hosts, m.Source, m.Challenge = []string{"*.w.example.com"}, state.SourceACME, state.ChallengeHTTP01
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			mustAdd(t, s, Input{Mapping: state.Mapping{ID: "before", Listener: "web", Hosts: []string{"before.example.com"}, Source: state.SourceSelfSigned}})
			batch := []prepared{ok("a"), ok("b"), ok("c")}
			tc.bad(&batch[tc.index].m)
			err := commit(context.Background(), s, "test", batch, now0)
			var ie *itemError
			if !errors.As(err, &ie) || ie.Index != tc.index {
				t.Fatalf("commit = %v (%#v), want an item error of item %d", err, ie, tc.index)
			}
			cfg, err := state.LoadConfig(context.Background(), s)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Mappings) != 1 || cfg.Mappings[0].ID != "before" {
				t.Errorf("mappings after a refused batch: %+v", cfg.Mappings)
			}
		})
	}
}
