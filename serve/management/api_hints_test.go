package management

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/issuance"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// speaksCLI reports what of the command line a hint names: a flag or a
// p2ptls command; "" when none.
func speaksCLI(hint string) string {
	for _, w := range []string{"--", "p2ptls "} {
		if strings.Contains(hint, w) {
			return w
		}
	}
	return ""
}

// TestAPIHintsSpeakAPI: every refusal POST and PATCH /api/v1/mappings
// (and the other mapping and DNS credential routes) can answer has a hint
// in the API's words, naming the JSON field or the route to use, and
// changes nothing (but a failed ACME attempt, which is recorded);
// the same refusal of the state code, as the command line meets it,
// keeps its hint in the command line's words.
func TestAPIHintsSpeakAPI(t *testing.T) {
	ta := newTestAPI(t)
	ctx := context.Background()
	dir := t.TempDir()
	up := selfSigned(t, "new.example.com")
	old, err := pki.SelfSigned(pki.ParseNames([]string{"old.example.com"}), time.Now().Add(-100*24*time.Hour), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "new.crt")
	if err := os.WriteFile(certFile, up.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	type body = map[string]any
	for _, tc := range []struct {
		desc, method, path string
		body               body
		status             int
		wantAPI            string // in the API's hint
		// The command line's twin of the request (nil: none, the
		// refusal is the API's own) and what its hint names.
		cli     func() error
		wantCLI string
		records bool // the refusal is recorded (a failed ACME attempt): the state changes
	}{
		{desc: "wildcard with http-01", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"*.w.example.net"}, "source": "acme", "challenge": "http-01"},
			status: 422, wantAPI: `"challenge": "dns-01"`, wantCLI: "--challenge dns-01"},
		{desc: "wildcard with tls-alpn-01", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"*.w.example.net"}, "source": "acme", "challenge": "tls-alpn-01"},
			status: 422, wantAPI: `"challenge": "dns-01"`, wantCLI: "--challenge dns-01"},
		{desc: "IP address with dns-01", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"192.0.2.7"}, "source": "acme", "challenge": "dns-01", "dns_credential": "cf"},
			status: 422, wantAPI: `"challenge": "http-01" or "tls-alpn-01"`, wantCLI: "--challenge http-01"},
		{desc: "dns-01 without a credential", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"d.example.net"}, "source": "acme", "challenge": "dns-01"},
			status: 422, wantAPI: `"dns_credential" (GET /api/v1/dns-credentials lists them)`, wantCLI: "--dns-credential"},
		{desc: "a DNS credential that does not exist", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"d.example.net"}, "source": "acme", "challenge": "dns-01", "dns_credential": "nope"},
			status: 422, wantAPI: "POST /api/v1/dns-credentials", wantCLI: "'p2ptls dns-credential add'"},
		{desc: "host already mapped", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"shop.example.com"}, "source": "self-signed"},
			status: 422, wantAPI: `remove it from mapping "shop" first`, wantCLI: `remove it from mapping "shop" first`},
		{desc: "id in use", method: "POST", path: "/api/v1/mappings",
			body:   body{"id": "shop", "listener": "api", "hosts": []string{"other.example.net"}, "source": "self-signed"},
			status: 409, wantAPI: `choose another "id", or remove it first with DELETE /api/v1/mappings/shop`, wantCLI: "'p2ptls mapping remove shop'"},
		{desc: "bad id", method: "POST", path: "/api/v1/mappings",
			body:   body{"id": "Bad!", "listener": "web", "hosts": []string{"b.example.net"}, "source": "self-signed"},
			status: 422, wantAPI: `give another "id"`, wantCLI: "--id"},
		{desc: "listener that does not exist", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "nope", "hosts": []string{"l.example.net"}, "source": "self-signed"},
			status: 422, wantAPI: "GET /api/v1/listeners", wantCLI: "'p2ptls listener add'"},
		{desc: "listener that is not a name", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "No Such", "hosts": []string{"l.example.net"}, "source": "self-signed"},
			status: 422, wantAPI: "GET /api/v1/listeners", wantCLI: "'p2ptls listener list'"},
		{desc: "no hosts", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{}, "source": "self-signed"},
			status: 422, wantAPI: `"hosts"`, wantCLI: "--host"},
		{desc: "file without a key file", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"new.example.com"}, "source": "file", "cert_file": certFile},
			status: 422, wantAPI: `send "cert_file" and "key_file"`, wantCLI: "--cert-file and --key-file"},
		{desc: "manual without a key", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"new.example.com"}, "source": "manual", "cert_pem": string(up.CertPEM)},
			status: 422, wantAPI: `"cert_pem"`,
			cli: func() error {
				in := mappings.Input{CertPEM: up.CertPEM}
				in.Mapping.Listener, in.Mapping.Hosts, in.Mapping.Source = "web", []string{"new.example.com"}, "manual"
				_, _, err := mappings.Add(ctx, ta.store, in, time.Now())
				return err
			}, wantCLI: "--cert-file and --key-file"},
		{desc: "an expired upload", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"old.example.com"}, "source": "manual", "cert_pem": string(old.CertPEM), "key_pem": string(old.KeyPEM)},
			status: 422, wantAPI: `send "allow_expired": true`, wantCLI: "--allow-expired"},
		{desc: "days out of range", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"days.example.net"}, "source": "self-signed", "days": 100000},
			status: 422, wantAPI: `give "days" between 1 and`, wantCLI: "--days"},
		{desc: "ACME settings on another source", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"s.example.net"}, "source": "self-signed", "challenge": "http-01"},
			status: 422, wantAPI: "choose source acme", wantCLI: "choose source acme"},
		{desc: "unknown key type", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"k.example.net"}, "source": "acme", "challenge": "http-01", "key_type": "rsa1024"},
			status: 422, wantAPI: `"ec256"`, wantCLI: `"ec256"`},
		{desc: "unknown field", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"u.example.net"}, "source": "self-signed", "dayz": 3},
			status: 400, wantAPI: "the fields this endpoint documents"},
		{desc: "relative cert_file", method: "POST", path: "/api/v1/mappings",
			body:   body{"listener": "web", "hosts": []string{"new.example.com"}, "source": "file", "cert_file": "new.crt", "key_file": "new.key"},
			status: 422, wantAPI: "absolute path"},

		{desc: "PATCH: a wildcard to http-01", method: "PATCH", path: "/api/v1/mappings/wild", body: body{"challenge": "http-01"},
			status: 422, wantAPI: `"challenge": "dns-01"`,
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "wild", mappings.Changes{Challenge: str("http-01")}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: "--challenge dns-01"},
		{desc: "PATCH: DNS-01 without its credential", method: "PATCH", path: "/api/v1/mappings/wild", body: body{"dns_credential": ""},
			status: 422, wantAPI: `"dns_credential"`,
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "wild", mappings.Changes{DNSCredential: str("")}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: "--dns-credential"},
		{desc: "PATCH: a DNS credential that does not exist", method: "PATCH", path: "/api/v1/mappings/wild", body: body{"dns_credential": "nope"},
			status: 422, wantAPI: "POST /api/v1/dns-credentials",
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "wild", mappings.Changes{DNSCredential: str("nope")}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: "'p2ptls dns-credential add'"},
		{desc: "PATCH: a host already mapped", method: "PATCH", path: "/api/v1/mappings/shop", body: body{"hosts": []string{"upload.example.com"}},
			status: 422, wantAPI: `remove it from mapping "upload" first`,
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "shop", mappings.Changes{Hosts: []string{"upload.example.com"}}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: `remove it from mapping "upload" first`},
		{desc: "PATCH: no hosts", method: "PATCH", path: "/api/v1/mappings/shop", body: body{"hosts": []string{}},
			status: 422, wantAPI: `"hosts"`,
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "shop", mappings.Changes{Hosts: []string{}}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: "--host"},
		{desc: "PATCH: ACME settings on a self-signed mapping", method: "PATCH", path: "/api/v1/mappings/shop", body: body{"profile": "x"},
			status: 422, wantAPI: `"profile"`,
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "shop", mappings.Changes{Profile: str("x")}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: "--profile"},
		{desc: "PATCH: nothing to change", method: "PATCH", path: "/api/v1/mappings/shop", body: body{},
			status: 422, wantAPI: `"upstream"`,
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "shop", mappings.Changes{}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: "--upstream"},
		{desc: "PATCH: a mapping that does not exist", method: "PATCH", path: "/api/v1/mappings/nope", body: body{"upstream": "http://127.0.0.1:1"},
			status: 404, wantAPI: "GET /api/v1/mappings lists",
			cli: func() error {
				_, _, err := mappings.Set(ctx, ta.store, "nope", mappings.Changes{Upstream: str("http://127.0.0.1:1")}, time.Now(), nil, mappings.CLIFields)
				return err
			}, wantCLI: "'p2ptls mapping list'"},
		{desc: "PATCH: unknown field", method: "PATCH", path: "/api/v1/mappings/shop", body: body{"source": "acme"},
			status: 400, wantAPI: "the fields this endpoint documents"},

		{desc: "a DNS credential name in use", method: "POST", path: "/api/v1/dns-credentials",
			body:   body{"name": "cf", "provider": "cloudflare", "api_token": "hint-test-token-1234"},
			status: 409, wantAPI: `choose another "name", or remove it first with DELETE /api/v1/dns-credentials/cf`,
			cli: func() error {
				return dnscred.Add(ctx, ta.store, state.DNSCredential{Name: "cf", Provider: "cloudflare"}, "hint-test-token-1234")
			}, wantCLI: "'p2ptls dns-credential remove cf'"},
		{desc: "an unknown DNS provider", method: "POST", path: "/api/v1/dns-credentials",
			body:   body{"name": "r53", "provider": "route53", "api_token": "hint-test-token-1234"},
			status: 422, wantAPI: `"provider": "cloudflare"`,
			cli: func() error {
				return dnscred.Add(ctx, ta.store, state.DNSCredential{Name: "r53", Provider: "route53"}, "hint-test-token-1234")
			}, wantCLI: "--provider cloudflare"},
		{desc: "an empty DNS token", method: "POST", path: "/api/v1/dns-credentials",
			body:   body{"name": "empty", "provider": "cloudflare", "api_token": ""},
			status: 422, wantAPI: `"api_token"`,
			cli: func() error {
				return dnscred.Add(ctx, ta.store, state.DNSCredential{Name: "empty", Provider: "cloudflare"}, "")
			}, wantCLI: "the file or the environment variable"},
		{desc: "a DNS credential in use", method: "DELETE", path: "/api/v1/dns-credentials/cf",
			status: 409, wantAPI: "(DELETE /api/v1/mappings/{id}), or disable the credential with POST /api/v1/dns-credentials/cf/disable",
			cli: func() error {
				_, err := dnscred.Remove(ctx, ta.store, "cf")
				return err
			}, wantCLI: "'p2ptls dns-credential disable cf'"},
		{desc: "a DNS credential that does not exist", method: "DELETE", path: "/api/v1/dns-credentials/nope",
			status: 404, wantAPI: "GET /api/v1/dns-credentials lists the existing ones",
			cli: func() error {
				_, err := dnscred.Remove(ctx, ta.store, "nope")
				return err
			}, wantCLI: "'p2ptls dns-credential list'"},
		{desc: "issue without an ACME account", method: "POST", path: "/api/v1/mappings/wild/issue",
			status: 502, wantAPI: "GET /api/v1/acme/accounts lists the accounts", records: true,
			cli: func() error {
				return issuance.Issue(ctx, ta.store, "wild", time.Now(), issuance.Options{ACME: acme.Options{Log: slog.New(slog.DiscardHandler)}})
			}, wantCLI: "'p2ptls acme account register"},
		{desc: "a bad DNS credential name", method: "POST", path: "/api/v1/dns-credentials",
			body:   body{"name": "Bad!", "provider": "cloudflare", "api_token": "hint-test-token-1234"},
			status: 422, wantAPI: "GET /api/v1/openapi.json describes every field"},

		{desc: "GET a mapping that does not exist", method: "GET", path: "/api/v1/mappings/nope", status: 404, wantAPI: "GET /api/v1/mappings lists",
			cli: func() error {
				_, err := mappings.Remove(ctx, ta.store, "nope")
				return err
			}, wantCLI: "'p2ptls mapping list'"},
		{desc: "the list of a listener that does not exist", method: "GET", path: "/api/v1/mappings?listener=nope", status: 404,
			wantAPI: "GET /api/v1/listeners lists the existing ones"},
		{desc: "DELETE a mapping that does not exist", method: "DELETE", path: "/api/v1/mappings/nope", status: 404, wantAPI: "GET /api/v1/mappings lists"},
		{desc: "the PEM of a mapping that does not exist", method: "GET", path: "/api/v1/certificates/nope/pem", status: 404, wantAPI: "GET /api/v1/mappings lists"},
		{desc: "issue an uploaded certificate", method: "POST", path: "/api/v1/mappings/upload/issue", status: 409,
			wantAPI: `DELETE /api/v1/mappings/upload, then POST /api/v1/mappings with "id": "upload", "source": "manual"`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			req := request{method: tc.method, path: tc.path, auth: ta.bearer()}
			if tc.body != nil {
				b, err := json.Marshal(tc.body)
				if err != nil {
					t.Fatal(err)
				}
				req.contentType, req.body = "application/json", string(b)
			}
			before := ta.snapshot()
			a := ta.do(req)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			e := a.errorBody(t)
			if w := speaksCLI(e.Hint); w != "" {
				t.Errorf("hint %q names the command line (%q)", e.Hint, w)
			}
			if !strings.Contains(e.Hint, tc.wantAPI) {
				t.Errorf("hint %q does not say %q", e.Hint, tc.wantAPI)
			}
			if tc.records {
				before = ta.snapshot()
			}
			sameSnapshot(t, before, ta.snapshot())
			if tc.wantCLI == "" {
				return
			}
			cli := tc.cli
			if cli == nil { // POST: the body as the command line's mapping add takes it
				cli = func() error {
					var rec mappings.Record
					if err := json.Unmarshal([]byte(req.body), &rec); err != nil {
						t.Fatal(err)
					}
					in, err := rec.Input()
					if err != nil {
						t.Fatalf("the record is refused before the state code: %v", err)
					}
					_, _, err = mappings.Add(ctx, ta.store, in, time.Now())
					return err
				}
			}
			err := cli()
			if err == nil {
				t.Fatal("the command line's twin is not refused")
			}
			if hint := fault.HintOf(err); !strings.Contains(hint, tc.wantCLI) {
				t.Errorf("the command line's hint %q does not say %q", hint, tc.wantCLI)
			}
			if !tc.records {
				sameSnapshot(t, before, ta.snapshot())
			}
		})
	}
}

// TestAPIWarningsSpeakAPI: a warning of POST /api/v1/mappings names the
// route, not the command, that ends it.
func TestAPIWarningsSpeakAPI(t *testing.T) {
	ta := newTestAPI(t)
	if a := ta.post("/api/v1/dns-credentials/spare/disable", nil); a.status != 200 {
		t.Fatalf("disable: %d %s", a.status, a.body)
	}
	a := ta.post("/api/v1/mappings", map[string]any{"id": "dis", "listener": "web", "hosts": []string{"*.dis.example.net"},
		"source": "acme", "challenge": "dns-01", "dns_credential": "spare"})
	var got struct {
		Warnings []string `json:"warnings"`
	}
	a.json(t, &got)
	if a.status != 201 || len(got.Warnings) != 1 {
		t.Fatalf("POST: %d, warnings %q", a.status, got.Warnings)
	}
	if w := got.Warnings[0]; speaksCLI(w) != "" || !strings.Contains(w, "POST /api/v1/dns-credentials/spare/enable") {
		t.Errorf("warning %q does not name POST /api/v1/dns-credentials/spare/enable", w)
	}
}
