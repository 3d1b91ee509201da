package management

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// The fuzz targets drive the real management handler with a fuzzed
// request body, as the admin (token, or UI session and CSRF token), over
// the state of newTestAPI in a temporary directory. Each input must give
// an answer (no panic), 2xx or 4xx (no 5xx: nothing a body says is a
// server failure), the JSON error shape on 4xx, nosniff, no secret of the
// state in the answer or the log, and a refused request leaves the state
// exactly as it was. What an accepted request added is removed again, so
// that inputs do not depend on each other. Seeds: testdata/fuzz/FuzzX/.

// secretLog is the fuzz targets' log sink: it keeps nothing (a long run
// would pile up lines), only whether a line held a secret.
type secretLog struct {
	secrets []string
	leaked  atomic.Value // string: the first line that held one
}

func (s *secretLog) Write(p []byte) (int, error) {
	for _, sec := range s.secrets {
		if bytes.Contains(p, []byte(sec)) {
			s.leaked.CompareAndSwap(nil, string(p))
		}
	}
	return len(p), nil
}

// fuzzAPI is the handler under fuzzing.
type fuzzAPI struct {
	ta  *testAPI
	log *secretLog
	// snap is the state as the last input left it (nil: take it again),
	// so that an input costs one snapshot, not two.
	snap map[string]string
}

// before is the state before the next request.
func (fa *fuzzAPI) before(t *testing.T) map[string]string {
	if fa.snap == nil {
		fa.snap = statetest.Snapshot(t, fa.ta.root)
	}
	return fa.snap
}

// unchanged asserts that the state is still before.
func (fa *fuzzAPI) unchanged(t *testing.T, before map[string]string) {
	t.Helper()
	after := statetest.Snapshot(t, fa.ta.root)
	statetest.AssertSame(t, before, after)
	fa.snap = after
}

func newFuzzAPI(f *testing.F) *fuzzAPI {
	f.Helper()
	fl := &secretLog{}
	ta := newTestAPI(f, func(o *Options) {
		o.Log = slog.New(slog.NewTextHandler(fl, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	fl.secrets = []string{cfToken, spareToken, ta.token, ta.revoked}
	fa := &fuzzAPI{ta: ta, log: fl}
	return fa
}

// serve sends one request to the handler as the admin.
func (fa *fuzzAPI) serve(method, path, contentType string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if hdr == nil {
		req.Header.Set("Authorization", fa.ta.bearer())
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	fa.ta.h.ServeHTTP(rec, req)
	return rec
}

// check holds one answer to the rules above; before is the state before
// the request.
func (fa *fuzzAPI) check(t *testing.T, what string, rec *httptest.ResponseRecorder, before map[string]string) {
	t.Helper()
	body := rec.Body.String()
	if rec.Code >= 500 || rec.Code < 200 || (rec.Code >= 300 && rec.Code < 400 && rec.Code != http.StatusSeeOther) {
		t.Fatalf("%s: status %d: %s", what, rec.Code, body)
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: %d without nosniff", what, rec.Code)
	}
	for _, sec := range fa.log.secrets {
		if strings.Contains(body, sec) {
			t.Fatalf("%s: a secret is in the answer: %s", what, body)
		}
	}
	if line, ok := fa.log.leaked.Load().(string); ok {
		t.Fatalf("%s: a secret is in the log: %s", what, line)
	}
	if rec.Code >= 400 {
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: %d with Content-Type %q: %s", what, rec.Code, ct, body)
		}
		var fields map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &fields); err != nil {
			t.Fatalf("%s: %d answer is not JSON: %v: %s", what, rec.Code, err, body)
		}
		e, _ := fields["error"].(string)
		h, _ := fields["hint"].(string)
		if e == "" || h == "" || len(fields) != 2 {
			t.Fatalf("%s: %d answer is not {error, hint}: %s", what, rec.Code, body)
		}
		fa.unchanged(t, before)
	}
}

// FuzzAPIAddMapping: POST /api/v1/mappings.
func FuzzAPIAddMapping(f *testing.F) {
	fa := newFuzzAPI(f)
	f.Add([]byte(`{"listener":"api","hosts":["new.example.com"],"source":"self-signed"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		// Paths in cert_file/key_file may name anything, /dev/zero and
		// FIFOs included: the state code reads them with state/userfile.
		before := fa.before(t)
		rec := fa.serve("POST", "/api/v1/mappings", "application/json", body, nil)
		fa.check(t, "POST /api/v1/mappings", rec, before)
		if rec.Code >= 400 {
			return
		}
		if rec.Code != http.StatusCreated {
			t.Fatalf("accepted with %d, want 201: %s", rec.Code, rec.Body)
		}
		fa.snap = nil
		var added struct{ ID string }
		if err := json.Unmarshal(rec.Body.Bytes(), &added); err != nil || added.ID == "" {
			t.Fatalf("201 without the mapping's id: %v %s", err, rec.Body)
		}
		if del := fa.serve("DELETE", "/api/v1/mappings/"+url.PathEscape(added.ID), "", nil, nil); del.Code != http.StatusOK {
			t.Fatalf("cannot remove the mapping %q the fuzzer added: %d %s", added.ID, del.Code, del.Body)
		}
	})
}

// tokenLike is a value that cannot occur in the API's own prose.
var tokenLike = regexp.MustCompile(`^[A-Za-z0-9_-]{20,}$`)

// FuzzAPIAddDNSCredential: POST /api/v1/dns-credentials. The token given
// is never answered or logged either.
func FuzzAPIAddDNSCredential(f *testing.F) {
	fa := newFuzzAPI(f)
	f.Add([]byte(`{"name":"new","provider":"cloudflare","api_token":"new-token-0123456789abcdef"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var q map[string]any
		_ = json.Unmarshal(body, &q)
		var token string
		if s, ok := q["api_token"].(string); ok && tokenLike.MatchString(s) {
			token = s
			for k, v := range q {
				if s, ok := v.(string); ok && k != "api_token" && strings.Contains(s, token) {
					token = "" // shown as another field
				}
			}
		}
		if token != "" {
			fa.log.secrets = append(fa.log.secrets, token)
			defer func() { fa.log.secrets = fa.log.secrets[:len(fa.log.secrets)-1] }()
		}
		before := fa.before(t)
		rec := fa.serve("POST", "/api/v1/dns-credentials", "application/json", body, nil)
		fa.check(t, "POST /api/v1/dns-credentials", rec, before)
		if rec.Code >= 400 {
			return
		}
		if rec.Code != http.StatusCreated {
			t.Fatalf("accepted with %d, want 201: %s", rec.Code, rec.Body)
		}
		fa.snap = nil
		var added struct{ Name string }
		if err := json.Unmarshal(rec.Body.Bytes(), &added); err != nil || added.Name == "" {
			t.Fatalf("201 without the credential's name: %v %s", err, rec.Body)
		}
		if del := fa.serve("DELETE", "/api/v1/dns-credentials/"+url.PathEscape(added.Name), "", nil, nil); del.Code != http.StatusOK {
			t.Fatalf("cannot remove the credential %q the fuzzer added: %d %s", added.Name, del.Code, del.Body)
		}
	})
}

// noBodyEndpoints are the POSTs that take no input but may get a body.
// …/test is left out: it calls the DNS provider.
var noBodyEndpoints = []string{
	"/api/v1/mappings/shop/issue",
	"/api/v1/dns-credentials/spare/enable",
	"/api/v1/dns-credentials/spare/disable",
}

// FuzzAPINoBodyEndpoints: the body of the POSTs that take none (an empty
// JSON object at most), with the content type fuzzed too.
func FuzzAPINoBodyEndpoints(f *testing.F) {
	fa := newFuzzAPI(f)
	f.Add(uint8(0), "application/json", []byte(`{}`))
	f.Fuzz(func(t *testing.T, which uint8, contentType string, body []byte) {
		path := noBodyEndpoints[int(which)%len(noBodyEndpoints)]
		before := fa.before(t)
		rec := fa.serve("POST", path, contentType, body, nil)
		fa.check(t, "POST "+path, rec, before)
		if rec.Code < 400 {
			fa.snap = nil
			if rec.Code != http.StatusOK {
				t.Fatalf("accepted with %d, want 200: %s", rec.Code, rec.Body)
			}
		}
	})
}

// FuzzUILogin: the sign-in form. A refused sign-in shows the same fixed
// page whatever was sent, and changes nothing.
func FuzzUILogin(f *testing.F) {
	fa := newFuzzAPI(f)
	form := func(body []byte) *httptest.ResponseRecorder {
		return fa.serve("POST", "/ui/login", "application/x-www-form-urlencoded", body, map[string]string{})
	}
	refused := form([]byte("token=wrong"))
	if refused.Code != http.StatusUnauthorized {
		f.Fatalf("a wrong token: %d", refused.Code)
	}
	f.Add([]byte("token=wrong"))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := fa.before(t)
		rec := form(body)
		switch rec.Code {
		case http.StatusSeeOther: // the fuzzer found the admin token
			if rec.Header().Get("Location") != "/ui/" {
				t.Fatalf("303 to %q", rec.Header().Get("Location"))
			}
		case http.StatusUnauthorized:
			if rec.Body.String() != refused.Body.String() || rec.Header().Get("Set-Cookie") != "" {
				t.Fatalf("a refused sign-in answered another page:\n%s", rec.Body)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			fa.check(t, "POST /ui/login", rec, before) // and the state
			return
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%d without nosniff", rec.Code)
		}
		fa.unchanged(t, before)
	})
}
