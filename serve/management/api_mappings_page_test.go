package management

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// addBulk adds n self-signed mappings to ta's state, "m00000"… in a
// scrambled config order, over listeners web and api, each with the same
// certificate file (what a list reads): the whole config saved at once and
// the files written directly, so that 100k take seconds, not an hour of
// "mapping add".
func addBulk(tb testing.TB, ta *testAPI, n int) {
	tb.Helper()
	ctx := context.Background()
	cfg, err := state.LoadConfig(ctx, ta.store)
	if err != nil {
		tb.Fatal(err)
	}
	kp := selfSigned(tb, "bulk.example.net")
	for k := range n {
		i := (k * 7919) % n // a prime step: config order is not key order
		if n%7919 == 0 {
			i = k
		}
		id := fmt.Sprintf("m%05d", i)
		cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: id, Listener: []string{"web", "api"}[i%2],
			Hosts: []string{id + ".bulk.example.net"}, Source: state.SourceSelfSigned, Days: 30})
		dir := filepath.Join(ta.root, filepath.FromSlash(mappings.MappingDir(id)))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, mappings.CertFileName), kp.CertPEM, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := state.SaveConfig(ctx, ta.store, cfg); err != nil {
		tb.Fatal(err)
	}
}

// page is the paged answer, strictly decoded.
type page struct {
	Items      []json.RawMessage `json:"items"`
	NextCursor *string           `json:"next_cursor"`
}

func (ta *testAPI) page(t *testing.T, params url.Values) page {
	t.Helper()
	a := ta.get("/api/v1/mappings?" + params.Encode())
	if a.status != 200 {
		t.Fatalf("GET %s: %d %s", params.Encode(), a.status, a.body)
	}
	var p page
	dec := json.NewDecoder(strings.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || p.Items == nil || p.NextCursor == nil {
		t.Fatalf("GET %s is not a page with items and next_cursor: %v: %.300s", params.Encode(), err, a.body)
	}
	return p
}

// compact is the JSON of b without its indentation.
func compact(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestAPIMappingPages: paging through a few hundred mappings with any
// filter and limit collects each selected mapping once, by listener then
// id, as the plain list describes it.
func TestAPIMappingPages(t *testing.T) {
	ta := newTestAPI(t)
	addBulk(t, ta, 300)
	var all []mappings.Info
	a := ta.get("/api/v1/mappings")
	a.json(t, &all) // the plain GET is still the whole array
	if a.status != 200 || len(all) != 303 {
		t.Fatalf("plain list: %d, %d mappings", a.status, len(all))
	}
	plain := map[string]string{} // id: the plain list's JSON of it
	var raw []json.RawMessage
	a.json(t, &raw)
	for i, m := range all {
		plain[m.ID] = compact(t, raw[i])
	}
	for _, tc := range []struct {
		params url.Values
		n      int
	}{
		{url.Values{"limit": {"1"}}, 303},
		{url.Values{"limit": {"17"}}, 303},
		{url.Values{"cursor": {""}}, 303}, // limit 100, from the start
		{url.Values{"limit": {"1000"}}, 303},
		{url.Values{"listener": {"api"}, "limit": {"9"}}, 150},
		{url.Values{"listener": {"web"}, "q": {""}}, 153},
		{url.Values{"q": {"M0012"}, "limit": {"3"}}, 10}, // the id, in another case: m00120…m00129
		{url.Values{"q": {"shop.example"}}, 1},           // a host
		{url.Values{"q": {".example.com"}}, 3},           // shop, upload, wild
		{url.Values{"status": {"pending"}}, 1},           // wild
		{url.Values{"status": {"valid"}, "listener": {"api"}, "limit": {"50"}}, 150},
		{url.Values{"status": {"failed"}}, 0},
		{url.Values{"q": {"m001"}, "status": {"valid"}, "listener": {"web"}, "limit": {"4"}}, 50},
		{url.Values{"source": {"acme"}}, 1},                           // wild
		{url.Values{"source": {"manual"}, "listener": {"web"}}, 1},    // upload
		{url.Values{"source": {"self-signed"}, "limit": {"40"}}, 301}, // shop and the bulk
		{url.Values{"source": {"self-signed"}, "q": {"shop"}}, 1},     // with a search
		{url.Values{"source": {"file"}}, 0},                           // none
		{url.Values{"source": {"acme"}, "status": {"valid"}}, 0},      // wild is pending
		{url.Values{"source": {"self-signed"}, "listener": {"api"}, "limit": {"7"}}, 150},
	} {
		t.Run(tc.params.Encode(), func(t *testing.T) {
			params := tc.params
			var got []string
			for pages := 0; ; pages++ {
				if pages > 400 {
					t.Fatal("the walk does not end")
				}
				p := ta.page(t, params)
				for _, item := range p.Items {
					var info mappings.Info
					if err := json.Unmarshal(item, &info); err != nil {
						t.Fatal(err)
					}
					if compact(t, item) != plain[info.ID] {
						t.Errorf("page item %s differs from the plain list's %s", item, plain[info.ID])
					}
					got = append(got, info.Listener+"/"+info.ID)
				}
				if *p.NextCursor == "" {
					break
				}
				params = url.Values{}
				for k, v := range tc.params {
					params[k] = v
				}
				params.Set("cursor", *p.NextCursor)
			}
			var want []string
			for _, m := range all {
				q := strings.ToLower(tc.params.Get("q"))
				if l := tc.params.Get("listener"); l != "" && m.Listener != l {
					continue
				}
				if s := tc.params.Get("status"); s != "" && m.Status != s {
					continue
				}
				if s := tc.params.Get("source"); s != "" && m.Source != s {
					continue
				}
				if !strings.Contains(m.ID, q) && !slices.ContainsFunc(m.Hosts, func(h string) bool { return strings.Contains(h, q) }) {
					continue
				}
				want = append(want, m.Listener+"/"+m.ID)
			}
			slices.Sort(want) // listener then id: "/" sorts before every id character
			if len(want) != tc.n {
				t.Fatalf("the filter selects %d, the test expects %d", len(want), tc.n)
			}
			if !slices.Equal(got, want) {
				t.Errorf("collected %d:\n%.400v\nwant %d:\n%.400v", len(got), got, len(want), want)
			}
		})
	}
	// listener alone keeps the plain answer, a JSON array.
	if a := ta.get("/api/v1/mappings?listener=api"); a.status != 200 || !strings.HasPrefix(a.body, "[") {
		t.Errorf("listener alone: %d %.100s", a.status, a.body)
	}
}

// TestAPIMappingPageRefusals: every bad paging parameter is 400 with an
// error and a hint in API terms, and changes nothing.
func TestAPIMappingPageRefusals(t *testing.T) {
	ta := newTestAPI(t)
	addBulk(t, ta, 5)
	first := ta.page(t, url.Values{"limit": {"2"}, "listener": {"web"}})
	cursor := *first.NextCursor
	if cursor == "" {
		t.Fatal("no cursor after the first of several pages")
	}
	tampered := []byte(cursor)
	tampered[len(tampered)/2] ^= 1 // another character in the middle, base64url or not: refused either way
	for _, tc := range []struct {
		desc, query, want string
	}{
		{"limit 0", "limit=0", `limit="0" is not a number from 1 to 1000`},
		{"negative limit", "limit=-5", `limit="-5"`},
		{"huge limit", "limit=1001", `limit="1001"`},
		{"limit beyond int", "limit=99999999999999999999999", `limit="99999999999999999999999"`},
		{"non-numeric limit", "limit=ten", `limit="ten"`},
		{"empty limit", "limit=", `limit=""`},
		{"limit twice", "limit=5&limit=6", "limit is given 2 times"},
		{"unknown status", "status=ok", `status="ok" is not a status`},
		{"status in another case", "status=Valid", `status="Valid"`},
		{"unknown listener", "listener=nope&limit=5", `listener="nope" names no listener`},
		{"unknown parameter", "limit=5&lmit=6", `unknown query parameter "lmit"`},
		{"garbage cursor", "cursor=not-a-cursor", "the cursor is not one this API gave"},
		{"tampered cursor", "listener=web&limit=2&cursor=" + string(tampered), "the cursor is not one this API gave"},
		{"cut cursor", "listener=web&limit=2&cursor=" + cursor[:len(cursor)-3], "the cursor is not one this API gave"},
		{"unknown source", "source=letsencrypt", `source="letsencrypt" is not a source`},
		{"source in another case", "source=ACME&limit=5", `source="ACME"`},
		{"source twice", "source=acme&source=file", "source is given 2 times"},
		{"cursor of another listing", "listener=api&limit=2&cursor=" + cursor, "other listener, q, status or source"},
		{"cursor without its listener", "limit=2&cursor=" + cursor, "other listener, q, status or source"},
		{"cursor of another source", "listener=web&limit=2&source=self-signed&cursor=" + cursor, "other listener, q, status or source"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			before := ta.snapshot()
			a := ta.get("/api/v1/mappings?" + tc.query)
			if a.status != 400 {
				t.Fatalf("status %d, want 400: %s", a.status, a.body)
			}
			e := a.errorBody(t)
			if !strings.Contains(e.Error, tc.want) {
				t.Errorf("error %q does not say %q", e.Error, tc.want)
			}
			if strings.Contains(e.Hint, "--") || strings.Contains(e.Hint, "p2ptls ") {
				t.Errorf("hint %q speaks of the command line", e.Hint)
			}
			sameSnapshot(t, before, ta.snapshot())
		})
	}
	// A bad source is answered with every valid one.
	e := ta.get("/api/v1/mappings?source=letsencrypt").errorBody(t)
	for _, src := range mappings.Sources {
		if !strings.Contains(e.Hint, "source="+src) {
			t.Errorf("hint %q does not name source=%s", e.Hint, src)
		}
	}
	// The same cursor, with its own filters, still continues the walk.
	next := ta.page(t, url.Values{"limit": {"2"}, "listener": {"web"}, "cursor": {cursor}})
	if len(next.Items) != 2 {
		t.Errorf("second page: %d items", len(next.Items))
	}
	for desc, auth := range map[string]string{"missing": "", "revoked": "Bearer " + ta.revoked} {
		before := ta.snapshot()
		a := ta.do(request{method: "GET", path: "/api/v1/mappings?limit=2&cursor=" + cursor, auth: auth})
		if a.status != 401 {
			t.Errorf("%s token: status %d, want 401: %s", desc, a.status, a.body)
		}
		a.errorBody(t)
		sameSnapshot(t, before, ta.snapshot())
	}
}

// BenchmarkAPIMappingPage is GET /api/v1/mappings with limit=100 through
// the handler (token check, the kept config checked against the state,
// page) at 10k and 100k mappings: the first page, a page in the middle (by
// its cursor) and a search that matches a few mappings. The goal is 50 ms
// at 100k. "load config" is what each call paid before the config was
// kept, and what the first call after a change pays.
func BenchmarkAPIMappingPage(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ta := newTestAPI(b)
			addBulk(b, ta, n)
			// A handler on a Dir opened after the bulk write, as serve
			// started on this state has: its watch has no events of that
			// write to tell, which would make the kept config load again
			// in the middle of a run.
			o := ta.o
			o.Store = state.OpenDir(ta.root, 5*time.Second)
			h := newHandler(b.Context(), o)
			get := func(b *testing.B, query string) page {
				r := httptest.NewRequest("GET", "/api/v1/mappings?"+query, nil)
				r.Header.Set("Authorization", ta.bearer())
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				var p page
				if err := json.Unmarshal(w.Body.Bytes(), &p); w.Code != http.StatusOK || err != nil || p.NextCursor == nil {
					b.Fatalf("GET %s: %d %v %.200s", query, w.Code, err, w.Body.String())
				}
				return p
			}
			// A page in the middle: the cursor the API gives after the
			// key (api, m<n/2>), and its first item is the id after it
			// on api (odd ids are on api).
			half := n/2 + 1 - (n/2)%2
			mid := "limit=100&cursor=" + mappings.EncodeCursor(mappings.PageFilter{}, mappings.PageKey{Listener: "api", ID: fmt.Sprintf("m%05d", half)})
			// What every call of the API pays before the page: the
			// desired state read again, each record through its memo.
			b.Run("load config", func(b *testing.B) {
				for b.Loop() {
					if cfg, err := state.LoadConfig(context.Background(), ta.store); err != nil || len(cfg.Mappings) != n+3 {
						b.Fatalf("LoadConfig: %v", err)
					}
				}
			})
			get(b, "limit=100") // the first call loads the config and keeps it
			// A search that matches few: ids with this prefix.
			search := fmt.Sprintf("m%04d", n/10/20)
			for _, bc := range []struct {
				name, query, first string
				items              int
			}{
				{"first", "limit=100", "m00001", 100},
				{"middle", mid, fmt.Sprintf("m%05d", half+2), 100},
				{"search", "limit=100&q=" + search, search + "1", 10},
			} {
				b.Run(bc.name, func(b *testing.B) {
					for b.Loop() {
						p := get(b, bc.query)
						var first mappings.Info
						if len(p.Items) != bc.items || json.Unmarshal(p.Items[0], &first) != nil || first.ID != bc.first {
							b.Fatalf("GET %s: %d items, first %q, want %d from %q", bc.query, len(p.Items), first.ID, bc.items, bc.first)
						}
					}
				})
			}
			// The first call after another process (the CLI) changed one
			// mapping: it reads that record again, not all of them.
			b.Run("after a change", func(b *testing.B) {
				cli := state.OpenDir(ta.root, 5*time.Second)
				port := 1000
				for b.Loop() {
					b.StopTimer()
					port++
					if err := state.Update(context.Background(), cli, "bench", func(tx *state.Tx) error {
						m, _ := tx.Config.Mapping("m00001")
						m.Upstream = fmt.Sprintf("http://127.0.0.1:%d", port)
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					var first mappings.Info
					if p := get(b, "limit=100"); json.Unmarshal(p.Items[0], &first) != nil || first.Upstream != fmt.Sprintf("http://127.0.0.1:%d", port) {
						b.Fatalf("after the change: first item %+v", first)
					}
				}
			})
		})
	}
}
