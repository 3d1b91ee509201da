package mappings

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

// pageState saves n mappings in a shuffled config order over listeners web
// and api with every status but expiring: valid and expired self-signed
// certificates, missing ones, pending and failed ACME mappings, and a
// wildcard on web that serves the ACME mappings under example.com. It
// returns the store and the config as loaded.
func pageState(t *testing.T, n int) (state.Store, *state.Config) {
	t.Helper()
	s, root := newStore(t)
	ctx := context.Background()
	valid, expired := issue(t, now0, 90*day, "x.example.com"), issue(t, now0.Add(-100*day), 90*day, "x.example.com")
	cfg := mustConfig(t, s)
	put := func(id string, pem []byte) {
		if err := os.MkdirAll(storeFile(root, MappingDir(id)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(storeFile(root, certName(id)), pem, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: "wild", Listener: "web", Hosts: []string{"*.example.com"}, Source: state.SourceSelfSigned, Days: 90})
	put("wild", valid.CertPEM)
	r := rand.New(rand.NewPCG(1, 2))
	for _, i := range r.Perm(n) {
		m := state.Mapping{ID: fmt.Sprintf("site-%03d", i), Listener: []string{"web", "api"}[i%2], Source: state.SourceSelfSigned, Days: 90,
			Hosts: []string{fmt.Sprintf("h%d.example.com", i), fmt.Sprintf("alt%d.example.org", i)}}
		switch i % 5 {
		case 0, 1:
			put(m.ID, valid.CertPEM)
		case 2:
			put(m.ID, expired.CertPEM)
		case 3:
			m.Hosts = m.Hosts[:1] // served by the wildcard on web
			m.Source, m.Challenge, m.DNSCredential, m.Days = state.SourceACME, state.ChallengeDNS01, "cf", 0
			if i%10 == 3 {
				if err := SaveMeta(ctx, s, m.ID, Meta{Source: state.SourceACME, LastError: "boom", Attempts: 1, LastAttemptAt: now0}); err != nil {
					t.Fatal(err)
				}
			}
		} // 4: no certificate, missing
		cfg.Mappings = append(cfg.Mappings, m)
	}
	if err := state.SaveConfig(ctx, s, cfg); err != nil {
		t.Fatal(err)
	}
	return s, mustConfig(t, s)
}

// walk collects every page of f with limit, checking each page's size.
func walk(t *testing.T, s state.Store, cfg *state.Config, f PageFilter, limit int) []Info {
	t.Helper()
	var all []Info
	var after *PageKey
	for pages := 0; ; pages++ {
		if pages > len(cfg.Mappings)+1 {
			t.Fatalf("walk of %+v with limit %d does not end", f, limit)
		}
		p, err := ListPage(context.Background(), s, cfg, PageQuery{Filter: f, Limit: limit, After: after}, now0)
		if err != nil {
			t.Fatalf("ListPage(%+v, %d, %v): %v", f, limit, after, err)
		}
		if len(p.Items) > limit || (p.Next != nil && len(p.Items) != limit) {
			t.Fatalf("page of %d with limit %d, next %v", len(p.Items), limit, p.Next)
		}
		all = append(all, p.Items...)
		if p.Next == nil {
			return all
		}
		if last := p.Items[len(p.Items)-1]; *p.Next != (PageKey{last.Listener, last.ID}) {
			t.Fatalf("next %v is not the last item %s/%s", *p.Next, last.Listener, last.ID)
		}
		after = p.Next
	}
}

func TestListPageWalks(t *testing.T) {
	defer func(b int) { pageScanBatch = b }(pageScanBatch)
	pageScanBatch = 16 // cross batches
	s, cfg := pageState(t, 300)
	full, err := List(context.Background(), s, cfg, "", now0)
	if err != nil {
		t.Fatal(err)
	}
	if served := slices.IndexFunc(full, func(i Info) bool { return i.ServedBy == "wild" }); served < 0 {
		t.Fatal("the state has no mapping served by the wildcard")
	}
	// want is List's answer filtered by f, by listener then id: what a
	// walk must collect, each mapping once, described alike.
	want := func(f PageFilter) []string {
		var out []string
		for _, i := range full {
			q := strings.ToLower(f.Q)
			hit := strings.Contains(strings.ToLower(i.ID), q) ||
				slices.ContainsFunc(i.Hosts, func(h string) bool { return strings.Contains(strings.ToLower(h), q) })
			if (f.Listener == "" || i.Listener == f.Listener) && (f.Status == "" || i.Status == f.Status) &&
				(f.Source == "" || i.Source == f.Source) && hit {
				b, _ := json.Marshal(i)
				out = append(out, string(b))
			}
		}
		slices.SortFunc(out, func(a, b string) int {
			var x, y Info
			_ = json.Unmarshal([]byte(a), &x)
			_ = json.Unmarshal([]byte(b), &y)
			return PageKey{x.Listener, x.ID}.compare(PageKey{y.Listener, y.ID})
		})
		return out
	}
	statuses := map[string]bool{}
	for _, i := range full {
		statuses[i.Status] = true
	}
	for _, st := range []string{StatusValid, StatusExpired, StatusMissing, StatusPending, StatusFailed} {
		if !statuses[st] {
			t.Fatalf("the state has no %s mapping", st)
		}
	}
	for _, tc := range []struct {
		f     PageFilter
		limit int
		n     int // how many the walk collects, to know the filter selects what it should
	}{
		{PageFilter{}, 1, 301},
		{PageFilter{}, 7, 301},
		{PageFilter{}, 100, 301},
		{PageFilter{}, 301, 301},
		{PageFilter{}, 1000, 301},
		{PageFilter{Listener: "api"}, 13, 150},
		{PageFilter{Status: StatusFailed}, 4, 30},
		{PageFilter{Status: StatusPending, Listener: "web"}, 5, 30},
		{PageFilter{Status: StatusExpiring}, 10, 0},
		{PageFilter{Q: "SITE-1"}, 9, 100},         // the id, in another case
		{PageFilter{Q: "alt42.example"}, 3, 1},    // a second host
		{PageFilter{Q: "h4"}, 3, 11},              // h4 and h40…h49
		{PageFilter{Q: "example.com"}, 50, 301},   // every first host
		{PageFilter{Q: "nothing-matches"}, 10, 0}, // an empty walk
		{PageFilter{Q: "1", Status: StatusValid, Listener: "web"}, 6, -1},
		{PageFilter{Source: state.SourceACME}, 7, 60},
		{PageFilter{Source: state.SourceSelfSigned, Listener: "web"}, 11, 121}, // with the wildcard
		{PageFilter{Source: state.SourceACME, Status: StatusFailed}, 4, 30},
		{PageFilter{Source: state.SourceSelfSigned, Status: StatusPending}, 4, 0},
		{PageFilter{Source: state.SourceManual}, 10, 0},
		{PageFilter{Source: state.SourceACME, Q: "site-01"}, 3, 2}, // site-013, site-018
	} {
		t.Run(fmt.Sprintf("%+v/%d", tc.f, tc.limit), func(t *testing.T) {
			var got []string
			for _, i := range walk(t, s, cfg, tc.f, tc.limit) {
				b, _ := json.Marshal(i)
				got = append(got, string(b))
			}
			w := want(tc.f)
			if tc.n >= 0 && len(w) != tc.n {
				t.Fatalf("the filter selects %d mappings, the test expects %d", len(w), tc.n)
			}
			if !slices.Equal(got, w) {
				t.Errorf("walk collected %d mappings, want %d:\n got %.300q\nwant %.300q", len(got), len(w), got, w)
			}
		})
	}
}

// A mapping removed or added between two pages shifts no other: the walk
// goes on after the key it stopped at, even when that mapping is gone.
func TestListPageAfterChange(t *testing.T) {
	s, cfg := pageState(t, 20)
	first, err := ListPage(context.Background(), s, cfg, PageQuery{Limit: 5}, now0)
	if err != nil || first.Next == nil {
		t.Fatalf("first page: %+v, %v", first, err)
	}
	gone := *first.Next
	if _, err := Remove(context.Background(), s, gone.ID); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, s, selfSignedIn("site-000a", "api", 0, "new.example.net")) // sorts right after site-000 on api
	cfg = mustConfig(t, s)
	next, err := ListPage(context.Background(), s, cfg, PageQuery{Limit: 1000, After: first.Next}, now0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []PageKey
	for _, i := range append(first.Items, next.Items...) {
		keys = append(keys, PageKey{i.Listener, i.ID})
	}
	want := []PageKey{}
	for _, m := range cfg.Mappings {
		want = append(want, PageKey{m.Listener, m.ID})
	}
	slices.SortFunc(want, PageKey.compare)
	// The first page was taken before the change: its last key is gone
	// from the state, the new mapping sorts before it and is not seen.
	want = slices.DeleteFunc(want, func(k PageKey) bool { return k.ID == "site-000a" })
	want = slices.Insert(want, 4, gone)
	if !slices.Equal(keys, want) {
		t.Errorf("walk across a change:\n got %v\nwant %v", keys, want)
	}
}

func TestListPageRefuses(t *testing.T) {
	s, cfg := pageState(t, 3)
	for _, tc := range []struct {
		q    PageQuery
		kind fault.Kind
		msg  string
	}{
		{PageQuery{Filter: PageFilter{Listener: "nope"}, Limit: 10}, fault.NotFound, `"nope"`},
		{PageQuery{Filter: PageFilter{Status: "broken"}, Limit: 10}, fault.Invalid, `unknown status "broken"`},
		{PageQuery{Filter: PageFilter{Source: "ACME"}, Limit: 10}, fault.Invalid, `unknown source "ACME"`},
		{PageQuery{Limit: 0}, fault.Invalid, "a page of 0 mappings"},
	} {
		_, err := ListPage(context.Background(), s, cfg, tc.q, now0)
		if err == nil || fault.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ListPage(%+v) = %v, want a %v error with %q", tc.q, err, tc.kind, tc.msg)
		}
	}
}

func TestCursor(t *testing.T) {
	f := PageFilter{Listener: "web", Q: "Shop", Status: StatusValid, Source: state.SourceACME}
	key := PageKey{"web", "shop-42"}
	c := EncodeCursor(f, key)
	if got, err := DecodeCursor(c, f); err != nil || got != key {
		t.Fatalf("DecodeCursor(EncodeCursor) = %v, %v", got, err)
	}
	if strings.ContainsAny(c, "+/=") {
		t.Errorf("cursor %q is not unpadded base64url", c)
	}
	flip := func(c string, i int) string {
		b := []byte(c)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct {
		name, cursor string
		f            PageFilter
		want         error
	}{
		{"changed at the start", flip(c, 0), f, ErrCursor},
		{"changed in the middle", flip(c, len(c)/2), f, ErrCursor},
		{"changed at the end", flip(c, len(c)-1), f, ErrCursor},
		{"cut", c[:len(c)-4], f, ErrCursor},
		{"not base64url", "!!!" + c, f, ErrCursor},
		{"padded", c + "==", f, ErrCursor},
		{"too short", "AAAA", f, ErrCursor},
		{"another listener", c, PageFilter{Listener: "api", Q: f.Q, Status: f.Status, Source: f.Source}, ErrCursorFilter},
		{"another q", c, PageFilter{Listener: f.Listener, Q: "shop", Status: f.Status, Source: f.Source}, ErrCursorFilter},
		{"no status", c, PageFilter{Listener: f.Listener, Q: f.Q, Source: f.Source}, ErrCursorFilter},
		{"another source", c, PageFilter{Listener: f.Listener, Q: f.Q, Status: f.Status, Source: state.SourceManual}, ErrCursorFilter},
		{"no source", c, PageFilter{Listener: f.Listener, Q: f.Q, Status: f.Status}, ErrCursorFilter},
	} {
		if _, err := DecodeCursor(tc.cursor, tc.f); !errors.Is(err, tc.want) {
			t.Errorf("%s: DecodeCursor(%q) = %v, want %v", tc.name, tc.cursor, err, tc.want)
		}
	}
}

// A cursor made before the source filter (three filters) continues the
// walk without a source, and no other.
func TestCursorWithoutSource(t *testing.T) {
	body := []byte(`{"v":1,"f":["web","","valid"],"k":["web","a"]}`)
	sum := sha256.Sum256(body)
	c := base64.RawURLEncoding.EncodeToString(append(body, sum[:cursorSumSize]...))
	f := PageFilter{Listener: "web", Status: StatusValid}
	if got, err := DecodeCursor(c, f); err != nil || got != (PageKey{"web", "a"}) {
		t.Errorf("DecodeCursor(old cursor, %+v) = %v, %v", f, got, err)
	}
	f.Source = state.SourceACME
	if _, err := DecodeCursor(c, f); !errors.Is(err, ErrCursorFilter) {
		t.Errorf("DecodeCursor(old cursor, %+v) = %v, want %v", f, err, ErrCursorFilter)
	}
}

// BenchmarkListPage is ListPage of 100 out of 10k and 100k mappings over
// a loaded config (what the API adds to state.LoadConfig): the first page,
// one in the middle, a search that matches ten, and a status that matches
// none (every certificate looked at).
func BenchmarkListPage(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			ids := make([]string, n)
			for k := range ids {
				ids[k] = fmt.Sprintf("m%06d", (k*7919)%n) // config order is not key order
			}
			s, cfg := benchState(b, ids)
			mid := PageKey{"web", fmt.Sprintf("m%06d", n/2)}
			for _, bc := range []struct {
				name  string
				q     PageQuery
				items int
			}{
				{"first", PageQuery{Limit: 100}, 100},
				{"middle", PageQuery{Limit: 100, After: &mid}, 100},
				{"search", PageQuery{Limit: 100, Filter: PageFilter{Q: fmt.Sprintf("m%05d", n/20)}}, 10},
				{"status none", PageQuery{Limit: 100, Filter: PageFilter{Status: StatusFailed}}, 0},
			} {
				b.Run(bc.name, func(b *testing.B) {
					for b.Loop() {
						p, err := ListPage(context.Background(), s, cfg, bc.q, now0)
						if err != nil || len(p.Items) != bc.items {
							b.Fatalf("ListPage: %d items, %v", len(p.Items), err)
						}
					}
				})
			}
		})
	}
}

// benchState saves self-signed mappings ids on listener web, each with the
// same certificate file (what a list reads), written directly: 100k in
// seconds. The files are old enough for the certs memo to trust.
func benchState(b *testing.B, ids []string) (*state.Dir, *state.Config) {
	b.Helper()
	root := b.TempDir()
	s := state.OpenDir(root, time.Second)
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"bench.example.com"}), now0, 90*day)
	if err != nil {
		b.Fatal(err)
	}
	cfg := &state.Config{SchemaVersion: state.SchemaVersion, Listeners: []state.Listener{{Name: "web", Addr: ":443"}}}
	for _, id := range ids {
		cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned, Days: 90})
		if err := os.MkdirAll(storeFile(root, MappingDir(id)), 0o700); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(storeFile(root, certName(id)), kp.CertPEM, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := state.SaveConfig(context.Background(), s, cfg); err != nil {
		b.Fatal(err)
	}
	time.Sleep(memoAge)
	return s, cfg
}
