package management

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/doctor"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

func TestAPIReadEndpoints(t *testing.T) {
	ta := newTestAPI(t)
	before := ta.snapshot()

	a := ta.get("/api/v1/status")
	var st map[string]any
	a.json(t, &st)
	if a.status != 200 || st["serve_running"] != true {
		t.Errorf("status: %d %s", a.status, a.body)
	}

	a = ta.get("/api/v1/listeners")
	var ls []state.Listener
	a.json(t, &ls)
	if a.status != 200 || len(ls) != 2 || ls[0].Name != "web" || ls[0].HTTPAddr != "127.0.0.1:18080" || ls[0].Fallback != "self-signed" {
		t.Errorf("listeners: %d %s", a.status, a.body)
	}

	a = ta.get("/api/v1/mappings")
	var list []mappings.Info
	a.json(t, &list)
	if a.status != 200 || len(list) != 3 {
		t.Fatalf("mappings: %d %s", a.status, a.body)
	}
	byID := map[string]mappings.Info{}
	for _, m := range list {
		byID[m.ID] = m
	}
	if byID["shop"].Status != "valid" || byID["shop"].Source != "self-signed" || byID["wild"].Status != "pending" || byID["wild"].DNSCredential != "cf" {
		t.Errorf("mappings: %s", a.body)
	}
	a = ta.get("/api/v1/mappings?listener=api")
	if a.status != 200 || strings.TrimSpace(a.body) != "[]" {
		t.Errorf("mappings of listener api: %d %s", a.status, a.body)
	}

	a = ta.get("/api/v1/mappings/shop")
	var shown struct {
		mappings.Info
		Certificate *mappings.Details `json:"certificate"`
	}
	a.json(t, &shown)
	if a.status != 200 || shown.ID != "shop" || shown.Certificate == nil || !slices.Equal(shown.Certificate.DNSNames, []string{"shop.example.com"}) {
		t.Errorf("show: %d %s", a.status, a.body)
	}

	a = ta.get("/api/v1/certificates/shop")
	var fields map[string]any
	a.json(t, &fields)
	for _, f := range []string{"subject", "dns_names", "issuer", "serial", "key_type", "fingerprint_sha256", "not_before", "not_after", "chain"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("certificate details lack %q: %s", f, a.body)
		}
	}
	var d mappings.Details
	a.json(t, &d)
	if a.status != 200 || d.FingerprintSHA256 != shown.FingerprintSHA256 || d.KeyType == "" || len(d.Chain) != 1 {
		t.Errorf("certificate: %d %s", a.status, a.body)
	}

	a = ta.get("/api/v1/acme/accounts")
	if a.status != 200 || strings.TrimSpace(a.body) != "[]" {
		t.Errorf("accounts: %d %s", a.status, a.body)
	}
	// No account: the profiles are unknown, and the answer says why.
	a = ta.get("/api/v1/acme/profiles")
	if a.status != 200 || !strings.Contains(a.body, `"profiles": null`) || !strings.Contains(a.body, `"error": "there is no ACME account yet"`) {
		t.Errorf("profiles: %d %s", a.status, a.body)
	}

	for _, q := range []string{"", "?strict=true"} {
		a = ta.get("/api/v1/doctor" + q)
		var rep doctor.Report
		a.json(t, &rep)
		if a.status != 200 || len(rep.Checks) == 0 || rep.Checks[0].ID == "" {
			t.Errorf("doctor%s: %d %s", q, a.status, a.body)
		}
		// The state has a pending wildcard and no management CA: strict
		// doctor is not OK.
		if q != "" && rep.OK {
			t.Errorf("strict doctor is ok: %s", a.body)
		}
	}

	a = ta.get("/api/v1/dns-credentials")
	var creds []dnscred.Info
	a.json(t, &creds)
	if a.status != 200 || len(creds) != 2 || creds[0].Name != "cf" || creds[0].TokenHint != "0001" || !slices.Equal(creds[0].UsedBy, []string{"wild"}) {
		t.Errorf("credentials: %d %s", a.status, a.body)
	}
	sameSnapshot(t, before, ta.snapshot())
}

// TestAPIMappingLifecycle adds self-signed, manual, file and ACME mappings,
// regenerates, and removes, checking the state directory after each step.
func TestAPIMappingLifecycle(t *testing.T) {
	ta := newTestAPI(t)
	rev := func() string { return ta.readState(state.RevisionFile) }

	// Self-signed, with the id derived from the first host.
	r0 := rev()
	a := ta.post("/api/v1/mappings", map[string]any{"listener": "api", "hosts": []string{"App.Example.com."}, "source": "self-signed", "days": 30, "upstream": "http://127.0.0.1:8080"})
	var ss mappings.Info
	a.json(t, &ss)
	if a.status != 201 || ss.ID != "app-example-com" || ss.Status != "valid" || !slices.Equal(ss.Hosts, []string{"app.example.com"}) || ss.Upstream != "http://127.0.0.1:8080" {
		t.Fatalf("add self-signed: %d %s", a.status, a.body)
	}
	if loc := a.header.Get("Location"); loc != "/api/v1/mappings/app-example-com" {
		t.Errorf("Location %q", loc)
	}
	if ss.NotAfter.Sub(*ss.NotBefore).Hours() < 30*24-2 || ss.NotAfter.Sub(*ss.NotBefore).Hours() > 30*24+2 {
		t.Errorf("validity %v – %v, want 30 days", ss.NotBefore, ss.NotAfter)
	}
	if !strings.Contains(ta.readState(state.RecordName("app-example-com")), `id = 'app-example-com'`) || rev() == r0 {
		t.Errorf("the mapping is not in the state at once:\n%s", ta.readState(state.RecordName("app-example-com")))
	}
	if _, err := os.Stat(filepath.Join(ta.root, "certs", "public", "app-example-com")); err != nil {
		t.Error(err)
	}

	// Regenerate it.
	r1 := rev()
	a = ta.post("/api/v1/mappings/app-example-com/issue", nil)
	var again mappings.Info
	a.json(t, &again)
	if a.status != 200 || again.FingerprintSHA256 == ss.FingerprintSHA256 || again.Status != "valid" || rev() == r1 {
		t.Errorf("issue self-signed: %d %s", a.status, a.body)
	}
	// An empty JSON object is an empty body; a charset may be named.
	a = ta.do(request{method: "POST", path: "/api/v1/mappings/app-example-com/issue", auth: ta.bearer(), contentType: "application/json; charset=utf-8", body: "{}"})
	if a.status != 200 {
		t.Errorf("issue with {}: %d %s", a.status, a.body)
	}

	// Manual, uploaded as PEM.
	kp := selfSigned(t, "up.example.com", "*.up.example.com")
	a = ta.post("/api/v1/mappings", map[string]any{"id": "up", "listener": "api", "hosts": []string{"up.example.com", "*.up.example.com"}, "source": "manual",
		"cert_pem": string(kp.CertPEM), "key_pem": string(kp.KeyPEM)})
	var man mappings.Info
	a.json(t, &man)
	if a.status != 201 || man.Source != "manual" || man.Status != "valid" || man.FingerprintSHA256 != pki.Fingerprint(kp.Cert) {
		t.Fatalf("add manual: %d %s", a.status, a.body)
	}
	if got := ta.readState("certs/public/up/cert.pem"); got != string(kp.CertPEM) {
		t.Errorf("the uploaded certificate is not stored as given")
	}

	// File, by absolute path.
	dir := t.TempDir()
	fkp := selfSigned(t, "file.example.com")
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(certFile, fkp.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, fkp.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	a = ta.post("/api/v1/mappings", map[string]any{"listener": "api", "hosts": []string{"file.example.com"}, "source": "file", "cert_file": certFile, "key_file": keyFile})
	var fm mappings.Info
	a.json(t, &fm)
	if a.status != 201 || fm.Source != "file" || fm.CertFile != certFile || fm.Status != "valid" {
		t.Fatalf("add file: %d %s", a.status, a.body)
	}

	// ACME with DNS-01 and a credential; pending until issued.
	a = ta.post("/api/v1/mappings", map[string]any{"listener": "api", "hosts": []string{"*.acme.example.com", "acme.example.com"}, "source": "acme", "challenge": "dns-01", "dns_credential": "spare"})
	var am struct {
		mappings.Info
		Warnings []string `json:"warnings"`
	}
	a.json(t, &am)
	if a.status != 201 || am.ID != "wildcard-acme-example-com" || am.Status != "pending" || am.Challenge != "dns-01" || am.DNSCredential != "spare" || len(am.Warnings) != 0 {
		t.Fatalf("add acme: %d %s", a.status, a.body)
	}
	if cfg := ta.readState(state.RecordName("wildcard-acme-example-com")); !strings.Contains(cfg, `key_type = 'ec256'`) {
		t.Errorf("key_type is not the command line's default:\n%s", cfg)
	}
	a = ta.get("/api/v1/dns-credentials")
	var creds []dnscred.Info
	a.json(t, &creds)
	if len(creds) != 2 || !slices.Equal(creds[1].UsedBy, []string{"wildcard-acme-example-com"}) {
		t.Errorf("spare is not in use: %s", a.body)
	}

	// A mapping on a disabled credential is added with a warning.
	if a := ta.post("/api/v1/dns-credentials/spare/disable", nil); a.status != 200 {
		t.Fatalf("disable: %d %s", a.status, a.body)
	}
	a = ta.post("/api/v1/mappings", map[string]any{"listener": "api", "hosts": []string{"dis.example.com"}, "source": "acme", "challenge": "dns-01", "dns_credential": "spare"})
	a.json(t, &am)
	if a.status != 201 || len(am.Warnings) != 1 || !strings.Contains(am.Warnings[0], "disabled") {
		t.Errorf("add on a disabled credential: %d %s", a.status, a.body)
	}
	// A profile without an account to check it against: stored, with a
	// warning in the answer.
	a = ta.post("/api/v1/mappings", map[string]any{"listener": "api", "hosts": []string{"prof.example.com"}, "source": "acme", "challenge": "http-01", "profile": "shortlived"})
	a.json(t, &am)
	if a.status != 201 || am.Profile != "shortlived" || len(am.Warnings) != 1 || !strings.Contains(am.Warnings[0], `profile "shortlived" was not checked against the ACME server (there is no ACME account yet)`) {
		t.Errorf("add with an unchecked profile: %d %s", a.status, a.body)
	}
	if a := ta.del("/api/v1/mappings/prof-example-com"); a.status != 200 {
		t.Fatalf("remove: %d %s", a.status, a.body)
	}

	// Issuing an ACME mapping without an account fails at the ACME step:
	// 502, and the attempt is recorded in the mapping.
	a = ta.post("/api/v1/mappings/wildcard-acme-example-com/issue", nil)
	if a.status != 502 {
		t.Fatalf("issue acme without account: %d %s", a.status, a.body)
	}
	if e := a.errorBody(t); !strings.Contains(e.Error, "no ACME account") || e.Hint == "" {
		t.Errorf("issue error %+v", e)
	}
	a = ta.get("/api/v1/mappings/wildcard-acme-example-com")
	var failed mappings.Info
	a.json(t, &failed)
	if failed.Status != "failed" || !strings.Contains(failed.LastError, "no ACME account") || failed.Attempts != 1 || failed.RetryAt == nil {
		t.Errorf("the failed attempt is not recorded: %s", a.body)
	}

	// The list shows them all, in the order of their ids.
	a = ta.get("/api/v1/mappings")
	var list []mappings.Info
	a.json(t, &list)
	var ids []string
	for _, m := range list {
		ids = append(ids, m.ID)
	}
	if want := []string{"app-example-com", "dis-example-com", "file-example-com", "shop", "up", "upload", "wild", "wildcard-acme-example-com"}; !slices.Equal(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}

	// Remove.
	r2 := rev()
	a = ta.del("/api/v1/mappings/up")
	var removed map[string]any
	a.json(t, &removed)
	if a.status != 200 || removed["id"] != "up" || removed["listener"] != "api" || len(removed) != 2 {
		t.Errorf("remove: %d %s", a.status, a.body)
	}
	if _, err := os.Stat(filepath.Join(ta.root, "certs", "public", "up")); !os.IsNotExist(err) {
		t.Errorf("the certificate directory is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ta.root, filepath.FromSlash(state.RecordName("up")))); !os.IsNotExist(err) || rev() == r2 {
		t.Error("the removal is not in the state at once")
	}
	if a := ta.get("/api/v1/mappings/up"); a.status != 404 {
		t.Errorf("show after remove: %d", a.status)
	}
}

// TestAPIDNSCredentials adds, lists, tests, disables, enables and removes
// credentials; the token never comes back.
func TestAPIDNSCredentials(t *testing.T) {
	ta := newTestAPI(t)
	const good, weak = "good-token-0123456789abcdefWXYZ", "weak-token-0123456789abcdefQRST"
	cf := cftest.New(t, cftest.Options{Zones: []string{"example.test"}, Tokens: map[string]cftest.Perms{
		good: {ZoneRead: true, DNSEdit: true},
		weak: {ZoneRead: true},
	}})

	for name, tok := range map[string]string{"good": good, "weak": weak} {
		a := ta.post("/api/v1/dns-credentials", map[string]any{"name": name, "provider": "Cloudflare", "api_token": tok + "\n", "api_base_url": cf.URL})
		var info dnscred.Info
		a.json(t, &info)
		if a.status != 201 || info.Name != name || info.Provider != "cloudflare" || !info.Enabled || info.TokenHint != tok[len(tok)-4:] || info.APIBaseURL != cf.URL {
			t.Fatalf("add %s: %d %s", name, a.status, a.body)
		}
		if strings.Contains(a.body, tok) || strings.Contains(a.body, "api_token") {
			t.Errorf("the token is answered: %s", a.body)
		}
		if a.header.Get("Location") != "/api/v1/dns-credentials/"+name {
			t.Errorf("Location %q", a.header.Get("Location"))
		}
		if got := ta.readState("secrets/dns/" + name + ".token"); got != tok+"\n" {
			t.Errorf("token file of %s holds %q", name, got)
		}
		if strings.Contains(ta.readState(state.ConfigFile), tok) {
			t.Error("the token is in p2ptls.toml")
		}
		fi, err := os.Stat(filepath.Join(ta.root, "secrets", "dns", name+".token"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("token file mode: %v %v", fi, err)
		}
	}

	a := ta.get("/api/v1/dns-credentials")
	var list []dnscred.Info
	a.json(t, &list)
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"cf", "good", "spare", "weak"}) {
		t.Errorf("list: %s", a.body)
	}
	for _, tok := range []string{good, weak, cfToken, spareToken} {
		if strings.Contains(a.body, tok) {
			t.Errorf("list answers a token: %s", a.body)
		}
	}

	// Test: 200 with the result, passed or not.
	a = ta.post("/api/v1/dns-credentials/good/test", nil)
	var res dnscred.TestResult
	a.json(t, &res)
	if a.status != 200 || !res.OK || !slices.Equal(res.Zones, []string{"example.test"}) {
		t.Errorf("test good: %d %s", a.status, a.body)
	}
	a = ta.post("/api/v1/dns-credentials/weak/test", nil)
	res = dnscred.TestResult{}
	a.json(t, &res)
	if a.status != 200 || res.OK || !strings.Contains(a.body, "fail") {
		t.Errorf("test weak: %d %s", a.status, a.body)
	}

	// Disable and enable, twice each (the second is a no-op).
	for _, step := range []struct {
		verb    string
		enabled bool
	}{{"disable", false}, {"disable", false}, {"enable", true}, {"enable", true}} {
		a = ta.post("/api/v1/dns-credentials/good/"+step.verb, nil)
		var info dnscred.Info
		a.json(t, &info)
		if a.status != 200 || info.Enabled != step.enabled {
			t.Errorf("%s: %d %s", step.verb, a.status, a.body)
		}
		if want := "enabled = " + map[bool]string{true: "true", false: "false"}[step.enabled]; !strings.Contains(ta.readState(state.ConfigFile), want) {
			t.Errorf("%s is not in the state", step.verb)
		}
	}

	// Remove: refused while in use, done when not.
	if a := ta.post("/api/v1/mappings", map[string]any{"id": "uses-good", "listener": "api", "hosts": []string{"g.example.test"}, "source": "acme", "challenge": "dns-01", "dns_credential": "good"}); a.status != 201 {
		t.Fatalf("add mapping: %d %s", a.status, a.body)
	}
	before := ta.snapshot()
	a = ta.del("/api/v1/dns-credentials/good")
	if a.status != 409 || !strings.Contains(a.errorBody(t).Error, "uses-good") {
		t.Errorf("remove in use: %d %s", a.status, a.body)
	}
	sameSnapshot(t, before, ta.snapshot())
	if a := ta.del("/api/v1/mappings/uses-good"); a.status != 200 {
		t.Fatalf("remove mapping: %d %s", a.status, a.body)
	}
	a = ta.del("/api/v1/dns-credentials/good")
	var removed dnscred.Info
	a.json(t, &removed)
	if a.status != 200 || removed.Name != "good" {
		t.Errorf("remove: %d %s", a.status, a.body)
	}
	if _, err := os.Stat(filepath.Join(ta.root, "secrets", "dns", "good.token")); !os.IsNotExist(err) {
		t.Errorf("token file left: %v", err)
	}
	if a := ta.post("/api/v1/dns-credentials/good/test", nil); a.status != 404 {
		t.Errorf("test after remove: %d", a.status)
	}
}
