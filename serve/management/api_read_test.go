package management

import (
	"encoding/json"
	"fmt"
	"strings"
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
		ta.get("/api/v1/mappings/"+info.ID).json(t, &shown)
		if got, ok := shown["key_type"]; !ok || got != want[info.ID] {
			t.Errorf("GET /api/v1/mappings/%s: key_type %v (present %v), want %q", info.ID, got, ok, want[info.ID])
		}
	}
}

// TestAPIMappingCounts: GET /api/v1/mapping-counts answers what counting
// the plain list gives, every status key present, listeners in config
// order (api, which has no mapping but the bulk's, too), for all and for
// one listener; bad parameters are 400 in API words and change nothing.
func TestAPIMappingCounts(t *testing.T) {
	ta := newTestAPI(t)
	addBulk(t, ta, 7)
	var list []mappings.Info
	ta.get("/api/v1/mappings").json(t, &list)
	// want: listener ("" for all) → status ("total" too) → count.
	want := map[string]map[string]int{"": {}, "web": {}, "api": {}}
	for _, info := range list {
		for _, k := range []string{"", info.Listener} {
			want[k][info.Status]++
			want[k]["total"]++
		}
	}
	// counted decodes a total and its status object, every key present.
	type counted struct {
		Total  int            `json:"total"`
		Status map[string]int `json:"status"`
	}
	check := func(t *testing.T, what string, c counted, w map[string]int) {
		t.Helper()
		if c.Total != w["total"] {
			t.Errorf("%s: total %d, the list has %d", what, c.Total, w["total"])
		}
		if len(c.Status) != len(mappings.Statuses) {
			t.Errorf("%s: status %v does not have the %d statuses", what, c.Status, len(mappings.Statuses))
		}
		for _, st := range mappings.Statuses {
			if g, ok := c.Status[st]; !ok || g != w[st] {
				t.Errorf("%s: %s = %d (present %v), the list has %d", what, st, g, ok, w[st])
			}
		}
	}
	for _, tc := range []struct {
		query     string
		listeners []string
	}{
		{"", []string{"web", "api"}},
		{"?listener=web", []string{"web"}},
		{"?listener=api", []string{"api"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			a := ta.get("/api/v1/mapping-counts" + tc.query)
			if a.status != 200 {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			var got struct {
				counted
				Listeners []struct {
					Name string `json:"name"`
					counted
				} `json:"listeners"`
			}
			dec := json.NewDecoder(strings.NewReader(a.body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("%v: %s", err, a.body)
			}
			check(t, "all", got.counted, want[strings.TrimPrefix(tc.query, "?listener=")])
			var names []string
			for _, l := range got.Listeners {
				names = append(names, l.Name)
				check(t, l.Name, l.counted, want[l.Name])
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.listeners) {
				t.Errorf("listeners %v, want %v", names, tc.listeners)
			}
		})
	}
	if want[""]["total"] != 10 || want[""]["pending"] != 1 || want[""]["valid"] != 9 {
		t.Errorf("the state is not the one the test expects: %v", want[""])
	}
	for _, tc := range []struct{ query, want string }{
		{"?listener=nope", `listener="nope" names no listener`},
		{"?listener=web&listener=api", "listener is given 2 times"},
		{"?status=valid", `unknown query parameter "status"`},
		{"?listener=web&limit=5", `unknown query parameter "limit"`},
	} {
		t.Run("refused "+tc.query, func(t *testing.T) {
			before := ta.snapshot()
			a := ta.get("/api/v1/mapping-counts" + tc.query)
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
	if a := ta.do(request{method: "GET", path: "/api/v1/mapping-counts"}); a.status != 401 {
		t.Errorf("without a token: %d %s", a.status, a.body)
	}
}
