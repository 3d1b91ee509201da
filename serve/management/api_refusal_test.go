package management

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// endpoints are every API endpoint, with a body that would be accepted
// where one is needed (so that only the token decides).
var endpoints = []request{
	{method: "GET", path: "/api/v1/status"},
	{method: "GET", path: "/api/v1/listeners"},
	{method: "GET", path: "/api/v1/mappings"},
	{method: "POST", path: "/api/v1/mappings", contentType: "application/json",
		body: `{"listener":"api","hosts":["new.example.com"],"source":"self-signed"}`},
	{method: "GET", path: "/api/v1/mappings/shop"},
	{method: "DELETE", path: "/api/v1/mappings/shop"},
	{method: "POST", path: "/api/v1/mappings/shop/issue"},
	{method: "GET", path: "/api/v1/certificates/shop"},
	{method: "GET", path: "/api/v1/dns-credentials"},
	{method: "POST", path: "/api/v1/dns-credentials", contentType: "application/json",
		body: `{"name":"new","provider":"cloudflare","api_token":"new-token-0123456789abcdef"}`},
	{method: "POST", path: "/api/v1/dns-credentials/spare/enable"},
	{method: "POST", path: "/api/v1/dns-credentials/spare/disable"},
	{method: "POST", path: "/api/v1/dns-credentials/spare/test"},
	{method: "DELETE", path: "/api/v1/dns-credentials/spare"},
	{method: "GET", path: "/api/v1/acme/accounts"},
	{method: "GET", path: "/api/v1/acme/profiles"},
	{method: "GET", path: "/api/v1/doctor"},
	{method: "GET", path: "/api/v1/nothing-here"},
}

// TestAPIRefusesWithoutValidToken: every endpoint, with no token, a token
// of another scheme, a wrong token and a revoked one, is 401 and changes
// nothing.
func TestAPIRefusesWithoutValidToken(t *testing.T) {
	ta := newTestAPI(t)
	auths := map[string]string{
		"missing":     "",
		"not bearer":  "Basic b3BzOnB3",
		"empty":       "Bearer ",
		"wrong":       "Bearer p2ptls_" + strings.Repeat("0", 43),
		"revoked":     "Bearer " + ta.revoked,
		"token alone": ta.token,
	}
	for _, ep := range endpoints {
		for desc, auth := range auths {
			t.Run(ep.method+" "+ep.path+" "+desc, func(t *testing.T) {
				before := ta.snapshot()
				req := ep
				req.auth = auth
				a := ta.do(req)
				if a.status != 401 {
					t.Fatalf("status %d, want 401: %s", a.status, a.body)
				}
				a.errorBody(t)
				if !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q", a.header.Get("WWW-Authenticate"))
				}
				sameSnapshot(t, before, ta.snapshot())
			})
		}
	}
}

// TestAPIRefusals: requests the API or the state code refuse answer the
// fitting status with {"error","hint"} and leave the state directory byte
// for byte as it was.
func TestAPIRefusals(t *testing.T) {
	ta := newTestAPI(t)
	other := selfSigned(t, "m.example.com")
	mine := selfSigned(t, "m.example.com")
	jsonBody := func(v map[string]any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	mapping := func(extra map[string]any) string {
		v := map[string]any{"listener": "api", "hosts": []string{"m.example.com"}, "source": "self-signed"}
		for k, x := range extra {
			if x == nil {
				delete(v, k)
			} else {
				v[k] = x
			}
		}
		return jsonBody(v)
	}
	cred := func(extra map[string]any) string {
		v := map[string]any{"name": "new", "provider": "cloudflare", "api_token": "new-token-0123456789abcdef"}
		for k, x := range extra {
			v[k] = x
		}
		return jsonBody(v)
	}
	const js = "application/json"
	big := `{"listener":"api","hosts":["m.example.com"],"source":"self-signed","upstream":"` + strings.Repeat("a", maxBodyBytes) + `"}`
	certFile := filepath.Join(t.TempDir(), "c.pem")
	if err := os.WriteFile(certFile, mine.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		desc   string
		req    request
		status int
		want   string // in the error message
	}{
		// The request itself.
		{"malformed JSON", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: `{"listener":`}, 400, "invalid JSON"},
		{"not an object", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: `["x"]`}, 400, "JSON object"},
		{"unknown field", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hostz": []string{"a"}})}, 400, `unknown field "hostz"`},
		{"field in another case", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: `{"Listener":"api","hosts":["m.example.com"],"source":"self-signed"}`}, 400, `unknown field "Listener"`},
		{"field twice", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: `{"listener":"api","listener":"web","hosts":["m.example.com"],"source":"self-signed"}`}, 400, `"listener" is given twice`},
		{"wrong JSON type", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": "m.example.com"})}, 400, `"hosts"`},
		{"data after the object", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(nil) + `{}`}, 400, "after the JSON object"},
		{"empty body", request{method: "POST", path: "/api/v1/mappings", contentType: js}, 400, "empty"},
		{"oversized body", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: big}, 413, "larger than"},
		{"no content type", request{method: "POST", path: "/api/v1/mappings", body: mapping(nil)}, 415, "Content-Type"},
		{"form content type", request{method: "POST", path: "/api/v1/mappings", contentType: "application/x-www-form-urlencoded", body: mapping(nil)}, 415, "Content-Type"},
		{"text content type", request{method: "POST", path: "/api/v1/mappings", contentType: "text/plain", body: mapping(nil)}, 415, "Content-Type"},
		{"credential: malformed JSON", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: `{"name":"x",}`}, 400, "invalid JSON"},
		{"credential: unknown field", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"token": "x"})}, 400, `unknown field "token"`},
		{"credential: oversized body", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"api_base_url": strings.Repeat("a", maxBodyBytes)})}, 413, "larger than"},
		{"credential: wrong content type", request{method: "POST", path: "/api/v1/dns-credentials", contentType: "text/plain", body: cred(nil)}, 415, "Content-Type"},
		{"issue: malformed JSON", request{method: "POST", path: "/api/v1/mappings/shop/issue", contentType: js, body: `{`}, 400, "invalid JSON"},
		{"issue: unknown field", request{method: "POST", path: "/api/v1/mappings/shop/issue", contentType: js, body: `{"force":true}`}, 400, `unknown field "force"`},
		{"issue: wrong content type", request{method: "POST", path: "/api/v1/mappings/shop/issue", contentType: "text/plain", body: `{}`}, 415, "Content-Type"},
		{"issue: oversized body", request{method: "POST", path: "/api/v1/mappings/shop/issue", contentType: js, body: big}, 413, "larger than"},
		{"enable: unknown field", request{method: "POST", path: "/api/v1/dns-credentials/spare/disable", contentType: js, body: `{"enabled":false}`}, 400, `unknown field "enabled"`},
		{"disable: wrong content type", request{method: "POST", path: "/api/v1/dns-credentials/spare/disable", contentType: "text/plain", body: `x`}, 415, "Content-Type"},
		{"test: malformed JSON", request{method: "POST", path: "/api/v1/dns-credentials/spare/test", contentType: js, body: `nope`}, 400, "invalid JSON"},
		{"method not allowed", request{method: "PUT", path: "/api/v1/mappings/shop", contentType: js, body: `{}`}, 405, "PUT is not allowed"},
		{"doctor: bad flag", request{method: "GET", path: "/api/v1/doctor?strict=maybe"}, 400, "strict"},
		{"no such endpoint", request{method: "GET", path: "/api/v1/mappings/shop/nothing"}, 404, "no such API endpoint"},

		// Mapping content refused by mappings.Add.
		{"bad hostname", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": []string{"bad_host!.example.com"}})}, 422, "bad_host"},
		{"double wildcard", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": []string{"*.*.example.com"}})}, 422, "*.*.example.com"},
		{"IP host with DNS-01", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": []string{"10.0.0.1"}, "source": "acme", "challenge": "dns-01", "dns_credential": "spare"})}, 422, "IP address 10.0.0.1 cannot be validated with DNS-01"},
		{"IP host with a zone", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": []string{"fe80::1%eth0"}})}, 422, "has the zone"},
		{"single label", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": []string{"localhost"}})}, 422, "localhost"},
		{"no hosts", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": nil})}, 422, "at least one host"},
		{"host twice", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"hosts": []string{"m.example.com", "M.example.com."}})}, 422, "twice"},
		{"host already mapped on the listener", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"listener": "web", "hosts": []string{"shop.example.com"}})}, 422, "already mapped"},
		{"bad id", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"id": "Bad ID"})}, 422, "mapping id"},
		{"unknown source", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"source": "magic"})}, 422, "unknown source"},
		{"no source", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"source": nil})}, 422, "source"},
		{"unknown listener", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"listener": "nope"})}, 422, `listener "nope" does not exist`},
		{"bad upstream", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"upstream": "ftp://x"})}, 422, "upstream"},
		{"self-signed: too many days", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"days": 1000})}, 422, "1000 days"},
		{"self-signed: allow_expired", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"allow_expired": true})}, 422, "allow_expired"},
		{"self-signed: a challenge", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"challenge": "http-01"})}, 422, "source self-signed does not take"},
		{"manual: no PEM", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"source": "manual"})}, 422, "needs a certificate"},
		{"manual: key of another certificate", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "manual", "cert_pem": string(mine.CertPEM), "key_pem": string(other.KeyPEM)})}, 422, "private key"},
		{"manual: not PEM", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "manual", "cert_pem": "hello", "key_pem": string(mine.KeyPEM)})}, 422, "uploaded certificate"},
		{"manual: does not cover the host", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "manual", "hosts": []string{"x.example.com"}, "cert_pem": string(mine.CertPEM), "key_pem": string(mine.KeyPEM)})}, 422, "does not cover"},
		{"manual: file paths", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "manual", "cert_file": certFile, "key_file": certFile})}, 422, "source manual does not take"},
		{"file: relative path", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "file", "cert_file": "c.pem", "key_file": "k.pem"})}, 422, "absolute path"},
		{"file: missing file", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "file", "cert_file": certFile, "key_file": certFile + ".missing"})}, 422, "cannot read"},
		{"acme: wildcard with http-01", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "acme", "hosts": []string{"*.m.example.com"}, "challenge": "http-01"})}, 422, "DNS-01"},
		{"acme: wildcard with tls-alpn-01", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "acme", "hosts": []string{"*.m.example.com"}, "challenge": "tls-alpn-01"})}, 422, "DNS-01"},
		{"acme: no challenge", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"source": "acme"})}, 422, "challenge"},
		{"acme: dns-01 without credential", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "acme", "challenge": "dns-01"})}, 422, "DNS credential"},
		{"acme: unknown credential", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "acme", "challenge": "dns-01", "dns_credential": "nope"})}, 422, `"nope" does not exist`},
		{"acme: unknown key type", request{method: "POST", path: "/api/v1/mappings", contentType: js,
			body: mapping(map[string]any{"source": "acme", "challenge": "http-01", "key_type": "dsa"})}, 422, "key_type"},
		{"duplicate id", request{method: "POST", path: "/api/v1/mappings", contentType: js, body: mapping(map[string]any{"id": "shop"})}, 409, `"shop" already exists`},

		// Not found.
		{"show: no such mapping", request{method: "GET", path: "/api/v1/mappings/nope"}, 404, `"nope" does not exist`},
		{"list: no such listener", request{method: "GET", path: "/api/v1/mappings?listener=nope"}, 404, `"nope" does not exist`},
		{"remove: no such mapping", request{method: "DELETE", path: "/api/v1/mappings/nope"}, 404, `"nope" does not exist`},
		{"issue: no such mapping", request{method: "POST", path: "/api/v1/mappings/nope/issue"}, 404, `"nope" does not exist`},
		{"certificate: no such mapping", request{method: "GET", path: "/api/v1/certificates/nope"}, 404, `"nope" does not exist`},
		{"certificate: not issued yet", request{method: "GET", path: "/api/v1/certificates/wild"}, 404, "no certificate (status pending)"},
		{"enable: no such credential", request{method: "POST", path: "/api/v1/dns-credentials/nope/enable"}, 404, `"nope" does not exist`},
		{"disable: no such credential", request{method: "POST", path: "/api/v1/dns-credentials/nope/disable"}, 404, `"nope" does not exist`},
		{"test: no such credential", request{method: "POST", path: "/api/v1/dns-credentials/nope/test"}, 404, `"nope" does not exist`},
		{"remove: no such credential", request{method: "DELETE", path: "/api/v1/dns-credentials/nope"}, 404, `"nope" does not exist`},

		// Conflicts with the state.
		{"issue: uploaded certificate", request{method: "POST", path: "/api/v1/mappings/upload/issue"}, 409, "cannot renew"},
		{"remove a credential in use", request{method: "DELETE", path: "/api/v1/dns-credentials/cf"}, 409, "used by 1 mapping(s): wild"},
		{"credential: duplicate name", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"name": "cf"})}, 409, `"cf" already exists`},

		// Credential content refused by dnscred.Add.
		{"credential: bad name", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"name": "Bad Name"})}, 422, "DNS credential"},
		{"credential: unknown provider", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"provider": "route53"})}, 422, "route53"},
		{"credential: no provider", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"provider": ""})}, 422, "provider"},
		{"credential: empty token", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"api_token": " "})}, 422, "empty"},
		{"credential: token with a space", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"api_token": "secret-part-one secret-part-two"})}, 422, "space"},
		{"credential: bad base URL", request{method: "POST", path: "/api/v1/dns-credentials", contentType: js, body: cred(map[string]any{"api_base_url": "not a url"})}, 422, "api_base_url"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := ta.snapshot()
			req := tc.req
			req.auth = ta.bearer()
			a := ta.do(req)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			e := a.errorBody(t)
			if !strings.Contains(e.Error, tc.want) {
				t.Errorf("error %q does not say %q", e.Error, tc.want)
			}
			if strings.Contains(a.body, "secret-part") {
				t.Errorf("the token is quoted: %s", a.body)
			}
			sameSnapshot(t, before, ta.snapshot())
		})
	}
	if a := ta.do(request{method: "PUT", path: "/api/v1/mappings/shop", auth: ta.bearer()}); a.header.Get("Allow") != "GET, PATCH, DELETE" {
		t.Errorf("Allow %q", a.header.Get("Allow"))
	}
}

// TestAPILockedState: a state that stays locked is 503 with Retry-After,
// and nothing changes.
func TestAPILockedState(t *testing.T) {
	ta := newTestAPIWith(t, 300*time.Millisecond)
	other := state.OpenDir(ta.root, time.Second)
	unlock, err := other.Lock(context.Background(), "test holds the lock")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	before := ta.snapshot()
	a := ta.post("/api/v1/mappings", map[string]any{"listener": "api", "hosts": []string{"m.example.com"}, "source": "self-signed"})
	if a.status != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %s", a.status, a.header.Get("Retry-After"), a.body)
	}
	if e := a.errorBody(t); !strings.Contains(e.Error, "locked") || e.Hint == "" {
		t.Errorf("error %+v", e)
	}
	sameSnapshot(t, before, ta.snapshot())
}

// TestAPIBrokenConfig: a p2ptls.toml broken by hand is a server-side
// problem (500), not the request's, and it is never overwritten.
func TestAPIBrokenConfig(t *testing.T) {
	ta := newTestAPI(t)
	cfgFile := filepath.Join(ta.root, state.ConfigFile)
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, append(b, []byte("\nbogus = 1\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	before := ta.snapshot()
	for _, a := range []answer{
		ta.get("/api/v1/mappings"),
		ta.post("/api/v1/mappings", map[string]any{"listener": "api", "hosts": []string{"m.example.com"}, "source": "self-signed"}),
	} {
		if a.status != 500 {
			t.Errorf("status %d, want 500: %s", a.status, a.body)
		}
		if e := a.errorBody(t); !strings.Contains(e.Error, "bogus") || e.Hint == "" {
			t.Errorf("error %+v", e)
		}
	}
	sameSnapshot(t, before, ta.snapshot())
}
