package management

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/serve/edge"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/dnscred"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
)

var updateOpenAPI = flag.Bool("update-openapi", false, "write serve/management/openapi.json from openapi_gen_test.go")

// TestOpenAPIIsGenerated: the committed document is what the generator
// makes of the table and the handlers' types today.
func TestOpenAPIIsGenerated(t *testing.T) {
	want := marshalOpenAPI()
	if *updateOpenAPI {
		if err := os.WriteFile("openapi.json", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(openAPIDoc, want) {
		t.Fatal("openapi.json is out of date: go test ./serve/management/ -run TestOpenAPIIsGenerated -update-openapi")
	}
}

// openAPI is the committed document, decoded.
func openAPI(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(openAPIDoc))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// operations are the documented operations: "METHOD path" → operation.
func operations(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	ops := map[string]map[string]any{}
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			ops[strings.ToUpper(method)+" "+path] = op.(map[string]any)
		}
	}
	return ops
}

// (a) The document is OpenAPI 3.1.0 and every $ref points into it.
func TestOpenAPIDocument(t *testing.T) {
	doc := openAPI(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi is %v, want 3.1.0", doc["openapi"])
	}
	for _, k := range []string{"info", "paths", "components", "security"} {
		if doc[k] == nil {
			t.Errorf("the document has no %s", k)
		}
	}
	refs := 0
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if r, ok := v["$ref"].(string); ok {
				refs++
				if _, err := resolve(doc, r); err != nil {
					t.Errorf("%s: $ref %q: %v", where, r, err)
				}
			}
			for k, e := range v {
				walk(where+"/"+k, e)
			}
		case []any:
			for i, e := range v {
				walk(where+"/"+strconv.Itoa(i), e)
			}
		}
	}
	walk("#", doc)
	if refs < 50 {
		t.Errorf("only %d $refs: the walk misses them", refs)
	}
	if _, err := resolve(doc, "#/components/schemas/Nope"); err == nil {
		t.Error("resolve finds a schema that is not there")
	}
	// Every operation can answer 401 and lists its success.
	for key, op := range operations(t, doc) {
		responses := op["responses"].(map[string]any)
		if responses["401"] == nil || !slices.ContainsFunc([]string{"200", "201"}, func(c string) bool { return responses[c] != nil }) {
			t.Errorf("%s: responses %v lack 401 or a success", key, responses)
		}
	}
}

// resolve follows a local JSON pointer ("#/a/b") in doc.
func resolve(doc map[string]any, ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	var v any = doc
	for _, part := range strings.Split(p, "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok || m[part] == nil {
			return nil, fmt.Errorf("no %q", part)
		}
		v = m[part]
	}
	return v, nil
}

// (b) The documented operations are exactly the routes the router has
// under /api/v1 (the catch-all aside).
func TestOpenAPIRoutes(t *testing.T) {
	_, patterns := newRoutes(t.Context(), Options{})
	var routes []string
	for _, p := range patterns {
		method, path, ok := strings.Cut(p, " ")
		if ok && strings.HasPrefix(path, "/api/v1/") {
			routes = append(routes, method+" "+path)
		} else if strings.HasPrefix(p, "/api/v1/") && p != catchAll {
			t.Errorf("route %q has no method: it cannot be documented", p)
		}
	}
	var documented []string
	for key := range operations(t, openAPI(t)) {
		documented = append(documented, key)
	}
	slices.Sort(routes)
	slices.Sort(documented)
	if len(routes) < 25 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.json documents %s, which the router does not have", d)
		}
	}
}

// (c) Every documented operation answers on a live management listener
// (TLS, mode auto) with a status the document lists for it, never the
// catch-all's 404 or a 405: first refused (a path naming nothing, a body
// with an unknown field, a body that is not JSON, no token), then as it
// is meant to be called. The {id} of a path is a fixture mapping, the
// {name} a DNS credential pointing at a closed port on 127.0.0.1; the
// calls that would change the management CA send a field it refuses, and
// the removals run last.
func TestOpenAPIOperationsAnswer(t *testing.T) {
	ta := newTestAPI(t)
	ctx := t.Context()
	// A DNS credential that only a closed port on 127.0.0.1 answers for:
	// testing it contacts nothing else.
	local := state.DNSCredential{Name: "local", Provider: "cloudflare", Enabled: true, APIBaseURL: "http://127.0.0.1:1"}
	if err := dnscred.Add(ctx, ta.store, local, "local-test-token-0000"); err != nil {
		t.Fatal(err)
	}
	ls := startLive(t, ta, statemgmt.ModeAuto, edge.Limits{})
	ops := operations(t, openAPI(t))
	var keys []string
	for k := range ops {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { // removals last
		return strings.Compare(fmt.Sprint(strings.HasPrefix(a, "DELETE"), a), fmt.Sprint(strings.HasPrefix(b, "DELETE"), b))
	})
	// call sends one request for operation key and checks that its
	// status is documented; it returns the status.
	call := func(key, path string, hdr map[string]string, body string) int {
		t.Helper()
		method, _, _ := strings.Cut(key, " ")
		resp, answer := ls.do(method, path, hdr, body)
		documented := ops[key]["responses"].(map[string]any)
		if resp.StatusCode == http.StatusMethodNotAllowed || strings.Contains(answer, "no such API endpoint") {
			t.Errorf("%s %s: no route: %d %.200s", method, path, resp.StatusCode, answer)
		}
		listed, _ := documented[strconv.Itoa(resp.StatusCode)].(map[string]any)
		if listed == nil {
			t.Errorf("%s %s: %d, which the document does not list (%v): %.300s", method, path, resp.StatusCode, keysOf(documented), answer)
			return resp.StatusCode
		}
		// Every answer has the documented media type.
		content, _ := listed["content"].(map[string]any)
		if content == nil { // a $ref to components/responses
			content = map[string]any{"application/json": true}
		}
		if ct := resp.Header.Get("Content-Type"); content[ct] == nil {
			t.Errorf("%s %s: Content-Type %q, the document has %v", method, path, ct, keysOf(content))
		}
		return resp.StatusCode
	}
	auth := func(more ...string) map[string]string {
		h := map[string]string{"Authorization": ta.bearer()}
		for i := 0; i+1 < len(more); i += 2 {
			h[more[i]] = more[i+1]
		}
		return h
	}
	for _, key := range keys {
		method, path, _ := strings.Cut(key, " ")
		concretePath := strings.NewReplacer("{id}", "shop", "{name}", "local").Replace(path)
		_, hasBody := ops[key]["requestBody"]
		type refusal struct {
			what, path string
			hdr        map[string]string
			body       string
		}
		refusals := []refusal{{"no token", concretePath, nil, ""}}
		if strings.Contains(path, "{") {
			refusals = append(refusals, refusal{"a path naming nothing", strings.NewReplacer("{id}", "nope", "{name}", "nope").Replace(path), auth(), ""})
		}
		if hasBody {
			refusals = append(refusals,
				refusal{"an unknown field", concretePath, auth("Content-Type", "application/json"), `{"walk":true}`},
				refusal{"a body that is not JSON", concretePath, auth("Content-Type", "text/plain"), "{}"})
		}
		for _, r := range refusals {
			if code := call(key, r.path, r.hdr, r.body); code < 400 {
				t.Errorf("%s %s with %s: %d, want a refusal", method, r.path, r.what, code)
			}
		}
		body := ""
		hdr := auth()
		switch {
		case strings.HasPrefix(path, routeRotation) && method == "POST":
			hdr["Content-Type"], body = "application/json", `{"walk":true}`
		case method == "POST" && strings.HasSuffix(path, "/mappings"):
			hdr["Content-Type"], body = "application/json", `{"listener":"api","hosts":["doc.example.com"],"source":"self-signed"}`
		case method == "POST" && strings.HasSuffix(path, "/dns-credentials"):
			hdr["Content-Type"], body = "application/json", `{"name":"doc","provider":"cloudflare","api_token":"doc-token-1234","api_base_url":"http://127.0.0.1:1"}`
		case method == "PATCH":
			hdr["Content-Type"], body = "application/json", `{"upstream":"http://127.0.0.1:8080"}`
		}
		if code := call(key, concretePath, hdr, body); code >= 300 && !strings.HasPrefix(path, routeRotation) {
			t.Errorf("%s %s: %d, want a success", method, concretePath, code)
		}
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// jsonFields are the JSON names of struct t's fields, those of embedded
// structs included, by their tags (independent of the generator).
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-":
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case name != "":
			out = append(out, name)
		default:
			out = append(out, f.Name)
		}
	}
	slices.Sort(out)
	return out
}

// (d) The schemas of the mapping and of the request bodies list exactly
// the JSON fields of their Go types: a field added to mappings.Info and
// not to the document fails here.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	schemas := openAPI(t)["components"].(map[string]any)["schemas"].(map[string]any)
	for _, tc := range []struct {
		schema string
		typ    reflect.Type
	}{
		{"Mapping", reflect.TypeFor[mappings.Info]()},
		{"MappingRequest", reflect.TypeFor[mappings.Record]()},
		{"MappingPatch", reflect.TypeFor[mappingPatch]()},
		{"MappingPage", reflect.TypeFor[mappingPage]()},
		{"MappingCounts", reflect.TypeFor[mappings.Counts]()},
		{"StatusCounts", reflect.TypeFor[mappings.StatusCounts]()},
		{"CertificateDetails", reflect.TypeFor[mappings.Details]()},
		{"DNSCredentialRequest", reflect.TypeFor[dnsCredentialRequest]()},
		{"Error", reflect.TypeFor[apiError]()},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			s, ok := schemas[tc.schema].(map[string]any)
			if !ok {
				t.Fatalf("no schema %s", tc.schema)
			}
			got := keysOf(s["properties"].(map[string]any))
			if want := jsonFields(tc.typ); !slices.Equal(got, want) {
				t.Errorf("schema %s has properties\n%v\nthe type %v has JSON fields\n%v", tc.schema, got, tc.typ, want)
			}
		})
	}
	if len(jsonFields(reflect.TypeFor[mappings.Info]())) < 25 || !slices.Contains(jsonFields(reflect.TypeFor[mappings.Info]()), "key_type") {
		t.Error("jsonFields misses the fields of mappings.Info")
	}
}

// Every note of the generator lands on a field the document has.
func TestOpenAPIFieldNotesApply(t *testing.T) {
	schemas := openAPI(t)["components"].(map[string]any)["schemas"].(map[string]any)
	for key := range fieldNotes {
		name, field, _ := strings.Cut(key, ".")
		s, _ := schemas[name].(map[string]any)
		if props, _ := s["properties"].(map[string]any); props[field] == nil {
			t.Errorf("fieldNotes[%q]: the document has no schema %s with a field %s", key, name, field)
		}
	}
}

// TestOpenAPIServed: GET /api/v1/openapi.json is the document, to an
// authenticated client only.
func TestOpenAPIServed(t *testing.T) {
	ta := newTestAPI(t)
	a := ta.get("/api/v1/openapi.json")
	if a.status != 200 || a.body != string(openAPIDoc) {
		t.Errorf("GET /api/v1/openapi.json: %d, %d bytes of %d", a.status, len(a.body), len(openAPIDoc))
	}
	if a := ta.do(request{method: "GET", path: "/api/v1/openapi.json"}); a.status != 401 {
		t.Errorf("without a token: %d", a.status)
	}
}
