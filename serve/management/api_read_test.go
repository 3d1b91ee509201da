package management

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
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

// getRaw is an authorised GET whose answer need not be JSON.
func (ta *testAPI) getRaw(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	r, err := http.NewRequest("GET", ta.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", ta.bearer())
	resp, err := ta.srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestAPICertificatePEM: GET /api/v1/certificates/{id}/pem is the chain
// serve presents (the leaf of the mapping's certificate file, as GET
// /api/v1/certificates/{id} describes it), as a PEM attachment named
// after the id, never a key: not even for a file mapping whose
// certificate file holds its key too. A mapping without a certificate, or
// none at all, is 404 in JSON.
func TestAPICertificatePEM(t *testing.T) {
	ta := newTestAPI(t)
	dir := t.TempDir()
	kp := selfSigned(t, "both.example.com")
	both := filepath.Join(dir, "both.pem") // the key in the certificate file
	if err := os.WriteFile(both, append(append([]byte{}, kp.KeyPEM...), kp.CertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	if a := ta.post("/api/v1/mappings", map[string]any{"id": "both", "listener": "api", "hosts": []string{"both.example.com"},
		"source": "file", "cert_file": both, "key_file": both}); a.status != 201 {
		t.Fatalf("POST: %d %s", a.status, a.body)
	}
	for _, tc := range []struct{ id, file string }{
		{"shop", filepath.Join(ta.root, filepath.FromSlash(mappings.MappingDir("shop")), mappings.CertFileName)},
		{"upload", filepath.Join(ta.root, filepath.FromSlash(mappings.MappingDir("upload")), mappings.CertFileName)},
		{"both", both},
	} {
		t.Run(tc.id, func(t *testing.T) {
			resp, body := ta.getRaw(t, "/api/v1/certificates/"+tc.id+"/pem")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			for k, want := range map[string]string{"Content-Type": "application/x-pem-file",
				"Content-Disposition": `attachment; filename="` + tc.id + `.pem"`, "Cache-Control": "no-store"} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s %q, want %q", k, got, want)
				}
			}
			if strings.Contains(string(body), "PRIVATE KEY") {
				t.Fatalf("the answer holds a key: %s", body)
			}
			var got []string // fingerprints, leaf first
			for rest := body; len(rest) > 0; {
				var block *pem.Block
				if block, rest = pem.Decode(rest); block == nil || block.Type != "CERTIFICATE" {
					t.Fatalf("the answer is not only CERTIFICATE blocks: %q", body)
				}
				c, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, pki.Fingerprint(c))
			}
			var d mappings.Details
			ta.get("/api/v1/certificates/"+tc.id).json(t, &d)
			var want []string
			for _, c := range d.Chain {
				want = append(want, c.FingerprintSHA256)
			}
			if len(got) == 0 || fmt.Sprint(got) != fmt.Sprint(want) || got[0] != d.FingerprintSHA256 {
				t.Errorf("chain %v, GET /api/v1/certificates/%s has %v", got, tc.id, want)
			}
			onDisk, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			leaf, err := pki.ParseCertChain(onDisk)
			if err != nil || pki.Fingerprint(leaf[0]) != got[0] {
				t.Errorf("leaf %s is not the one serve loads from %s (%v)", got[0], tc.file, err)
			}
		})
	}
	for _, tc := range []struct{ id, want string }{
		{"wild", `mapping "wild" has no certificate (status pending)`},
		{"nope", `mapping "nope" does not exist`},
		{"a%22b", `mapping "a\"b" does not exist`}, // a quote, which the file name must never carry
	} {
		t.Run("404 "+tc.id, func(t *testing.T) {
			a := ta.get("/api/v1/certificates/" + tc.id + "/pem")
			if a.status != 404 || strings.Contains(a.body, "PRIVATE KEY") {
				t.Fatalf("status %d, want 404: %s", a.status, a.body)
			}
			if cd := a.header.Get("Content-Disposition"); cd != "" {
				t.Errorf("Content-Disposition %q on an error", cd)
			}
			if e := a.errorBody(t); !strings.Contains(e.Error, tc.want) {
				t.Errorf("error %q does not say %q", e.Error, tc.want)
			}
		})
	}
}
