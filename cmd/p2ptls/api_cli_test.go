package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// apiCall sends a JSON request to the management API of a running serve.
func apiCall(t *testing.T, c *http.Client, method, url, token string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIAndCLIShareTheState: a change made through the API of a running
// serve is in the state at once for the command line, and the other way
// round; both print the same JSON for the same mappings.
func TestAPIAndCLIShareTheState(t *testing.T) {
	env, api, client, token := apiServe(t)

	cliList := func() []map[string]any {
		t.Helper()
		r := p2ptls(t, env, "mapping", "list", "--output", "json")
		var list []map[string]any
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil {
			t.Fatalf("mapping list: exit %d %q %s", r.code, r.stdout, r.stderr)
		}
		return list
	}
	apiList := func() []map[string]any {
		t.Helper()
		code, body := apiCall(t, client, "GET", api+"/mappings", token, nil)
		var list []map[string]any
		if code != 200 || json.Unmarshal([]byte(body), &list) != nil {
			t.Fatalf("GET /mappings: %d %s", code, body)
		}
		return list
	}
	ids := func(list []map[string]any) []string {
		var ids []string
		for _, m := range list {
			ids = append(ids, m["id"].(string))
		}
		return ids
	}

	// API → command line.
	code, body := apiCall(t, client, "POST", api+"/mappings", token,
		map[string]any{"listener": "web", "hosts": []string{"api.example.test"}, "source": "self-signed"})
	if code != 201 {
		t.Fatalf("POST /mappings: %d %s", code, body)
	}
	var added map[string]any
	if err := json.Unmarshal([]byte(body), &added); err != nil {
		t.Fatal(err)
	}
	list := cliList()
	if got := ids(list); !reflect.DeepEqual(got, []string{"api-example-test"}) {
		t.Fatalf("mapping list after the API added one: %v", got)
	}
	if !reflect.DeepEqual(list[0], added) {
		t.Errorf("the API and the command line describe the mapping differently:\nAPI %v\nCLI %v", added, list[0])
	}

	// Command line → API.
	if r := p2ptls(t, env, "mapping", "add", "--listener", "web", "--host", "cli.example.test", "--self-signed"); r.code != 0 {
		t.Fatalf("mapping add: exit %d %s", r.code, r.stderr)
	}
	if code, body := apiCall(t, client, "GET", api+"/mappings/cli-example-test", token, nil); code != 200 || !strings.Contains(body, `"cli.example.test"`) {
		t.Errorf("GET /mappings/cli-example-test after mapping add: %d %s", code, body)
	}
	if a, c := apiList(), cliList(); !reflect.DeepEqual(a, c) {
		t.Errorf("the lists differ:\nAPI %v\nCLI %v", a, c)
	}

	// Removals, both ways.
	if code, body := apiCall(t, client, "DELETE", api+"/mappings/cli-example-test", token, nil); code != 200 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if got := ids(cliList()); !reflect.DeepEqual(got, []string{"api-example-test"}) {
		t.Errorf("mapping list after the API removed one: %v", got)
	}
	if r := p2ptls(t, env, "mapping", "remove", "api-example-test"); r.code != 0 {
		t.Fatalf("mapping remove: exit %d %s", r.code, r.stderr)
	}
	if code, body := apiCall(t, client, "GET", api+"/mappings/api-example-test", token, nil); code != 404 {
		t.Errorf("GET after mapping remove: %d %s", code, body)
	}
	if got := apiList(); len(got) != 0 {
		t.Errorf("API list after both removals: %v", got)
	}

	// A refusal through the API is the command line's refusal, its hint
	// in each one's words: a JSON field for the API, a flag for the CLI.
	code, body = apiCall(t, client, "POST", api+"/mappings", token,
		map[string]any{"listener": "web", "hosts": []string{"*.example.test"}, "source": "acme", "challenge": "http-01"})
	r := p2ptls(t, env, "mapping", "add", "--listener", "web", "--host", "*.example.test", "--acme", "--challenge", "http-01")
	var apiErr struct{ Error, Hint string }
	if code != 422 || json.Unmarshal([]byte(body), &apiErr) != nil || r.code != 2 ||
		!strings.Contains(r.stderr, apiErr.Error) || !strings.Contains(apiErr.Hint, `"challenge": "dns-01"`) ||
		!strings.Contains(r.stderr, "hint: use --challenge dns-01") {
		t.Errorf("wildcard with http-01: API %d %s; CLI exit %d %s", code, body, r.code, r.stderr)
	}
}

// apiServe starts serve on a state with listener web and an admin token:
// the environment, the API's base URL, a client trusting the management CA
// and the token.
func apiServe(t *testing.T) (env []string, api string, client *http.Client, token string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	addr := freeAddr(t)
	env = []string{"CONFIG_DIR=" + dir, "MANAGEMENT_LISTEN=" + addr}
	if r := p2ptls(t, env, "listener", "add", "web", "--addr", freeAddr(t)); r.code != 0 {
		t.Fatalf("listener add: exit %d %s", r.code, r.stderr)
	}
	startServe(t, env)
	r := p2ptls(t, env, "admin", "token", "create", "ops", "--output", "json")
	var created struct{ Token string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &created) != nil || created.Token == "" {
		t.Fatalf("admin token create: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	caFile, _, _, _ := mgmtFiles(dir)
	client = httpsClient(caPool(t, caFile))
	api = "https://" + addr + "/api/v1"
	return env, api, client, created.Token
}
