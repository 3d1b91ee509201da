package management

import (
	"testing"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// TestAPIKeyType: the list and GET /api/v1/mappings/{id} carry key_type,
// the ACME mapping's (ec256 by default), "" for the other sources.
func TestAPIKeyType(t *testing.T) {
	ta := newTestAPI(t)
	if a := ta.post("/api/v1/mappings", map[string]any{"id": "rsa", "listener": "api", "hosts": []string{"rsa.example.com"},
		"source": "acme", "challenge": "http-01", "key_type": "rsa4096"}); a.status != 201 {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	want := map[string]string{"shop": "", "upload": "", "wild": "ec256", "rsa": "rsa4096"}
	var list []mappings.Info
	ta.get("/api/v1/mappings").json(t, &list)
	if len(list) != len(want) {
		t.Fatalf("%d mappings, want %d", len(list), len(want))
	}
	for _, info := range list {
		if info.KeyType != want[info.ID] {
			t.Errorf("list: %s has key_type %q, want %q", info.ID, info.KeyType, want[info.ID])
		}
		var shown map[string]any
		ta.get("/api/v1/mappings/" + info.ID).json(t, &shown)
		if got, ok := shown["key_type"]; !ok || got != want[info.ID] {
			t.Errorf("GET /api/v1/mappings/%s: key_type %v (present %v), want %q", info.ID, got, ok, want[info.ID])
		}
	}
}
