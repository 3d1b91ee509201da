package management

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// TestBrokenConfigIsAServerError: a p2ptls.toml that does not load is the
// state's fault, not the request's, so the API answers 500 naming the file
// (not 422, the kind the command line turns into exit 2) — decided by the
// error's type, not by its text.
func TestBrokenConfigIsAServerError(t *testing.T) {
	ta := newTestAPI(t)
	cfg := filepath.Join(ta.root, state.ConfigFile)
	if err := os.WriteFile(cfg, []byte("schema_version = 1\n[[listeners]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, a := range []answer{
		ta.get("/api/v1/mappings"),
		ta.post("/api/v1/mappings", map[string]any{"listener": "web", "hosts": []string{"new.example.com"}, "source": "self-signed"}),
	} {
		if a.status != http.StatusInternalServerError || !strings.Contains(a.body, cfg) {
			t.Errorf("with a broken %s: %d %s; want 500 naming the file", state.ConfigFile, a.status, a.body)
		}
	}
}
