package management

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/serve/edge"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// placeholder is a path wildcard of a route pattern.
var placeholder = regexp.MustCompile(`\{[^}]*\}`)

// concrete turns a route pattern into a request: GETs name what exists
// (mapping shop, DNS credential spare, app.js), changes name nothing, so
// that no route reaches the network (…/test of an existing credential
// would call Cloudflare).
func concrete(pattern string) (method, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", pattern
	}
	path = strings.ReplaceAll(path, "{$}", "")
	path = placeholder.ReplaceAllStringFunc(path, func(p string) string {
		if method != "GET" {
			return "nosuch"
		}
		switch p {
		case "{id}":
			return "shop"
		case "{name}":
			return "spare"
		case "{file}":
			return "app.js"
		}
		return "x"
	})
	return method, path
}

// TestEveryAnswerCarriesNosniffAndHSTS walks every route the router has,
// signed out, with the admin token and with a UI session, plus unknown
// paths, wrong methods and the answers that are not the handlers' own
// (redirects, 404, 405, 413, 415), over HTTPS (mode auto: HSTS of at least a
// year) and plain HTTP (mode off: no HSTS). nosniff is on every answer.
func TestEveryAnswerCarriesNosniffAndHSTS(t *testing.T) {
	_, patterns := newRoutes(t.Context(), Options{})
	for _, want := range []string{"GET /healthz", "GET /ca.crt", "POST /api/v1/mappings", "POST /ui/login", "GET /ui/static/{file}", "/api/v1/"} {
		if !slices.Contains(patterns, want) {
			t.Fatalf("the router does not list %q: %q", want, patterns)
		}
	}
	for _, mode := range []string{statemgmt.ModeAuto, statemgmt.ModeOff} {
		t.Run(mode, func(t *testing.T) {
			ta := newTestAPI(t)
			ls := startLive(t, ta, mode, edge.Limits{})
			check := func(what string, resp *http.Response) {
				t.Helper()
				if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("%s: %d with X-Content-Type-Options %q", what, resp.StatusCode, got)
				}
				hsts := resp.Header.Get("Strict-Transport-Security")
				if mode == statemgmt.ModeOff {
					if hsts != "" {
						t.Errorf("%s: plain HTTP answer with Strict-Transport-Security %q", what, hsts)
					}
					return
				}
				age, ok := strings.CutPrefix(hsts, "max-age=")
				if n, err := strconv.Atoi(age); !ok || err != nil || n < 31536000 {
					t.Errorf("%s: %d with Strict-Transport-Security %q, want max-age of a year or more", what, resp.StatusCode, hsts)
				}
			}
			// A UI session, signed in over the server itself.
			resp, body := ls.do("POST", "/ui/login", map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
				url.Values{"token": {ta.token}}.Encode())
			check("sign-in", resp)
			var sid string
			for _, c := range resp.Cookies() {
				if c.Name == sessionCookie {
					sid = c.Value
				}
			}
			if resp.StatusCode != http.StatusSeeOther || sid == "" {
				t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
			}
			cookie := sessionCookie + "=" + sid
			resp, body = ls.do("GET", "/ui/", map[string]string{"Cookie": cookie}, "")
			check("GET /ui/ signed in", resp)
			m := csrfMeta.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("GET /ui/: no CSRF token: %d %s", resp.StatusCode, body)
			}
			auths := map[string]map[string]string{
				"signed out": {},
				"token":      {"Authorization": ta.bearer()},
				"session":    {"Cookie": cookie, csrfHeader: m[1]},
			}
			statuses := map[int]bool{}
			send := func(method, path string, hdr map[string]string, body string) {
				t.Helper()
				for desc, auth := range auths {
					h := map[string]string{}
					for k, v := range auth {
						h[k] = v
					}
					for k, v := range hdr {
						h[k] = v
					}
					resp, _ := ls.do(method, path, h, body)
					statuses[resp.StatusCode] = true
					check(method+" "+path+" "+desc, resp)
				}
			}
			for _, p := range patterns {
				method, path := concrete(p)
				switch {
				case method == "POST" && path == "/ui/login":
					send(method, path, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "token=wrong")
				case method == "POST" && path == "/ui/logout":
					// Last: it ends the session the other calls use.
				case method == "POST" && strings.HasPrefix(path, routeRotation):
					// Refused (an unknown field): a rotation step done would
					// replace the CA this walk's client trusts.
					send(method, path, map[string]string{"Content-Type": "application/json"}, `{"walk":true}`)
				case method == "POST":
					send(method, path, map[string]string{"Content-Type": "application/json"}, "{}")
				default:
					send(method, path, nil, "")
				}
			}
			for _, extra := range []struct{ method, path, ct, body string }{
				{"GET", "/nope", "", ""},
				{"GET", "/ui/nope", "", ""},
				{"GET", "/api/v2/x", "", ""},
				{"GET", "/api/v1/nothing-here", "", ""},
				{"GET", "/ui/static/", "", ""},
				{"GET", "/ui/static/index.html", "", ""},
				{"GET", "/ui/static/../ca.crt", "", ""},
				{"GET", "/ui/login?error=expired", "", ""},
				{"POST", "/healthz", "", ""},
				{"PUT", "/ui/", "", ""},
				{"OPTIONS", "/api/v1/mappings", "", ""},
				{"DELETE", "/ca.crt", "", ""},
				{"PATCH", "/api/v1/mappings/shop", "application/json", "{}"},
				{"POST", "/api/v1/mappings", "text/plain", "{}"},
				{"POST", "/api/v1/mappings", "application/json", strings.Repeat(" ", maxBodyBytes+1)},
				{"POST", "/api/v1/mappings", "application/json", `{"listener":"api","hosts":["hdr.example.com"],"source":"self-signed"}`},
				{"POST", "/api/v1/mappings", "application/json", "{"},
				{"POST", "/ui/login", "application/x-www-form-urlencoded", "token=" + strings.Repeat("a", maxFormBytes)},
			} {
				send(extra.method, extra.path, map[string]string{"Content-Type": extra.ct}, extra.body)
			}
			send("POST", "/ui/login", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://evil.example"}, "token=x")
			// OPTIONS *, which http.Server answers itself unless told not to.
			optReq, _ := http.NewRequest("OPTIONS", ls.base, nil)
			optReq.URL.Opaque = "*"
			if resp, err := ls.client.Do(optReq); err != nil {
				t.Errorf("OPTIONS *: %v", err)
			} else {
				resp.Body.Close()
				check("OPTIONS *", resp)
			}
			send("POST", "/ui/logout", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, url.Values{"csrf": {m[1]}}.Encode())
			// The walk met the kinds of answer it is meant to.
			for _, code := range []int{200, 201, 303, 307, 400, 401, 403, 404, 405, 413, 415, 422} {
				if !statuses[code] {
					t.Errorf("no answer %d among %v", code, statuses)
				}
			}
		})
	}
}
