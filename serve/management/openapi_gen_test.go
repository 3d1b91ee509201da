package management

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/doctor"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// openapi.json is generated from the table below and the Go types the
// handlers answer with (their JSON tags, by reflection), so that a field
// added to an answer is in the document once it is regenerated:
//
//	go test ./serve/management/ -run TestOpenAPIIsGenerated -update-openapi
//
// TestOpenAPIIsGenerated fails while the committed document differs.

// apiOp is one operation of the API.
type apiOp struct {
	method, path string
	id           string // operationId
	summary      string
	desc         string
	query        []apiParam
	body         *apiBody
	ok           int
	okDesc       string
	okSchema     any    // a Go value whose type is the answer, or a schema (map)
	okType       string // the answer's media type; "" for application/json
	errs         []int  // the error statuses it can answer, besides 401 and 500
}

// apiParam is a query parameter.
type apiParam struct {
	name, desc string
	schema     map[string]any
}

// apiBody is a request body.
type apiBody struct {
	desc     string
	schema   any // as apiOp.okSchema
	required bool
}

// Error statuses of a request with a JSON body (decode, readBody) and of
// a change (the state lock); operation adds 401 (no token) and 500 (the
// state cannot be read) to every operation's.
var (
	errsBody   = []int{400, 413, 415}
	errsChange = []int{503}
)

func errs(lists ...[]int) []int {
	var out []int
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// rotation bodies: the anonymous structs the rotation handlers decode.
var (
	rotationStart  = object(map[string]any{"overlap": str(`how long agents get to fetch the bundle: a positive duration such as "30d", "14d" or "720h" (default 30 days)`)})
	rotationSwitch = object(map[string]any{"confirm_agents_updated": boolean("needed for a CA that predates rotation: every agent has the bundle")})
	rotationFinish = object(map[string]any{"keep_old_key": boolean("keep the old CA's key beside the new one")})
	noInput        = map[string]any{"type": "object", "additionalProperties": false, "description": "no body, or an empty JSON object"}
)

// apiOps is every operation of the API, in the README's order.
var apiOps = []apiOp{
	{method: "GET", path: "/api/v1/status", id: "getStatus", summary: "What p2ptls status prints",
		desc: "serve's listeners, reloads, fallback hits, its ACME back-off count and, on a shared store, every replica.",
		ok:   200, okDesc: "the running serve", okSchema: runstatus.Reported{}},
	{method: "GET", path: "/api/v1/listeners", id: "listListeners", summary: "What listener list prints",
		ok: 200, okDesc: "every listener, in config order", okSchema: []state.Listener{}},
	{method: "GET", path: "/api/v1/mappings", id: "listMappings", summary: "Every mapping, or one page of them",
		desc: "Without parameters, or with listener alone, every mapping as a JSON array in config order (what mapping list prints). " +
			"Any of q, status, source, limit or cursor asks for one page instead: {\"items\",\"next_cursor\"}, ordered by listener, then id. " +
			"For the next page send next_cursor unchanged with the same listener, q, status and source; it is \"\" on the last page. " +
			"An unknown or repeated parameter, a bad value and a cursor that was changed or belongs to other filters are 400.",
		query: []apiParam{
			{"listener", "only the mappings of this listener", str("")},
			{"q", "a part of the id or of a host, in any case", str("")},
			{"status", "only the mappings of this status", enum(mappings.Statuses)},
			{"source", "only the mappings of this certificate source", enum(mappings.Sources)},
			{"limit", fmt.Sprintf("mappings per page, 1 to %d (default %d)", maxPageLimit, defaultPageLimit),
				map[string]any{"type": "integer", "minimum": 1, "maximum": maxPageLimit, "default": defaultPageLimit}},
			{"cursor", "next_cursor of the previous page; \"\" or absent for the first", str("")},
		},
		ok: 200, okDesc: "every mapping (an array), or one page (with a paging parameter)",
		okSchema: map[string]any{"oneOf": []any{
			map[string]any{"type": "array", "items": ref("Mapping")},
			ref("MappingPage"),
		}},
		errs: []int{400, 404}},
	{method: "POST", path: "/api/v1/mappings", id: "addMapping", summary: "Add a mapping, as mapping add",
		desc: "The fields of the source only: cert_pem and key_pem (manual), cert_file and key_file as absolute paths on the management host (file), " +
			"days (self-signed), challenge, dns_credential, key_type and profile (acme). The Location header names the new mapping.",
		body: &apiBody{desc: "the mapping, as a line of mapping export", schema: mappings.Record{}, required: true},
		ok:   201, okDesc: "the mapping as added, with the warnings the command line prints", okSchema: mappingCreated{},
		errs: errs(errsBody, []int{409, 422}, errsChange)},
	{method: "GET", path: "/api/v1/mapping-counts", id: "countMappings", summary: "How many mappings per status and per listener",
		desc:  "Every status key is always there, zeros included; listeners in config order, those without mappings too. Not under /api/v1/mappings/{id}: an id may be \"counts\".",
		query: []apiParam{{"listener", "only this listener's mappings", str("")}},
		ok:    200, okDesc: "the counts", okSchema: mappings.Counts{},
		errs: []int{400}},
	{method: "GET", path: "/api/v1/mappings/{id}", id: "showMapping", summary: "One mapping with its certificate, as mapping show",
		ok: 200, okDesc: "the mapping; certificate is null while it has none", okSchema: mappingShown{},
		errs: []int{404}},
	{method: "PATCH", path: "/api/v1/mappings/{id}", id: "patchMapping", summary: "Change a mapping in place, as mapping set",
		desc: "A field left out stays as it is; hosts replace the hosts as a whole; \"\" clears upstream, dns_credential and profile, and is ec256 for key_type. " +
			"New hosts or any ACME setting make an ACME mapping due for a new order.",
		body: &apiBody{desc: "what changes", schema: mappingPatch{}, required: true},
		ok:   200, okDesc: "the mapping as saved, with warnings", okSchema: mappingCreated{},
		errs: errs(errsBody, []int{404, 409, 422}, errsChange)},
	{method: "DELETE", path: "/api/v1/mappings/{id}", id: "removeMapping", summary: "Remove a mapping and its certificate files, as mapping remove",
		ok: 200, okDesc: "what was removed", okSchema: mappingRemoved{},
		errs: errs([]int{404}, errsChange)},
	{method: "POST", path: "/api/v1/mappings/{id}/issue", id: "issueMapping", summary: "Issue or renew now, as cert issue ID",
		desc: "An ACME order for an ACME mapping, a new certificate for a self-signed one. A failed ACME attempt is 502 and is recorded in the mapping " +
			"(last_error, attempts, retry_at); the previous certificate keeps serving. Manual and file mappings are 409: p2ptls cannot renew them.",
		body: &apiBody{desc: "none", schema: noInput},
		ok:   200, okDesc: "the mapping after issuance, with warnings", okSchema: mappingCreated{},
		errs: errs(errsBody, []int{404, 409, 422, 502}, errsChange)},
	{method: "GET", path: "/api/v1/certificates/{id}", id: "showCertificate", summary: "The certificate of a mapping, as cert show",
		ok: 200, okDesc: "the leaf's details and the chain", okSchema: mappings.Details{},
		errs: []int{404}},
	{method: "GET", path: "/api/v1/certificates/{id}/pem", id: "downloadCertificate", summary: "The certificate chain of a mapping as a PEM file",
		desc: "Leaf first, CERTIFICATE blocks only (never a key), as an attachment named <id>.pem.",
		ok:   200, okDesc: "the chain", okType: "application/x-pem-file", okSchema: map[string]any{"type": "string"},
		errs: []int{404}},
	{method: "GET", path: "/api/v1/dns-credentials", id: "listDNSCredentials", summary: "What dns-credential list prints (token_hint only)",
		ok: 200, okDesc: "every DNS credential", okSchema: []dnscred.Info{}},
	{method: "POST", path: "/api/v1/dns-credentials", id: "addDNSCredential", summary: "Add a DNS credential, as dns-credential add",
		desc: "The token is stored in a 0600 file and never answered or logged.",
		body: &apiBody{desc: "the credential and its token", schema: dnsCredentialRequest{}, required: true},
		ok:   201, okDesc: "the credential as listed", okSchema: dnscred.Info{},
		errs: errs(errsBody, []int{409, 422}, errsChange)},
	{method: "DELETE", path: "/api/v1/dns-credentials/{name}", id: "removeDNSCredential", summary: "Remove a DNS credential; 409 while a mapping uses it",
		ok: 200, okDesc: "what was removed", okSchema: dnscred.Info{},
		errs: errs([]int{404, 409}, errsChange)},
	{method: "POST", path: "/api/v1/dns-credentials/{name}/enable", id: "enableDNSCredential", summary: "Enable a DNS credential",
		body: &apiBody{desc: "none", schema: noInput},
		ok:   200, okDesc: "the credential", okSchema: dnscred.Info{},
		errs: errs(errsBody, []int{404}, errsChange)},
	{method: "POST", path: "/api/v1/dns-credentials/{name}/disable", id: "disableDNSCredential", summary: "Disable a DNS credential",
		body: &apiBody{desc: "none", schema: noInput},
		ok:   200, okDesc: "the credential", okSchema: dnscred.Info{},
		errs: errs(errsBody, []int{404}, errsChange)},
	{method: "POST", path: "/api/v1/dns-credentials/{name}/test", id: "testDNSCredential", summary: "Test a DNS credential against its provider, as dns-credential test",
		desc: "A test that ran is 200 whether the credential passed or not (ok, and each check says which permission is missing); only a test that could not run is an error.",
		body: &apiBody{desc: "none", schema: noInput},
		ok:   200, okDesc: "the result", okSchema: dnscred.TestResult{},
		errs: errs(errsBody, []int{404, 409, 422})},
	{method: "GET", path: "/api/v1/acme/accounts", id: "listACMEAccounts", summary: "What acme account list prints",
		ok: 200, okDesc: "every ACME account", okSchema: []acme.Account{}},
	{method: "GET", path: "/api/v1/acme/profiles", id: "listACMEProfiles", summary: "The profiles the issuing account's ACME server offers",
		desc: "Always 200: when they cannot be read, profiles is null and error says why.",
		ok:   200, okDesc: "the profiles, by name", okSchema: acmeProfiles{}},
	{method: "GET", path: "/api/v1/doctor", id: "runDoctor", summary: "What doctor --output json prints",
		desc: "200 whatever the report says.",
		query: []apiParam{
			{"strict", "a warning fails the report too", boolean("")},
			{"network", "also connect to MANAGEMENT_PUBLIC_URL", boolean("")},
		},
		ok: 200, okDesc: "the report", okSchema: doctor.Report{},
		errs: []int{400}},
	{method: "GET", path: "/api/v1/management", id: "showManagement", summary: "The management TLS panel: ca show, agent env and ca rotate status",
		ok: 200, okDesc: "the panel", okSchema: managementDoc{},
		errs: []int{404, 409, 422}},
	{method: "POST", path: "/api/v1/management/rotation/start", id: "startRotation", summary: "ca rotate start",
		body: &apiBody{desc: "optional", schema: rotationStart},
		ok:   200, okDesc: "the panel after the step", okSchema: stepDoc{},
		errs: errs(errsBody, []int{409, 422}, errsChange)},
	{method: "POST", path: "/api/v1/management/rotation/switch", id: "switchRotation", summary: "ca rotate switch",
		body: &apiBody{desc: "optional", schema: rotationSwitch},
		ok:   200, okDesc: "the panel after the step", okSchema: stepDoc{},
		errs: errs(errsBody, []int{409, 422}, errsChange)},
	{method: "POST", path: "/api/v1/management/rotation/finish", id: "finishRotation", summary: "ca rotate finish",
		body: &apiBody{desc: "optional", schema: rotationFinish},
		ok:   200, okDesc: "the panel after the step", okSchema: stepDoc{},
		errs: errs(errsBody, []int{409, 422}, errsChange)},
	{method: "POST", path: "/api/v1/management/rotation/abort", id: "abortRotation", summary: "ca rotate abort",
		body: &apiBody{desc: "none", schema: noInput},
		ok:   200, okDesc: "the panel after the step", okSchema: stepDoc{},
		errs: errs(errsBody, []int{409, 422}, errsChange)},
	{method: "GET", path: "/api/v1/openapi.json", id: "getOpenAPI", summary: "This document",
		ok: 200, okDesc: "the OpenAPI 3.1 document of the API", okSchema: map[string]any{"type": "object"}},
}

// schemaNames names the component schemas of the Go types; a struct type
// not named here is inlined where it occurs.
var schemaNames = map[reflect.Type]string{
	reflect.TypeFor[mappings.Info]():           "Mapping",
	reflect.TypeFor[mappingPage]():             "MappingPage",
	reflect.TypeFor[mappingCreated]():          "MappingWithWarnings",
	reflect.TypeFor[mappingShown]():            "MappingWithCertificate",
	reflect.TypeFor[mappingRemoved]():          "MappingRemoved",
	reflect.TypeFor[mappings.Record]():         "MappingRequest",
	reflect.TypeFor[mappingPatch]():            "MappingPatch",
	reflect.TypeFor[mappings.Details]():        "CertificateDetails",
	reflect.TypeFor[mappings.ChainCert]():      "ChainCertificate",
	reflect.TypeFor[mappings.Counts]():         "MappingCounts",
	reflect.TypeFor[mappings.ListenerCounts](): "ListenerCounts",
	reflect.TypeFor[mappings.StatusCounts]():   "StatusCounts",
	reflect.TypeFor[state.Listener]():          "Listener",
	reflect.TypeFor[dnscred.Info]():            "DNSCredential",
	reflect.TypeFor[dnsCredentialRequest]():    "DNSCredentialRequest",
	reflect.TypeFor[dnscred.TestResult]():      "DNSCredentialTest",
	reflect.TypeFor[acme.Account]():            "ACMEAccount",
	reflect.TypeFor[acmeProfiles]():            "ACMEProfiles",
	reflect.TypeFor[doctor.Report]():           "DoctorReport",
	reflect.TypeFor[runstatus.Reported]():      "Status",
	reflect.TypeFor[runstatus.Status]():        "ServeStatus",
	reflect.TypeFor[managementDoc]():           "Management",
	reflect.TypeFor[statemgmt.Info]():          "ManagementTLS",
	reflect.TypeFor[statemgmt.CertInfo]():      "ManagementCertificate",
	reflect.TypeFor[statemgmt.RotationInfo]():  "Rotation",
	reflect.TypeFor[stepDoc]():                 "RotationStep",
	reflect.TypeFor[apiError]():                "Error",
}

// fieldNotes add to the schema of a field ("Schema.field") what its Go
// type cannot say: the values it takes, what it means.
var fieldNotes = func() map[string]map[string]any {
	challenges := []string{state.ChallengeHTTP01, state.ChallengeTLSALPN01, state.ChallengeDNS01}
	keyTypes := []string{mappings.DefaultKeyType, "ec384", "rsa2048", "rsa4096"}
	return map[string]map[string]any{
		"Mapping.status":                 {"enum": mappings.Statuses},
		"Mapping.source":                 {"enum": mappings.Sources},
		"Mapping.challenge":              {"enum": append([]string{""}, challenges...), "description": `ACME only; "" for the other sources`},
		"Mapping.key_type":               {"enum": append([]string{""}, keyTypes...), "description": `ACME: the key of every order; "" for the other sources`},
		"Mapping.served_by":              {"description": "while the mapping has no usable certificate: the wildcard mapping(s) of the same listener serving its hosts, joined by \",\"; \"\" otherwise"},
		"Mapping.last_error":             {"description": "one line; last_error_detail has the full text"},
		"MappingRequest.source":          {"enum": mappings.Sources},
		"MappingRequest.challenge":       {"enum": challenges},
		"MappingRequest.key_type":        {"enum": keyTypes, "default": mappings.DefaultKeyType},
		"MappingRequest.cert_file":       {"description": "source file: an absolute path on the management host"},
		"MappingRequest.key_file":        {"description": "source file: an absolute path on the management host"},
		"MappingRequest.cert_pem":        {"description": "source manual: the chain, leaf first"},
		"MappingRequest.key_pem":         {"description": "source manual: the leaf's private key"},
		"MappingRequest.days":            {"description": "source self-signed: validity in days", "minimum": 1, "maximum": mappings.MaxDays},
		"MappingPatch.challenge":         {"enum": challenges},
		"MappingPatch.key_type":          {"enum": append([]string{""}, keyTypes...), "description": `"" is ec256`},
		"MappingPage.next_cursor":        {"description": `the cursor of the next page; "" on the last`},
		"DNSCredential.token_hint":       {"description": "the token's last four characters"},
		"DNSCredentialRequest.name":      {"pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
		"DNSCredentialRequest.provider":  {"enum": []string{state.ProviderCloudflare}},
		"DNSCredentialRequest.api_token": {"description": "stored in a 0600 file; never answered or logged", "writeOnly": true},
	}
}()

// errorResponses describe the error statuses; see the table in api_common.go.
var errorResponses = map[int]string{
	400: "the request is not usable: malformed JSON, an unknown or repeated field, a field of the wrong type, a bad query parameter",
	401: "missing, unknown or revoked admin token (or an expired UI session)",
	404: "the resource named in the path does not exist",
	409: "the current state refuses a well-formed request: a name in use, a credential in use, a certificate p2ptls cannot renew, a rotation step the stage does not allow",
	413: fmt.Sprintf("the body is larger than %d bytes", maxBodyBytes),
	415: "a body that is not Content-Type application/json",
	422: "well-formed JSON whose content the state code refuses: a bad hostname, PEM that does not parse or match its key, a wildcard without DNS-01, a missing listener or DNS credential",
	500: "the state could not be read (an I/O error, a p2ptls.toml broken by a hand edit)",
	502: "the ACME issuance attempt failed; it is recorded as the mapping's last_error",
	503: "the state directory stayed locked past the lock timeout; see Retry-After",
}

// openAPIDocument builds the document.
func openAPIDocument() map[string]any {
	g := &schemaGen{schemas: map[string]any{}}
	for t := range schemaNames { // every named schema, also those only a literal refers to
		g.schema(t)
	}
	paths := map[string]any{}
	for _, op := range apiOps {
		item, _ := paths[op.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[op.path] = item
		}
		item[strings.ToLower(op.method)] = g.operation(op)
	}
	responses := map[string]any{}
	for code, desc := range errorResponses {
		responses[statusName(code)] = map[string]any{
			"description": desc,
			"content":     map[string]any{"application/json": map[string]any{"schema": g.schema(reflect.TypeFor[apiError]())}},
		}
	}
	responses["MethodNotAllowed"] = map[string]any{
		"description": "the path exists, but not with this method; the Allow header lists its methods (any path of this document answers it for a method it does not list)",
		"headers":     map[string]any{"Allow": map[string]any{"schema": str("")}},
		"content":     map[string]any{"application/json": map[string]any{"schema": ref("Error")}},
	}
	responses["NoSuchEndpoint"] = map[string]any{
		"description": "404 for a path under /api/v1 that is not in this document",
		"content":     map[string]any{"application/json": map[string]any{"schema": ref("Error")}},
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "p2ptls management API",
			"version": "1",
			"description": "The JSON API of p2ptls serve's management listener. Bodies and answers use the field names of the command line's --output json; " +
				"changes go through the same state code, lock and validation as the command line. " +
				"Every error is {\"error\",\"hint\"}, the hint in the API's words (JSON fields, routes). " +
				"A path of this document with a method it does not list is 405 with Allow; a path under /api/v1 it does not list is 404. " +
				"Unauthenticated, outside /api/v1: GET /healthz and GET /ca.crt.",
		},
		"servers":  []any{map[string]any{"url": "/", "description": "the management listener (MANAGEMENT_PUBLIC_URL)"}},
		"security": []any{map[string]any{"bearerToken": []any{}}, map[string]any{"uiSession": []any{}}},
		"paths":    paths,
		"components": map[string]any{
			"schemas":   g.schemas,
			"responses": responses,
			"securitySchemes": map[string]any{
				"bearerToken": map[string]any{"type": "http", "scheme": "bearer",
					"description": "an admin token: p2ptls admin token create NAME"},
				"uiSession": map[string]any{"type": "apiKey", "in": "cookie", "name": sessionCookie,
					"description": "the web UI's session (POST /ui/login); a change needs its CSRF token in the " + csrfHeader + " header as well"},
			},
		},
	}
}

// tagOf groups an operation by the first segment of its path under
// /api/v1: the mappings with their counts, the certificates, ….
func tagOf(path string) string {
	seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/api/v1/"), "/")
	switch seg {
	case "mapping-counts":
		return "mappings"
	case "openapi.json":
		return "openapi"
	}
	return seg
}

// statusName is the components/responses name of an error status.
func statusName(code int) string {
	return strings.ReplaceAll(http.StatusText(code), " ", "")
}

// pathParams are the {names} of a path.
var pathParams = regexp.MustCompile(`\{([a-z]+)\}`)

func (g *schemaGen) operation(op apiOp) map[string]any {
	o := map[string]any{"operationId": op.id, "summary": op.summary, "tags": []string{tagOf(op.path)}}
	if op.desc != "" {
		o["description"] = op.desc
	}
	var params []any
	for _, m := range pathParams.FindAllStringSubmatch(op.path, -1) {
		desc := "the mapping's id"
		if m[1] == "name" {
			desc = "the DNS credential's name"
		}
		params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "description": desc,
			"schema": map[string]any{"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"}})
	}
	for _, q := range op.query {
		params = append(params, map[string]any{"name": q.name, "in": "query", "description": q.desc, "schema": q.schema})
	}
	if params != nil {
		o["parameters"] = params
	}
	if op.body != nil {
		o["requestBody"] = map[string]any{"description": op.body.desc, "required": op.body.required,
			"content": map[string]any{"application/json": map[string]any{"schema": g.of(op.body.schema)}}}
	}
	okType := op.okType
	if okType == "" {
		okType = "application/json"
	}
	ok := map[string]any{"description": op.okDesc, "content": map[string]any{okType: map[string]any{"schema": g.of(op.okSchema)}}}
	if op.ok == http.StatusCreated {
		ok["headers"] = map[string]any{"Location": map[string]any{"description": "the new resource", "schema": str("")}}
	}
	if op.okType != "" {
		ok["headers"] = map[string]any{"Content-Disposition": map[string]any{"schema": str(`attachment; filename="<id>.pem"`)}}
	}
	responses := map[string]any{fmt.Sprint(op.ok): ok}
	for _, code := range append([]int{401, 500}, op.errs...) {
		responses[fmt.Sprint(code)] = map[string]any{"$ref": "#/components/responses/" + statusName(code)}
	}
	o["responses"] = responses
	return o
}

// schemaGen makes JSON Schemas of Go types, collecting the named ones.
type schemaGen struct {
	schemas map[string]any
}

// of is the schema of v: a schema as it is, or that of v's Go type.
func (g *schemaGen) of(v any) any {
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return g.schema(reflect.TypeOf(v))
}

var timeType = reflect.TypeFor[time.Time]()

// schema is t's schema; a pointer is nullable, as encoding/json writes nil.
func (g *schemaGen) schema(t reflect.Type) any {
	if t.Kind() == reflect.Pointer {
		return map[string]any{"oneOf": []any{g.schema(t.Elem()), map[string]any{"type": "null"}}}
	}
	if t == timeType {
		return map[string]any{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name, named := schemaNames[t]
		if !named {
			return g.object(t, "")
		}
		if _, done := g.schemas[name]; !done {
			g.schemas[name] = nil // a recursive type refers to itself
			g.schemas[name] = g.object(t, name)
		}
		return ref(name)
	}
	panic(fmt.Sprintf("openapi: no schema for %v", t))
}

// object is the schema of struct t, component name (or ""): its fields by
// JSON name with their fieldNotes, those without omitempty required; an
// embedded named struct is an allOf of its schema.
func (g *schemaGen) object(t reflect.Type, name string) map[string]any {
	props := map[string]any{}
	var required []string
	var embedded []any
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("json")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		field, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && field == "" {
			base := ft
			if base.Kind() == reflect.Pointer {
				base = base.Elem()
			}
			if _, named := schemaNames[base]; named {
				embedded = append(embedded, g.schema(base))
				continue
			}
			sub := g.object(base, name)
			for k, v := range sub["properties"].(map[string]any) {
				props[k] = v
			}
			if r, ok := sub["required"].([]string); ok {
				required = append(required, r...)
			}
			continue
		}
		if !ok || field == "" {
			field = f.Name
		}
		prop := g.schema(ft)
		if note := fieldNotes[name+"."+field]; note != nil {
			merged := map[string]any{}
			for k, v := range prop.(map[string]any) {
				merged[k] = v
			}
			for k, v := range note {
				merged[k] = v
			}
			prop = merged
		}
		props[field] = prop
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			required = append(required, field)
		}
	}
	obj := map[string]any{"type": "object", "properties": props}
	if required != nil {
		obj["required"] = required
	}
	if embedded == nil {
		return obj
	}
	return map[string]any{"allOf": append(embedded, obj)}
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func str(desc string) map[string]any {
	s := map[string]any{"type": "string"}
	if desc != "" {
		s["description"] = desc
	}
	return s
}

func boolean(desc string) map[string]any {
	s := map[string]any{"type": "boolean"}
	if desc != "" {
		s["description"] = desc
	}
	return s
}

func enum(values []string) map[string]any {
	return map[string]any{"type": "string", "enum": values}
}

func object(props map[string]any) map[string]any {
	return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
}

// marshalOpenAPI is the document as committed: indented, a final newline.
func marshalOpenAPI() []byte {
	b, err := json.MarshalIndent(openAPIDocument(), "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}
