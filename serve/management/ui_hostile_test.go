package management

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestLoginPageShowsOnlyItsOwnMessages: ?error= picks one of the page's
// fixed messages by code; anything else a link puts there (HTML, a
// phishing sentence) shows nothing.
func TestLoginPageShowsOnlyItsOwnMessages(t *testing.T) {
	ta := newTestAPI(t)
	hostile := []string{
		`<script>alert(1)</script>`,
		`Your token has leaked. Paste it at https://evil.example/rotate to keep access.`,
		`"><img src=x onerror=alert(1)>`,
		"expired\r\nSet-Cookie: x=y",
		"EXPIRED",
		"invalid ",
		strings.Repeat("A", 10000),
	}
	for _, v := range hostile {
		code, h, body := ta.uiCall("GET", "/ui/login?error="+url.QueryEscape(v), "", "", "", "", nil)
		if code != 200 || strings.Contains(body, `id="login-error"`) {
			t.Errorf("?error=%.40q: %d, shows an error: %s", v, code, body)
		}
		for _, shown := range []string{v, html.EscapeString(v), "evil.example", "alert(1)"} {
			if strings.Contains(body, shown) {
				t.Errorf("?error=%.40q: the page shows %.40q", v, shown)
			}
		}
		if h.Get("Set-Cookie") != "" {
			t.Errorf("?error=%.40q set a cookie", v)
		}
	}
	for code, msg := range loginMessages {
		_, _, body := ta.uiCall("GET", "/ui/login?error="+code, "", "", "", "", nil)
		if !strings.Contains(body, `id="login-error">`+html.EscapeString(msg)+`<`) {
			t.Errorf("?error=%s does not show %q:\n%s", code, msg, body)
		}
	}
	// A wrong token shows the fixed message and not what was typed.
	const typed = "<b>typed-token</b>"
	code, _, body := ta.uiCall("POST", "/ui/login", "", "", "application/x-www-form-urlencoded", url.Values{"token": {typed}}.Encode(), nil)
	if code != http.StatusUnauthorized || !strings.Contains(body, html.EscapeString(loginMessages[loginInvalid])) || strings.Contains(body, "typed-token") {
		t.Errorf("wrong token: %d %s", code, body)
	}
	// A session that ended sends /ui/ to the sign-in page with the code
	// of the fixed message that says so.
	code, h, _ := ta.uiCall("GET", "/ui/", "ended-session", "", "", "", nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/ui/login?error="+loginExpired {
		t.Errorf("GET /ui/ with an ended session: %d %s", code, h.Get("Location"))
	}
}

// TestLoginFormIsBounded: the sign-in form is read within maxFormBytes,
// and a body too large or malformed is said so, not taken for a wrong token.
func TestLoginFormIsBounded(t *testing.T) {
	ta := newTestAPI(t)
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"too large", "token=" + strings.Repeat("a", maxFormBytes), http.StatusRequestEntityTooLarge},
		{"malformed", "token=%zz", http.StatusBadRequest},
		{"wrong token", "token=wrong", http.StatusUnauthorized},
	} {
		before := ta.snapshot()
		code, h, body := ta.uiCall("POST", "/ui/login", "", "", "application/x-www-form-urlencoded", tc.body, nil)
		if code != tc.want || h.Get("Set-Cookie") != "" {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
		if code != http.StatusUnauthorized {
			answer{status: code, body: body}.errorBody(t)
		}
		sameSnapshot(t, before, ta.snapshot())
	}
}

// TestUIStaticServesOnlyItsFiles: the page templates share the embedded
// directory with app.js and app.css but are never served raw.
func TestUIStaticServesOnlyItsFiles(t *testing.T) {
	ta := newTestAPI(t)
	for _, p := range []string{"/ui/static/", "/ui/static/index.html", "/ui/static/login.html", "/ui/static/nope.js", "/ui/static/ui/app.js"} {
		code, _, body := ta.uiCall("GET", p, "", "", "", "", nil)
		if code != http.StatusNotFound || strings.Contains(body, "{{") {
			t.Errorf("GET %s: %d %.80s", p, code, body)
		}
	}
	for _, p := range []string{"/ui/static/app.js", "/ui/static/app.css"} {
		if code, _, body := ta.uiCall("GET", p, "", "", "", "", nil); code != 200 || body == "" {
			t.Errorf("GET %s: %d", p, code)
		}
	}
}
