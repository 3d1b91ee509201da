package management

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// The API's reads answer from a kept config: a change made through the API
// or by another process (the CLI, state.Update on its own Dir) shows in
// the very next GET, without waiting for the store's watch.
func TestAPIReadsSeeChangesAtOnce(t *testing.T) {
	cli := func(fn func(*state.Tx) error) func(*testing.T, *testAPI) {
		return func(t *testing.T, ta *testAPI) {
			t.Helper()
			// Another Dir on the same directory, as another process has.
			if err := state.Update(context.Background(), state.OpenDir(ta.root, 5*time.Second), "test", fn); err != nil {
				t.Fatal(err)
			}
		}
	}
	hasMapping := func(id string) func(*testing.T, *testAPI) bool {
		return func(t *testing.T, ta *testAPI) bool { return slices.Contains(listedIDs(t, ta, "/api/v1/mappings"), id) }
	}
	upstream := func(id, want string) func(*testing.T, *testAPI) bool {
		return func(t *testing.T, ta *testAPI) bool {
			var m mappingShown
			ta.get("/api/v1/mappings/"+id).json(t, &m)
			return m.Upstream == want
		}
	}
	for _, tc := range []struct {
		desc   string
		change func(*testing.T, *testAPI)
		seen   func(*testing.T, *testAPI) bool
	}{
		{"POST a mapping", func(t *testing.T, ta *testAPI) {
			if a := ta.post("/api/v1/mappings", map[string]any{"id": "new", "listener": "web", "hosts": []string{"new.example.com"}, "source": "self-signed"}); a.status != http.StatusCreated {
				t.Fatalf("POST: %d %s", a.status, a.body)
			}
		}, func(t *testing.T, ta *testAPI) bool {
			return hasMapping("new")(t, ta) && slices.Contains(listedIDs(t, ta, "/api/v1/mappings?limit=100"), "new")
		}},
		{"PATCH a mapping", func(t *testing.T, ta *testAPI) {
			if a := ta.patch("/api/v1/mappings/shop", `{"upstream":"http://127.0.0.1:9000"}`); a.status != http.StatusOK {
				t.Fatalf("PATCH: %d %s", a.status, a.body)
			}
		}, upstream("shop", "http://127.0.0.1:9000")},
		{"DELETE a mapping", func(t *testing.T, ta *testAPI) {
			if a := ta.del("/api/v1/mappings/upload"); a.status != http.StatusOK {
				t.Fatalf("DELETE: %d %s", a.status, a.body)
			}
		}, func(t *testing.T, ta *testAPI) bool { return !hasMapping("upload")(t, ta) }},
		{"the CLI changes a mapping", cli(func(tx *state.Tx) error {
			m, _ := tx.Config.Mapping("shop")
			m.Upstream = "http://127.0.0.1:9001"
			return nil
		}), upstream("shop", "http://127.0.0.1:9001")},
		{"the CLI adds a listener", cli(func(tx *state.Tx) error {
			_, err := tx.Config.AddListener(state.Listener{Name: "extra", Addr: "127.0.0.1:10443"})
			return err
		}), func(t *testing.T, ta *testAPI) bool {
			var ls []state.Listener
			ta.get("/api/v1/listeners").json(t, &ls)
			return slices.ContainsFunc(ls, func(l state.Listener) bool { return l.Name == "extra" })
		}},
		{"POST a DNS credential", func(t *testing.T, ta *testAPI) {
			if a := ta.post("/api/v1/dns-credentials", map[string]any{"name": "fresh", "provider": "cloudflare", "api_token": "fresh-token-1234"}); a.status != http.StatusCreated {
				t.Fatalf("POST: %d %s", a.status, a.body)
			}
		}, func(t *testing.T, ta *testAPI) bool {
			var creds []struct{ Name string }
			ta.get("/api/v1/dns-credentials").json(t, &creds)
			return slices.ContainsFunc(creds, func(c struct{ Name string }) bool { return c.Name == "fresh" })
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ta := newTestAPI(t)
			if tc.seen(t, ta) {
				t.Fatal("the change shows before it was made")
			}
			tc.change(t, ta)
			if !tc.seen(t, ta) {
				t.Fatal("the next GET does not show the change")
			}
		})
	}
}

// A hand edit of a mapping's record (no p2ptls.rev) shows once the
// store's watch has signalled it.
func TestAPIReadsSeeHandEditedRecords(t *testing.T) {
	ta := newTestAPI(t)
	before := ta.get("/api/v1/mappings/shop").body
	p := filepath.Join(ta.root, filepath.FromSlash(state.RecordName("shop")))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, "upstream = \"http://127.0.0.1:9002\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	const wait = 15 * time.Second // far above the watch's delay, on a busy machine
	deadline := time.Now().Add(wait)
	for {
		var m mappingShown
		ta.get("/api/v1/mappings/shop").json(t, &m)
		if m.Upstream == "http://127.0.0.1:9002" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edit is not shown within %v: %s (before: %s)", wait, m.Upstream, before)
		}
		time.Sleep(5 * time.Millisecond) // pacing, not an assertion
	}
}

// Every read shares the one kept config: read at once by many requests,
// during a change, none of them changes it (run with -race), and each
// answers as the state was.
func TestAPIReadsShareTheKeptConfig(t *testing.T) {
	ta := newTestAPI(t)
	paths := []string{"/api/v1/mappings", "/api/v1/mappings?limit=2", "/api/v1/mappings?listener=web&q=shop",
		"/api/v1/mappings/shop", "/api/v1/certificates/shop", "/api/v1/listeners", "/api/v1/dns-credentials",
		"/api/v1/acme/accounts"}
	var wg sync.WaitGroup
	for range 4 {
		for _, p := range paths {
			wg.Go(func() {
				for range 5 {
					r := httptest.NewRequest("GET", p, nil)
					r.Header.Set("Authorization", ta.bearer())
					w := httptest.NewRecorder()
					ta.h.ServeHTTP(w, r)
					if w.Code != http.StatusOK {
						t.Errorf("GET %s: %d %s", p, w.Code, w.Body)
						return
					}
				}
			})
		}
	}
	if a := ta.patch("/api/v1/mappings/shop", `{"upstream":"http://127.0.0.1:9004"}`); a.status != http.StatusOK {
		t.Errorf("PATCH: %d %s", a.status, a.body)
	}
	a := ta.post("/api/v1/dns-credentials/spare/disable", nil)
	var cred struct{ Enabled bool }
	if a.json(t, &cred); a.status != http.StatusOK || cred.Enabled {
		t.Errorf("disable: %d %s", a.status, a.body)
	}
	wg.Wait()
	var m mappingShown
	ta.get("/api/v1/mappings/shop").json(t, &m)
	if m.Upstream != "http://127.0.0.1:9004" {
		t.Errorf("after the change and the reads: upstream %q", m.Upstream)
	}
}

// listedIDs are the ids GET path lists, plain or paged.
func listedIDs(t *testing.T, ta *testAPI, path string) []string {
	t.Helper()
	a := ta.get(path)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, a.status, a.body)
	}
	var list []mappings.Info
	if path == "/api/v1/mappings" {
		a.json(t, &list)
	} else {
		var p struct{ Items []mappings.Info }
		a.json(t, &p)
		list = p.Items
	}
	ids := make([]string, 0, len(list))
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	return ids
}
