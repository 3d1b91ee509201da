package dnscred

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

// Tokens of the emulated account, 40 characters like Cloudflare's.
const (
	tokAll      = "all0000000000000000000000000000000000000"
	tokZoneRead = "zoneread000000000000000000000000000000rd"
	tokDNSEdit  = "dnsedit0000000000000000000000000000000ed"
	tokUnknown  = "unknown000000000000000000000000000000unk"
)

// txtEvent is one OnTXT call of the emulator.
type txtEvent struct {
	fqdn    string
	present bool
}

// emulator starts the Cloudflare API emulator with two zones and a token
// for each permission set, and records its TXT changes.
func emulator(t *testing.T) (*cftest.Server, func() []txtEvent) {
	t.Helper()
	var mu sync.Mutex
	var events []txtEvent
	srv := cftest.New(t, cftest.Options{
		Zones: []string{"example.test", "other.test"},
		Tokens: map[string]cftest.Perms{
			tokAll:      {ZoneRead: true, DNSEdit: true},
			tokZoneRead: {ZoneRead: true},
			tokDNSEdit:  {DNSEdit: true},
		},
		OnTXT: func(fqdn, value string, present bool) {
			mu.Lock()
			defer mu.Unlock()
			if !strings.HasPrefix(value, "p2ptls-test-") {
				t.Errorf("TXT value %q: not p2ptls's test value", value)
			}
			events = append(events, txtEvent{fqdn, present})
		},
	})
	return srv, func() []txtEvent {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(events)
	}
}

func checkIDs(res *TestResult) []string {
	var ids []string
	for _, c := range res.Checks {
		id := c.ID + ":" + c.Status
		if c.Zone != "" {
			id = c.ID + "@" + c.Zone + ":" + c.Status
		}
		ids = append(ids, id)
	}
	return ids
}

// noSecret fails when anything the user or a script can see holds tok.
func noSecret(t *testing.T, tok string, res *TestResult, err error) {
	t.Helper()
	var seen []string
	if err != nil {
		seen = append(seen, err.Error(), fault.HintOf(err))
	}
	if res != nil {
		b, _ := json.Marshal(res)
		seen = append(seen, string(b))
	}
	for _, s := range seen {
		if strings.Contains(s, tok) {
			t.Errorf("the token shows in %s", s)
		}
	}
}

func TestTestAgainstTheEmulator(t *testing.T) {
	tests := []struct {
		desc   string
		token  string
		checks []string
		err    string // "" means OK
		hint   string
		txt    []txtEvent
	}{
		{"zone read and dns edit", tokAll,
			[]string{"token:ok", "zone_read:ok", "dns_edit@example.test:ok", "dns_edit@other.test:ok"}, "", "",
			[]txtEvent{{"_p2ptls-test.example.test", true}, {"_p2ptls-test.example.test", false}, {"_p2ptls-test.other.test", true}, {"_p2ptls-test.other.test", false}}},
		{"lacks zone read", tokDNSEdit,
			[]string{"token:ok", "zone_read:fail"}, `DNS credential "cf": the token lacks Zone:Read: HTTP 403: 10000: Authentication error`, "give it Zone:Read and DNS:Edit", nil},
		{"lacks dns edit", tokZoneRead,
			[]string{"token:ok", "zone_read:ok", "dns_edit@example.test:fail", "dns_edit@other.test:fail"},
			`DNS credential "cf": the token lacks DNS:Edit for zone example.test: HTTP 403: 10000: Authentication error (and 1 more zone(s) failed)`, "give it Zone:Read and DNS:Edit", nil},
		{"invalid token", tokUnknown,
			[]string{"token:fail"}, `DNS credential "cf": the token is not valid: HTTP 401: 1000: Invalid API Token`, "create an API token", nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			srv, events := emulator(t)
			res, err := Test(ctx, Credential{Name: "cf", Provider: "cloudflare", Token: tc.token, APIBaseURL: srv.URL})
			if res == nil {
				t.Fatalf("no result: %v", err)
			}
			if got := checkIDs(res); !slices.Equal(got, tc.checks) {
				t.Errorf("checks %v, want %v (%+v)", got, tc.checks, res.Checks)
			}
			noSecret(t, tc.token, res, err)
			if res.APIBaseURL != srv.URL || res.Name != "cf" {
				t.Errorf("result names %q at %q", res.Name, res.APIBaseURL)
			}
			if tc.err == "" {
				if err != nil || !res.OK {
					t.Fatalf("Test = %v, ok %v", err, res.OK)
				}
				if !slices.Equal(res.Zones, []string{"example.test", "other.test"}) || res.TotalZones != 2 {
					t.Errorf("zones %v (%d)", res.Zones, res.TotalZones)
				}
			} else {
				if err == nil || res.OK || err.Error() != tc.err || fault.KindOf(err) != fault.Failure {
					t.Errorf("Test = %v (ok %v), want %q", err, res.OK, tc.err)
				}
				if !strings.Contains(fault.HintOf(err), tc.hint) {
					t.Errorf("hint %q, want %q", fault.HintOf(err), tc.hint)
				}
			}
			if got := events(); !slices.Equal(got, tc.txt) {
				t.Errorf("TXT changes %v, want %v", got, tc.txt)
			}
			for _, z := range []string{"example.test", "other.test"} {
				if left := srv.TXT(TestRecordLabel + "." + z); left != nil {
					t.Errorf("test record left in %s: %v", z, left)
				}
			}
		})
	}
}

func TestTestWithoutZones(t *testing.T) {
	srv := cftest.New(t, cftest.Options{Tokens: map[string]cftest.Perms{tokAll: {ZoneRead: true, DNSEdit: true}}})
	res, err := Test(ctx, Credential{Name: "cf", Token: tokAll, APIBaseURL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "it can see no zone") || !slices.Equal(checkIDs(res), []string{"token:ok", "zone_read:fail"}) {
		t.Errorf("Test = %v, checks %v", err, checkIDs(res))
	}
}

// front puts a reverse proxy before the emulator that answers
// /user/tokens/verify itself with status, as an API without token
// verification (404) or one that knows only account tokens (401) does.
func front(t *testing.T, srv *cftest.Server, status int) string {
	t.Helper()
	target, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(&url.URL{Scheme: target.Scheme, Host: target.Host}) }}
	h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/user/tokens/verify") {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":1000,"message":"Invalid API Token"}]}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(h.Close)
	return h.URL + cftest.APIPath
}

func TestTestWhenTokenVerificationIsNotThere(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		status int
		token  string
		checks []string
		msg    string
		err    string
	}{
		{"no verify endpoint", http.StatusNotFound, tokAll,
			[]string{"token:warn", "zone_read:ok", "dns_edit@example.test:ok", "dns_edit@other.test:ok"}, "cannot verify tokens", ""},
		{"account-owned token", http.StatusUnauthorized, tokAll,
			[]string{"token:ok", "zone_read:ok", "dns_edit@example.test:ok", "dns_edit@other.test:ok"}, "account-owned", ""},
		{"no verify endpoint, invalid token", http.StatusNotFound, tokUnknown,
			[]string{"token:warn", "zone_read:fail"}, "cannot verify tokens", "HTTP 403: 9109: Invalid access token"},
		{"account API, invalid token", http.StatusUnauthorized, tokUnknown,
			[]string{"token:fail"}, "the token is not valid", "the token is not valid"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			srv, _ := emulator(t)
			res, err := Test(ctx, Credential{Name: "cf", Token: tc.token, APIBaseURL: front(t, srv, tc.status)})
			if got := checkIDs(res); !slices.Equal(got, tc.checks) {
				t.Errorf("checks %v, want %v", got, tc.checks)
			}
			if !strings.Contains(res.Checks[0].Message, tc.msg) {
				t.Errorf("token check says %q, want %q", res.Checks[0].Message, tc.msg)
			}
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("Test = %v, want %q", err, tc.err)
			}
			noSecret(t, tc.token, res, err)
		})
	}
}

func TestTestUnreachableAndBrokenAPIs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/client/v4"
	ln.Close()

	broken := func(status int, body string) string {
		h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(strings.ReplaceAll(body, "TOKEN", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))))
		}))
		t.Cleanup(h.Close)
		return h.URL
	}
	tests := []struct {
		desc string
		base string
		want string
	}{
		{"nothing listens", closed, "cannot verify the token: Get \"" + closed + "/user/tokens/verify\""},
		{"server error with the envelope", broken(500, `{"success":false,"errors":[{"code":1234,"message":"boom","error_chain":[{"code":5,"message":"inner"}]}]}`),
			"cannot verify the token: HTTP 500: 1234: boom; 5: inner"},
		{"an echoed token is never shown", broken(502, `<html>bad gateway for TOKEN</html>`), "HTTP 502: <html>bad gateway for [token]</html>"},
		{"success without JSON", broken(200, `hello`), "the answer is not Cloudflare API JSON"},
		{"an empty error", broken(503, ``), "HTTP 503 Service Unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			res, err := Test(ctx, Credential{Name: "cf", Token: tokAll, APIBaseURL: tc.base})
			if res == nil || res.OK || !slices.Equal(checkIDs(res), []string{"token:fail"}) {
				t.Fatalf("result %+v", res)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(fault.HintOf(err), "--api-base-url") {
				t.Errorf("Test = %v (hint %q), want %q", err, fault.HintOf(err), tc.want)
			}
			noSecret(t, tokAll, res, err)
		})
	}

	if res, err := Test(ctx, Credential{Name: "cf", Token: tokAll, APIBaseURL: "not a url"}); res != nil || fault.KindOf(err) != fault.Invalid {
		t.Errorf("bad base URL: %v, %v", res, err)
	}
}
