package management

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/admintoken"
)

// uiCall sends one request with the session cookie (when sid is set) and
// the CSRF header (when csrf is set); redirects are not followed.
func (ta *testAPI) uiCall(method, path, sid, csrf, contentType, body string, hdr map[string]string) (int, http.Header, string) {
	ta.t.Helper()
	r, err := http.NewRequest(method, ta.srv.URL+path, strings.NewReader(body))
	if err != nil {
		ta.t.Fatal(err)
	}
	if sid != "" {
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
	}
	if csrf != "" {
		r.Header.Set(csrfHeader, csrf)
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(r)
	if err != nil {
		ta.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ta.mu.Lock()
	ta.bodies = append(ta.bodies, string(b))
	ta.mu.Unlock()
	return resp.StatusCode, resp.Header, string(b)
}

// signIn posts the admin token and returns the session cookie.
func (ta *testAPI) signIn(token string) *http.Cookie {
	ta.t.Helper()
	code, h, body := ta.uiCall("POST", "/ui/login", "", "", "application/x-www-form-urlencoded",
		url.Values{"token": {token}}.Encode(), nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/ui/" {
		ta.t.Fatalf("sign-in: %d %s %s", code, h.Get("Location"), body)
	}
	resp := http.Response{Header: h}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c
		}
	}
	ta.t.Fatalf("sign-in set no %s cookie: %v", sessionCookie, h)
	return nil
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// page loads /ui/ and returns the CSRF token in it.
func (ta *testAPI) csrfOf(sid string) string {
	ta.t.Helper()
	code, h, body := ta.uiCall("GET", "/ui/", sid, "", "", "", nil)
	if code != 200 {
		ta.t.Fatalf("GET /ui/: %d %s", code, body)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		ta.t.Errorf("GET /ui/: Content-Security-Policy %q", csp)
	}
	m := csrfMeta.FindStringSubmatch(body)
	if m == nil {
		ta.t.Fatalf("GET /ui/ has no CSRF meta tag:\n%s", body)
	}
	return m[1]
}

func TestUISignIn(t *testing.T) {
	ta := newTestAPI(t)
	if code, h, _ := ta.uiCall("GET", "/ui/", "", "", "", "", nil); code != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Errorf("GET /ui/ signed out: %d %s", code, h.Get("Location"))
	}
	if code, _, body := ta.uiCall("GET", "/ui/login", "", "", "", "", nil); code != 200 || !strings.Contains(body, `name="token"`) {
		t.Errorf("GET /ui/login: %d %s", code, body)
	}
	for _, tok := range []string{"", "wrong", ta.revoked} {
		code, h, body := ta.uiCall("POST", "/ui/login", "", "", "application/x-www-form-urlencoded", url.Values{"token": {tok}}.Encode(), nil)
		if code != http.StatusUnauthorized || h.Get("Set-Cookie") != "" || !strings.Contains(body, "Invalid or revoked admin token") {
			t.Errorf("sign-in with %q: %d %v %s", tok, code, h, body)
		}
	}
	// A cross-site form post cannot sign a browser in.
	for _, hdr := range []map[string]string{
		{"Origin": "https://evil.example"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.com"},
	} {
		code, h, _ := ta.uiCall("POST", "/ui/login", "", "", "application/x-www-form-urlencoded",
			url.Values{"token": {ta.token}}.Encode(), hdr)
		if code != http.StatusForbidden || h.Get("Set-Cookie") != "" {
			t.Errorf("cross-site sign-in %v: %d %v", hdr, code, h)
		}
	}
	code, h, _ := ta.uiCall("POST", "/ui/login", "", "", "application/x-www-form-urlencoded",
		url.Values{"token": {ta.token}}.Encode(), map[string]string{"Sec-Fetch-Site": "same-origin"})
	if h.Get("Set-Cookie") == "" {
		t.Errorf("same-origin sign-in: %d %v, want a session", code, h)
	}

	c := ta.signIn(ta.token)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 || len(c.Value) < 40 {
		t.Errorf("session cookie %+v", c)
	}
	csrf := ta.csrfOf(c.Value)
	if code, _, body := ta.uiCall("GET", "/api/v1/mappings", c.Value, "", "", "", nil); code != 200 || !strings.Contains(body, `"shop"`) {
		t.Errorf("GET /api/v1/mappings with the session: %d %s", code, body)
	}
	if code, _, body := ta.uiCall("GET", "/api/v1/mappings", "bogus", "", "", "", nil); code != 401 {
		t.Errorf("GET with an unknown session: %d %s", code, body)
	}

	// Changes need the CSRF token; a refused change changes nothing.
	before := ta.snapshot()
	add := `{"listener":"web","hosts":["ui.example.com"],"source":"self-signed"}`
	for _, bad := range []string{"", "wrong", csrf + "x"} {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/api/v1/mappings", add},
			{"DELETE", "/api/v1/mappings/shop", ""},
			{"POST", "/api/v1/mappings/shop/issue", ""},
			{"POST", "/api/v1/dns-credentials", `{"name":"x","provider":"cloudflare","api_token":"abcdefghijklmnop"}`},
			{"DELETE", "/api/v1/dns-credentials/spare", ""},
			{"POST", "/api/v1/dns-credentials/spare/enable", ""},
			{"POST", "/api/v1/dns-credentials/spare/disable", ""},
			{"POST", "/api/v1/dns-credentials/spare/test", ""},
		} {
			code, h, body := ta.uiCall(req.method, req.path, c.Value, bad, "application/json", req.body, nil)
			if code != http.StatusForbidden || h.Get("Content-Type") != "application/json" {
				t.Errorf("%s %s with CSRF %q: %d %s", req.method, req.path, bad, code, body)
				continue
			}
			e := answer{status: code, body: body}.errorBody(t)
			if !strings.Contains(e.Error, "CSRF") {
				t.Errorf("%s %s: error %q", req.method, req.path, e.Error)
			}
		}
	}
	sameSnapshot(t, before, ta.snapshot())
	if code, _, body := ta.uiCall("POST", "/api/v1/mappings", c.Value, csrf, "application/json", add, nil); code != 201 {
		t.Fatalf("POST /api/v1/mappings with session and CSRF: %d %s", code, body)
	}
	if a := ta.get("/api/v1/mappings/ui-example-com"); a.status != 200 {
		t.Errorf("the mapping added through the UI is not in the state: %d %s", a.status, a.body)
	}
	// Another session's CSRF token does not fit.
	other := ta.signIn(ta.token)
	if code, _, _ := ta.uiCall("DELETE", "/api/v1/mappings/shop", other.Value, csrf, "", "", nil); code != 403 {
		t.Errorf("DELETE with another session's CSRF token: %d", code)
	}

	// Sign-out needs the CSRF token and ends the session.
	if code, _, _ := ta.uiCall("POST", "/ui/logout", c.Value, "", "application/x-www-form-urlencoded", "", nil); code != 403 {
		t.Errorf("sign-out without CSRF: %d", code)
	}
	code, h, _ = ta.uiCall("POST", "/ui/logout", c.Value, "", "application/x-www-form-urlencoded", url.Values{"csrf": {csrf}}.Encode(), nil)
	if code != http.StatusSeeOther || !strings.Contains(h.Get("Set-Cookie"), sessionCookie+"=;") {
		t.Errorf("sign-out: %d %v", code, h)
	}
	if code, _, _ := ta.uiCall("GET", "/api/v1/mappings", c.Value, "", "", "", nil); code != 401 {
		t.Errorf("GET with a signed-out session: %d", code)
	}
	if code, _, _ := ta.uiCall("GET", "/ui/", c.Value, "", "", "", nil); code != http.StatusSeeOther {
		t.Errorf("GET /ui/ with a signed-out session: %d", code)
	}

	// Revoking the admin token ends its sessions at once.
	if code, _, _ := ta.uiCall("GET", "/api/v1/mappings", other.Value, "", "", "", nil); code != 200 {
		t.Fatalf("the other session does not work: %d", code)
	}
	if err := admintoken.Revoke(context.Background(), ta.store, "ops"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := ta.uiCall("GET", "/api/v1/mappings", other.Value, "", "", "", nil); code != 401 {
		t.Errorf("GET with the session of a revoked token: %d", code)
	}
}

func TestUIStaticAndHeaders(t *testing.T) {
	ta := newTestAPI(t)
	for path, want := range map[string]string{"/ui/static/app.js": "text/javascript", "/ui/static/app.css": "text/css"} {
		code, h, body := ta.uiCall("GET", path, "", "", "", "", nil)
		if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), want) || h.Get("X-Content-Type-Options") != "nosniff" || body == "" {
			t.Errorf("GET %s: %d %v", path, code, h)
		}
	}
	js := func() string { _, _, b := ta.uiCall("GET", "/ui/static/app.js", "", "", "", "", nil); return b }()
	if strings.Contains(js, "innerHTML") || strings.Contains(js, "http://") || strings.Contains(js, "https://") {
		t.Errorf("app.js uses innerHTML or loads something from elsewhere")
	}
	if code, h, _ := ta.uiCall("GET", "/", "", "", "", "", nil); code != http.StatusSeeOther || h.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d %s", code, h.Get("Location"))
	}
}
