package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/testkit/cftest"
)

// Made-up API tokens of the shape Cloudflare issues (40 characters).
const (
	dnsCredToken      = "Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE_dC-bA1w"
	dnsCredTokenOther = "Qm7nB6vC5xZ4lK3jH2gF1dS0aP9oI8uY7tR6eW5q"
)

// Tokens of the emulated Cloudflare account in the test of "dns-credential test".
const (
	tokFull     = "Hk4Jd8Ls2Pq6Wx0Zc3Vb7Nm1Rt5Yu9Ei2Oa6Sf8G"
	tokDNSOnly  = "Tg3Fh7Jk1Lz5Xc9Vb2Nm6Qw0Er4Ty8Ui3Op7As1D"
	tokReadOnly = "Mn5Bv9Cx3Zl7Kj1Hg4Fd8Sa2Qw6Er0Ty3Ui7Op1L"
	tokInvalid  = "Wq2Er6Ty0Ui4Op8As1Df5Gh9Jk3Lz7Xc0Vb4Nm8P"
)

// dnsCredJSON is one element of "dns-credential list --output json".
type dnsCredJSON struct {
	Name      string   `json:"name"`
	Provider  string   `json:"provider"`
	Enabled   bool     `json:"enabled"`
	TokenHint string   `json:"token_hint"`
	UsedBy    []string `json:"used_by"`
}

// dnsCredNoToken fails when a run shows any 8 characters of a token in a
// row, on stdout or stderr.
func dnsCredNoToken(t *testing.T, r result, tokens ...string) {
	t.Helper()
	for _, tok := range tokens {
		for i := 0; i+8 <= len(tok); i++ {
			if strings.Contains(r.stdout+r.stderr, tok[i:i+8]) {
				t.Errorf("output shows the token (%q):\nstdout: %s\nstderr: %s", tok[i:i+8], r.stdout, r.stderr)
				return
			}
		}
	}
}

// dnsCredRun runs the binary and fails unless it exits 0 without showing a
// token.
func dnsCredRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := p2ptls(t, env, args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
	}
	dnsCredNoToken(t, r, dnsCredToken, dnsCredTokenOther)
	return r
}

func dnsCredList(t *testing.T, env []string) []dnsCredJSON {
	t.Helper()
	r := dnsCredRun(t, env, "dns-credential", "list", "--output", "json")
	var list []dnsCredJSON
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatalf("list JSON %q: %v", r.stdout, err)
	}
	var raw []map[string]any
	_ = json.Unmarshal([]byte(r.stdout), &raw)
	for _, m := range raw {
		for _, k := range []string{"name", "provider", "enabled", "token_hint", "used_by"} {
			if _, ok := m[k]; !ok {
				t.Errorf("list JSON entry %v lacks %q", m, k)
			}
		}
	}
	return list
}

func TestDNSCredentialLifecycle(t *testing.T) {
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	tokenFile := filepath.Join(t.TempDir(), "cf.token")
	if err := os.WriteFile(tokenFile, []byte(dnsCredTokenOther+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if r := dnsCredRun(t, append(env, "CF_DNS_API_TOKEN="+dnsCredToken),
		"dns-credential", "add", "cf", "--provider", "cloudflare", "--api-token-env", "CF_DNS_API_TOKEN"); !strings.Contains(r.stdout, "added DNS credential cf") {
		t.Errorf("add: %q", r.stdout)
	}
	dnsCredRun(t, env, "dns-credential", "add", "cf-file", "--api-token-file", tokenFile, "--api-base-url", "http://127.0.0.1:9/client/v4")
	stdin := command(env, "dns-credential", "add", "cf-stdin", "--api-token-file", "-")
	stdin.Stdin = strings.NewReader(dnsCredToken + "\n")
	if out, err := stdin.CombinedOutput(); err != nil || strings.Contains(string(out), dnsCredToken[:8]) {
		t.Fatalf("add from stdin: %v: %s", err, out)
	}

	// The tokens are in secrets/dns, 0600, and nowhere in p2ptls.toml.
	for name, tok := range map[string]string{"cf": dnsCredToken, "cf-file": dnsCredTokenOther, "cf-stdin": dnsCredToken} {
		p := filepath.Join(dir, "secrets", "dns", name+".token")
		info, err := os.Stat(p)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v", p, err, info.Mode().Perm())
		}
		if b, _ := os.ReadFile(p); strings.TrimSpace(string(b)) != tok {
			t.Errorf("%s does not hold the token", p)
		}
	}
	if info, err := os.Stat(filepath.Join(dir, "secrets", "dns")); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("secrets/dns: %v, mode %v", err, info.Mode().Perm())
	}
	toml, _ := os.ReadFile(filepath.Join(dir, "p2ptls.toml"))
	if strings.Contains(string(toml), dnsCredToken[:8]) || strings.Contains(string(toml), dnsCredTokenOther[:8]) {
		t.Errorf("p2ptls.toml holds a token:\n%s", toml)
	}
	if !strings.Contains(string(toml), `api_base_url = 'http://127.0.0.1:9/client/v4'`) && !strings.Contains(string(toml), `api_base_url = "http://127.0.0.1:9/client/v4"`) {
		t.Errorf("p2ptls.toml lacks the api_base_url:\n%s", toml)
	}

	list := dnsCredList(t, env)
	want := []dnsCredJSON{
		{"cf", "cloudflare", true, dnsCredToken[36:], []string{}},
		{"cf-file", "cloudflare", true, dnsCredTokenOther[36:], []string{}},
		{"cf-stdin", "cloudflare", true, dnsCredToken[36:], []string{}},
	}
	if !slices.EqualFunc(list, want, dnsCredEqual) {
		t.Errorf("list = %+v, want %+v", list, want)
	}
	if r := dnsCredRun(t, env, "dns-credential", "list"); !strings.Contains(r.stdout, "TOKEN") || !strings.Contains(r.stdout, "…"+dnsCredToken[36:]) {
		t.Errorf("list table:\n%s", r.stdout)
	}
	if r := dnsCredRun(t, env, "dns-credential", "show", "cf-file"); !strings.Contains(r.stdout, "http://127.0.0.1:9/client/v4") {
		t.Errorf("show:\n%s", r.stdout)
	}
	dnsCredRun(t, env, "dns-credential", "show", "cf", "--output", "json")

	// A mapping uses cf: remove refuses and changes nothing.
	r := dnsCredRun(t, env, "mapping", "add", "--listener", "web", "--host", "*.example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf", "--output", "json")
	var m struct{ ID string }
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil || m.ID == "" {
		t.Fatalf("mapping add JSON %q: %v", r.stdout, err)
	}
	if list := dnsCredList(t, env); !slices.Equal(list[0].UsedBy, []string{m.ID}) {
		t.Errorf("used_by of cf = %v, want [%s]", list[0].UsedBy, m.ID)
	}
	before := snapshot(t, dir)
	r = p2ptls(t, env, "dns-credential", "remove", "cf")
	if r.code != 1 || !strings.Contains(r.stderr, `DNS credential "cf" is used by 1 mapping(s): `+m.ID) || !strings.Contains(r.stderr, "p2ptls: hint: remove those mappings first") {
		t.Errorf("remove while used: exit %d, %s", r.code, r.stderr)
	}
	// Adding a name that exists fails and changes nothing.
	r = p2ptls(t, append(env, "T="+dnsCredTokenOther), "dns-credential", "add", "cf", "--api-token-env", "T")
	if r.code != 1 || !strings.Contains(r.stderr, `DNS credential "cf" already exists`) {
		t.Errorf("duplicate: exit %d, %s", r.code, r.stderr)
	}
	dnsCredNoToken(t, r, dnsCredTokenOther)
	assertSameSnapshot(t, before, snapshot(t, dir))

	// Disable and enable.
	dnsCredRun(t, env, "dns-credential", "disable", "cf")
	if list := dnsCredList(t, env); list[0].Enabled {
		t.Error("cf still enabled after disable")
	}
	if r := dnsCredRun(t, env, "dns-credential", "disable", "cf"); !strings.Contains(r.stdout, "already disabled") {
		t.Errorf("disable twice: %q", r.stdout)
	}
	r = dnsCredRun(t, env, "dns-credential", "enable", "cf", "--output", "json")
	var shown dnsCredJSON
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || !shown.Enabled || shown.Name != "cf" {
		t.Errorf("enable JSON %q: %v", r.stdout, err)
	}

	// Rotating the token keeps the mapping.
	dnsCredRun(t, append(env, "NEW="+dnsCredTokenOther), "dns-credential", "add", "cf", "--replace", "--api-token-env", "NEW")
	if list := dnsCredList(t, env); list[0].TokenHint != dnsCredTokenOther[36:] || len(list[0].UsedBy) != 1 {
		t.Errorf("after --replace: %+v", list[0])
	}

	// Removing an unused credential removes its token too.
	dnsCredRun(t, env, "dns-credential", "remove", "cf-file")
	if _, err := os.Stat(filepath.Join(dir, "secrets", "dns", "cf-file.token")); !os.IsNotExist(err) {
		t.Errorf("token file after remove: %v", err)
	}
	if list := dnsCredList(t, env); len(list) != 2 {
		t.Errorf("after remove: %+v", list)
	}
	for _, args := range [][]string{{"show", "nope"}, {"enable", "nope"}, {"remove", "nope"}, {"test", "nope"}} {
		r := p2ptls(t, env, append([]string{"dns-credential"}, args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, `DNS credential "nope" does not exist`) || !strings.Contains(r.stderr, "dns-credential list") {
			t.Errorf("%v: exit %d, %s", args, r.code, r.stderr)
		}
	}
}

func dnsCredEqual(a, b dnsCredJSON) bool {
	return a.Name == b.Name && a.Provider == b.Provider && a.Enabled == b.Enabled && a.TokenHint == b.TokenHint && slices.Equal(a.UsedBy, b.UsedBy)
}

func TestDNSCredentialListEmptyIsJSONArray(t *testing.T) {
	r := p2ptls(t, []string{"CONFIG_DIR=" + filepath.Join(t.TempDir(), "none")}, "dns-credential", "list", "--output", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("exit %d, %q", r.code, r.stdout)
	}
}

func TestDNSCredentialAddRefusalsLeaveStateUnchanged(t *testing.T) {
	files := t.TempDir()
	good := filepath.Join(files, "good.token")
	spaced := filepath.Join(files, "spaced.token")
	unreadable := filepath.Join(files, "unreadable.token")
	for p, content := range map[string]string{good: dnsCredToken, spaced: "CF_TOKEN = " + dnsCredToken, unreadable: dnsCredToken} {
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	add := []string{"dns-credential", "add"}
	tests := []struct {
		desc string
		args []string
		code int
		want string
		hint string
	}{
		{"both token sources", []string{"cf", "--api-token-file", good, "--api-token-env", "TOK"}, 2, "not both", "only one"},
		{"no token source", []string{"cf"}, 2, "needs --api-token-file or --api-token-env", "never taken from the command line"},
		{"the token as a flag", []string{"cf", "--api-token", dnsCredToken}, 2, "--api-token: tokens are never taken from the command line: use --api-token-file or --api-token-env", "--help"},
		{"the token as an argument", []string{"cf", dnsCredToken, "--api-token-env", "TOK"}, 2, "takes one NAME, got 2 arguments", "--help"},
		{"missing file", []string{"cf", "--api-token-file", filepath.Join(files, "nope")}, 2, "the API token file (--api-token-file): cannot read " + filepath.Join(files, "nope") + ": no such file or directory", "check the path"},
		{"unreadable file", []string{"cf", "--api-token-file", unreadable}, 2, "permission denied", "check the path"},
		{"a directory", []string{"cf", "--api-token-file", files}, 2, "cannot read " + files + ": it is a directory, not a regular file", "regular file"},
		{"file with more than the token", []string{"cf", "--api-token-file", spaced}, 2, "space or a line break", "only the token"},
		{"unset variable", []string{"cf", "--api-token-env", "UNSET_VAR"}, 2, "environment variable UNSET_VAR is not set or empty", "export it"},
		{"empty variable", []string{"cf", "--api-token-env", "EMPTY"}, 2, "environment variable EMPTY is not set or empty", ""},
		{"the token as the variable name", []string{"cf", "--api-token-env", dnsCredToken}, 2, "not the token", "CF_DNS_API_TOKEN"},
		{"bad name", []string{"Bad!", "--api-token-env", "TOK"}, 2, `DNS credential name "Bad!" is invalid`, ""},
		{"no name", []string{"--api-token-env", "TOK"}, 2, "needs NAME", ""},
		{"unknown provider", []string{"cf", "--provider", "route53", "--api-token-env", "TOK"}, 2, `unknown DNS provider "route53"`, "--provider cloudflare"},
		{"bad base URL", []string{"cf", "--api-token-env", "TOK", "--api-base-url", "api.example.test"}, 2, "api_base_url", "http://"},
		{"replace of nothing", []string{"nope", "--replace", "--api-token-env", "TOK"}, 1, `DNS credential "nope" does not exist`, "dns-credential list"},
		{"duplicate", []string{"taken", "--api-token-env", "TOK"}, 1, `DNS credential "taken" already exists`, "dns-credential remove taken"},
	}
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir, "TOK=" + dnsCredTokenOther, "EMPTY="}
	dnsCredRun(t, env, "dns-credential", "add", "taken", "--api-token-file", good)
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if tc.desc == "unreadable file" && os.Geteuid() == 0 {
				t.Skip("root reads files of mode 0")
			}
			before := snapshot(t, dir)
			r := p2ptls(t, env, append(append([]string{}, add...), tc.args...)...)
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if r.code != tc.code || !strings.HasPrefix(lines[0], "p2ptls: error: ") || !strings.Contains(lines[0], tc.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", r.code, tc.code, r.stderr, tc.want)
			}
			if tc.hint != "" && (len(lines) < 2 || !strings.Contains(lines[1], tc.hint)) {
				t.Errorf("stderr %q, want a hint with %q", r.stderr, tc.hint)
			}
			if len(lines) > 2 || r.stdout != "" {
				t.Errorf("stderr has %d lines, stdout %q", len(lines), r.stdout)
			}
			dnsCredNoToken(t, r, dnsCredToken, dnsCredTokenOther)
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}
}

func TestDNSCredentialTestAgainstEmulator(t *testing.T) {
	tokens := map[string]cftest.Perms{
		tokFull:     {ZoneRead: true, DNSEdit: true},
		tokDNSOnly:  {DNSEdit: true},
		tokReadOnly: {ZoneRead: true},
	}
	srv := cftest.New(t, cftest.Options{Zones: []string{"example.test"}, Tokens: tokens})
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	for name, tok := range map[string]string{
		"full":     tokFull,
		"dnsonly":  tokDNSOnly,
		"readonly": tokReadOnly,
		"invalid":  tokInvalid,
	} {
		dnsCredRun(t, append(env, "TOK="+tok), "dns-credential", "add", name, "--api-token-env", "TOK", "--api-base-url", srv.URL)
	}
	allTokens := []string{tokFull, tokDNSOnly, tokReadOnly, tokInvalid}

	tests := []struct {
		name   string
		code   int
		stdout []string // table fragments
		stderr string
		hint   string
		checks []string // JSON: id[@zone]:status
	}{
		{"full", 0, []string{"token", "zone_read", "dns_edit example.test", "created and deleted the TXT record _p2ptls-test.example.test", "works against " + srv.URL}, "", "",
			[]string{"token:ok", "zone_read:ok", "dns_edit@example.test:ok"}},
		{"dnsonly", 1, []string{"zone_read", "fail"}, `DNS credential "dnsonly": the token lacks Zone:Read`, "give it Zone:Read and DNS:Edit",
			[]string{"token:ok", "zone_read:fail"}},
		{"readonly", 1, []string{"dns_edit example.test", "fail"}, `DNS credential "readonly": the token lacks DNS:Edit for zone example.test`, "give it Zone:Read and DNS:Edit",
			[]string{"token:ok", "zone_read:ok", "dns_edit@example.test:fail"}},
		{"invalid", 1, []string{"token", "fail"}, `DNS credential "invalid": the token is not valid`, "create an API token",
			[]string{"token:fail"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, dir)
			r := p2ptls(t, env, "dns-credential", "test", tc.name)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr %s", r.code, tc.code, r.stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(r.stdout, s) {
					t.Errorf("table lacks %q:\n%s", s, r.stdout)
				}
			}
			if tc.stderr != "" && (!strings.HasPrefix(r.stderr, "p2ptls: error: "+tc.stderr) || !strings.Contains(r.stderr, "p2ptls: hint: ") || !strings.Contains(r.stderr, tc.hint)) {
				t.Errorf("stderr %q, want %q and a hint with %q", r.stderr, tc.stderr, tc.hint)
			}
			dnsCredNoToken(t, r, allTokens...)

			r = p2ptls(t, env, "dns-credential", "test", tc.name, "--output", "json")
			var res struct {
				Name   string   `json:"name"`
				OK     bool     `json:"ok"`
				Zones  []string `json:"zones"`
				Checks []struct {
					ID, Zone, Status, Message string
				} `json:"checks"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != tc.code || res.OK != (tc.code == 0) || res.Name != tc.name {
				t.Fatalf("JSON: exit %d, %q: %v", r.code, r.stdout, err)
			}
			var got []string
			for _, c := range res.Checks {
				id := c.ID
				if c.Zone != "" {
					id += "@" + c.Zone
				}
				got = append(got, id+":"+c.Status)
			}
			if !slices.Equal(got, tc.checks) {
				t.Errorf("checks %v, want %v", got, tc.checks)
			}
			dnsCredNoToken(t, r, allTokens...)
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}
	if left := srv.TXT("_p2ptls-test.example.test"); left != nil {
		t.Errorf("test records left behind: %v", left)
	}

	// A disabled credential can be tested before it is enabled again.
	dnsCredRun(t, env, "dns-credential", "disable", "full")
	if r := dnsCredRun(t, env, "dns-credential", "test", "full"); !strings.Contains(r.stdout, "it is disabled") {
		t.Errorf("test of a disabled credential:\n%s", r.stdout)
	}
}
