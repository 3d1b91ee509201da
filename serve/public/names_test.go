package public

import (
	"slices"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// TestMappingOf: what each changed store name is to the public listeners.
// Derived data under run/cache/ (the memo of loaded records, written by
// readers) and the runtime's files decide nothing served.
func TestMappingOf(t *testing.T) {
	tests := []struct {
		name string
		id   string
		kind nameKind
	}{
		{state.ConfigFile, "", nameAll},
		{"mappings", "", nameAll},
		{"mappings/app.toml", "app", nameMapping},
		{"mappings/app.toml~", "", nameOther},
		{"mappings/Bad Id.toml", "", nameAll},
		{"certs/public/app/cert.pem", "app", nameMapping},
		{"certs/public", "", nameAll},
		{"run/cache", "", nameOther},
		{"run/cache/records", "", nameOther},
		{"run/cache/mappings/app.toml", "", nameOther},
		{"run/cache/.records.tmp-1", "", nameOther},
		{"run/status.json", "", nameOther},
	}
	for _, tc := range tests {
		id, kind := mappingOf(tc.name)
		if id != tc.id || kind != tc.kind {
			t.Errorf("mappingOf(%q) = %q, %v; want %q, %v", tc.name, id, kind, tc.id, tc.kind)
		}
	}
}

// TestCacheChangesReloadNothing: a change that names only files under
// run/cache/ reloads no mapping, and one that names a record beside them
// reloads that record alone.
func TestCacheChangesReloadNothing(t *testing.T) {
	s := New(Options{Log: discardLog})
	s.cfg = &state.Config{SchemaVersion: state.SchemaVersion}
	for _, tc := range []struct {
		names []string
		ids   []string
	}{
		{[]string{"run/cache", "run/cache/records"}, nil},
		{[]string{"run/cache/records", "mappings/app.toml"}, []string{"app"}},
	} {
		ids, full := s.affected(state.Changed{Names: tc.names})
		if full || !slices.Equal(ids, tc.ids) {
			t.Errorf("%q: reload %q (full %v), want %q", tc.names, ids, full, tc.ids)
		}
	}
}
