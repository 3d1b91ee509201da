package management

import (
	"net/http"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/mappings"
)

func (ta *testAPI) patch(path, body string) answer {
	ta.t.Helper()
	return ta.do(request{method: "PATCH", path: path, auth: ta.bearer(), contentType: "application/json", body: body})
}

func TestPatchMappingRefuses(t *testing.T) {
	for _, tc := range []struct {
		desc, path, body string
		contentType      string
		status           int
		msg              string
	}{
		{"unknown field", "/api/v1/mappings/shop", `{"upstream":"http://127.0.0.1:1","days":3}`, "", http.StatusBadRequest, "days"},
		{"source is not a field", "/api/v1/mappings/shop", `{"source":"acme"}`, "", http.StatusBadRequest, "source"},
		{"empty object", "/api/v1/mappings/shop", `{}`, "", http.StatusUnprocessableEntity, "nothing to change"},
		{"no body", "/api/v1/mappings/shop", ``, "", http.StatusBadRequest, "empty"},
		{"not JSON", "/api/v1/mappings/shop", `{"upstream":"x"}`, "text/plain", http.StatusUnsupportedMediaType, "must be JSON"},
		{"hosts of the wrong type", "/api/v1/mappings/shop", `{"hosts":"a.example.com"}`, "", http.StatusBadRequest, `"hosts"`},
		{"no such mapping", "/api/v1/mappings/nope", `{"upstream":"http://127.0.0.1:1"}`, "", http.StatusNotFound, `mapping "nope" does not exist`},
		{"host already mapped", "/api/v1/mappings/shop", `{"hosts":["shop.example.com","upload.example.com"]}`, "", http.StatusUnprocessableEntity, `by mapping "upload"`},
		{"wildcard with HTTP-01", "/api/v1/mappings/wild", `{"challenge":"http-01"}`, "", http.StatusUnprocessableEntity, "wildcard"},
		{"DNS-01 without a credential", "/api/v1/mappings/wild", `{"dns_credential":""}`, "", http.StatusUnprocessableEntity, "DNS-01 needs a DNS credential"},
		{"unknown DNS credential", "/api/v1/mappings/wild", `{"dns_credential":"nope"}`, "", http.StatusUnprocessableEntity, `DNS credential "nope" does not exist`},
		{"challenge on a self-signed mapping", "/api/v1/mappings/shop", `{"challenge":"http-01"}`, "", http.StatusUnprocessableEntity, `takes no "challenge"`},
		{"uploaded certificate does not cover", "/api/v1/mappings/upload", `{"hosts":["other.example.org"]}`, "", http.StatusUnprocessableEntity, "does not cover other.example.org"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ta := newTestAPI(t)
			before := ta.snapshot()
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			a := ta.do(request{method: "PATCH", path: tc.path, auth: ta.bearer(), contentType: ct, body: tc.body})
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			e := a.errorBody(t)
			if !strings.Contains(e.Error, tc.msg) {
				t.Errorf("error %q, want it to contain %q", e.Error, tc.msg)
			}
			// Hints speak the API: JSON fields and routes, not flags or commands.
			if e.Hint == "" || strings.Contains(e.Hint, "--") || strings.Contains(e.Hint, "p2ptls ") {
				t.Errorf("hint %q does not speak the API", e.Hint)
			}
			sameSnapshot(t, before, ta.snapshot())
		})
	}
}

func TestPatchMappingNeedsToken(t *testing.T) {
	ta := newTestAPI(t)
	before := ta.snapshot()
	a := ta.do(request{method: "PATCH", path: "/api/v1/mappings/shop", contentType: "application/json", body: `{"upstream":"http://127.0.0.1:1"}`})
	if a.status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %s", a.status, a.body)
	}
	sameSnapshot(t, before, ta.snapshot())
}

func TestPatchMapping(t *testing.T) {
	ta := newTestAPI(t)
	shown := func(id string) mappingShown {
		t.Helper()
		var m mappingShown
		ta.get("/api/v1/mappings/"+id).json(t, &m)
		return m
	}
	old := shown("shop")
	a := ta.patch("/api/v1/mappings/shop", `{"hosts":["shop.example.com","Store.Example.com"],"upstream":"http://127.0.0.1:9000"}`)
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var got mappings.Info
	a.json(t, &got)
	if strings.Join(got.Hosts, ",") != "shop.example.com,store.example.com" || got.Upstream != "http://127.0.0.1:9000" || got.Status != mappings.StatusValid {
		t.Errorf("answer %+v", got)
	}
	now := shown("shop")
	if now.FingerprintSHA256 == old.FingerprintSHA256 || strings.Join(now.Certificate.DNSNames, ",") != "shop.example.com,store.example.com" {
		t.Errorf("self-signed certificate not regenerated for the new hosts: %+v", now.Certificate)
	}
	// Upstream alone: the certificate stays.
	if a := ta.patch("/api/v1/mappings/shop", `{"upstream":""}`); a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	if again := shown("shop"); again.FingerprintSHA256 != now.FingerprintSHA256 || again.Upstream != "" {
		t.Errorf("upstream change touched the certificate or kept the upstream: %+v", again.Info)
	}
	// 405 lists PATCH for the mapping path.
	if a := ta.do(request{method: "PUT", path: "/api/v1/mappings/shop", auth: ta.bearer()}); a.status != http.StatusMethodNotAllowed || !strings.Contains(a.header.Get("Allow"), "PATCH") {
		t.Errorf("PUT: %d, Allow %q", a.status, a.header.Get("Allow"))
	}
}
