package dnscred

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// token is a made-up token of the shape Cloudflare issues (40 characters).
const token = "Zx9yW8vU7tS6rQ5pO4nM3lK2jI1hG0fE_dC-bA1w"

var ctx = context.Background()

func newStore(t *testing.T) *state.Dir {
	t.Helper()
	return state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
}

func cf(name string) state.DNSCredential {
	return state.DNSCredential{Name: name, Provider: state.ProviderCloudflare}
}

func mustAdd(t *testing.T, s state.Store, c state.DNSCredential, tok string) {
	t.Helper()
	if err := Add(ctx, s, c, tok); err != nil {
		t.Fatalf("Add(%s): %v", c.Name, err)
	}
}

func loadConfig(t *testing.T, s state.Store) *state.Config {
	t.Helper()
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// useIn adds listener "web" (once) and a DNS-01 mapping id that uses cred.
func useIn(t *testing.T, s state.Store, id, cred string) {
	t.Helper()
	err := state.Update(ctx, s, "test", func(tx *state.Tx) error {
		cfg := tx.Config
		if _, ok := cfg.Listener("web"); !ok {
			cfg.Listeners = append(cfg.Listeners, state.Listener{Name: "web", Addr: ":8443"})
		}
		cfg.Mappings = append(cfg.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.test"},
			Source: state.SourceACME, Challenge: state.ChallengeDNS01, DNSCredential: cred})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// noToken fails when s holds the token or any 8 characters of it in a row.
func noToken(t *testing.T, what, s string) {
	t.Helper()
	for i := 0; i+8 <= len(token); i++ {
		if strings.Contains(s, token[i:i+8]) {
			t.Errorf("%s reveals the token (%q): %s", what, token[i:i+8], s)
			return
		}
	}
}

func TestAddStoresTokenApartAndSecret(t *testing.T) {
	s := newStore(t)
	c := state.DNSCredential{Name: "cf", Provider: "Cloudflare", APIBaseURL: "http://127.0.0.1:1/client/v4", Enabled: false}
	if err := Add(ctx, s, c, "  "+token+"\r\n"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Root(), "secrets", "dns", "cf.token")
	if p != state.Locate(s, TokenFile("cf")) {
		t.Errorf("TokenFile path %s, want %s", state.Locate(s, TokenFile("cf")), p)
	}
	info, err := os.Stat(p)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	for _, d := range []string{filepath.Dir(p), filepath.Dir(filepath.Dir(p))} {
		if info, err := os.Stat(d); err != nil || info.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, mode %v; want 0700", d, err, info.Mode().Perm())
		}
	}
	if b, _ := os.ReadFile(p); string(b) != token+"\n" {
		t.Errorf("token file holds %q, want the trimmed token and a newline", b)
	}
	toml, _ := os.ReadFile(filepath.Join(s.Root(), state.ConfigFile))
	noToken(t, "p2ptls.toml", string(toml))
	cfg := loadConfig(t, s)
	want := state.DNSCredential{Name: "cf", Provider: "cloudflare", Enabled: true, APIBaseURL: "http://127.0.0.1:1/client/v4"}
	if len(cfg.DNSCredentials) != 1 || cfg.DNSCredentials[0] != want {
		t.Errorf("config entry %+v, want %+v", cfg.DNSCredentials, want)
	}

	list, err := List(ctx, s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantInfo := Info{Name: "cf", Provider: "cloudflare", Enabled: true, TokenHint: token[len(token)-4:], APIBaseURL: want.APIBaseURL, UsedBy: []string{}}
	if len(list) != 1 || !infoEqual(list[0], wantInfo) {
		t.Errorf("List = %+v, want %+v", list, wantInfo)
	}
	b, _ := json.Marshal(list)
	noToken(t, "list JSON", string(b))
	for _, field := range []string{`"name":"cf"`, `"provider":"cloudflare"`, `"enabled":true`, `"token_hint":"` + token[len(token)-4:] + `"`, `"used_by":[]`, `"api_base_url"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("list JSON %s lacks %s", b, field)
		}
	}
	if strings.Contains(string(b), "problem") {
		t.Errorf("list JSON has a problem field without a problem: %s", b)
	}
}

func infoEqual(a, b Info) bool {
	return a.Name == b.Name && a.Provider == b.Provider && a.Enabled == b.Enabled && a.TokenHint == b.TokenHint &&
		a.APIBaseURL == b.APIBaseURL && slices.Equal(a.UsedBy, b.UsedBy) && (a.UsedBy == nil) == (b.UsedBy == nil) && a.Problem == b.Problem
}

func TestAddRefusalsChangeNothing(t *testing.T) {
	tests := []struct {
		desc  string
		cred  state.DNSCredential
		token string
		kind  fault.Kind
		want  string
		hint  string
	}{
		{"bad name", cf("CF!"), token, fault.Invalid, `DNS credential name "CF!" is invalid`, ""},
		{"empty name", cf(""), token, fault.Invalid, "DNS credential name", ""},
		{"unknown provider", state.DNSCredential{Name: "r53", Provider: "route53"}, token, fault.Invalid, `unknown DNS provider "route53"`, "--provider cloudflare"},
		{"empty token", cf("x"), " \n\t", fault.Invalid, "the API token is empty", ""},
		{"space inside", cf("x"), token[:20] + " " + token[20:], fault.Invalid, "space or a line break", "one line"},
		{"two lines", cf("x"), token + "\n" + token + "\n", fault.Invalid, "space or a line break", "one line"},
		{"control character", cf("x"), token[:20] + "\x00" + token[20:], fault.Invalid, "not printable ASCII", ""},
		{"non-ASCII", cf("x"), token + "é", fault.Invalid, "not printable ASCII", ""},
		{"too long", cf("x"), strings.Repeat(token, 200), fault.Invalid, "bytes long", ""},
		{"bad base URL", state.DNSCredential{Name: "x", Provider: "cloudflare", APIBaseURL: "api.cloudflare.com"}, token, fault.Invalid, "api_base_url", "http://"},
		{"ftp base URL", state.DNSCredential{Name: "x", Provider: "cloudflare", APIBaseURL: "ftp://h/"}, token, fault.Invalid, "api_base_url", "http://"},
		{"duplicate", cf("taken"), token, fault.Failure, `DNS credential "taken" already exists`, "--replace"},
	}
	s := newStore(t)
	mustAdd(t, s, cf("taken"), "other-token-0123456789")
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := snapshot(t, s)
			err := Add(ctx, s, tc.cred, tc.token)
			if err == nil || !strings.Contains(err.Error(), tc.want) || fault.KindOf(err) != tc.kind {
				t.Fatalf("Add = %v (kind %v), want %q (kind %v)", err, fault.KindOf(err), tc.want, tc.kind)
			}
			if !strings.Contains(fault.HintOf(err), tc.hint) {
				t.Errorf("hint %q, want %q", fault.HintOf(err), tc.hint)
			}
			noToken(t, "error", err.Error()+fault.HintOf(err))
			assertSame(t, before, snapshot(t, s))
		})
	}
}

func TestAddOnBrokenConfigChangesNothing(t *testing.T) {
	s := newStore(t)
	if err := s.Write(ctx, state.ConfigFile, []byte("schema_version = 1\n[[dns_credentials]]\nname = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	err := Add(ctx, s, cf("cf"), token)
	if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "provider") {
		t.Errorf("Add on a broken p2ptls.toml = %v, want the config's error", err)
	}
	assertSame(t, before, snapshot(t, s))
}

// failingStore fails every write of p2ptls.toml, alone or in a change.
type failingStore struct{ *state.Dir }

func (f failingStore) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	if name == state.ConfigFile {
		return errors.New("disk full")
	}
	return f.Dir.Write(ctx, name, data, perm)
}

func (f failingStore) Apply(ctx context.Context, c state.Change) error {
	for _, w := range c.Writes {
		if w.Name == state.ConfigFile {
			return errors.New("disk full")
		}
	}
	return f.Dir.Apply(ctx, c)
}

func TestAddRollsBackTheTokenWhenTheConfigCannotBeSaved(t *testing.T) {
	s := newStore(t)
	mustAdd(t, s, cf("other"), token)
	// A token file left over by a crash is put back as it was.
	if err := s.Write(ctx, TokenFile("left"), []byte("old-leftover-token\n"), state.SecretMode); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s)
	for _, name := range []string{"cf", "left"} {
		err := Add(ctx, failingStore{s}, cf(name), token)
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Fatalf("Add(%s) = %v, want the save error", name, err)
		}
		noToken(t, "error", err.Error())
	}
	// A replace that changes the reference saves p2ptls.toml (one that
	// changes only the token leaves it as it is).
	other := cf("other")
	other.APIBaseURL = "http://127.0.0.1:8787/client/v4"
	err := Replace(ctx, failingStore{s}, other, "a-new-token-0123456789")
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Replace = %v, want the save error", err)
	}
	after := snapshot(t, s)
	delete(after, state.RevisionFile) // the lock bumps it for the attempted writes
	delete(before, state.RevisionFile)
	assertSame(t, before, after)
}

func TestReplaceRotatesTheToken(t *testing.T) {
	s := newStore(t)
	mustAdd(t, s, cf("cf"), "first-token-0123456789")
	useIn(t, s, "wild", "cf")
	if _, err := SetEnabled(ctx, s, "cf", false); err != nil {
		t.Fatal(err)
	}
	c := cf("cf")
	c.APIBaseURL = "http://127.0.0.1:9/client/v4"
	if err := Replace(ctx, s, c, token); err != nil {
		t.Fatal(err)
	}
	cfg := loadConfig(t, s)
	cred, err := Get(ctx, s, cfg, "cf")
	if err != nil || cred.Token != token || cred.APIBaseURL != c.APIBaseURL {
		t.Errorf("after Replace: %v (token replaced: %v), %v", cred, cred.Token == token, err)
	}
	if cfg.DNSCredentials[0].Enabled {
		t.Error("Replace enabled a disabled credential")
	}
	// Without a base URL, the one configured stays.
	if err := Replace(ctx, s, cf("cf"), "third-token-0123456789"); err != nil {
		t.Fatal(err)
	}
	if cred, _ := Get(ctx, s, loadConfig(t, s), "cf"); cred.Token != "third-token-0123456789" || cred.APIBaseURL != c.APIBaseURL {
		t.Errorf("after a second Replace: base URL %q, token replaced: %v", cred.APIBaseURL, cred.Token == "third-token-0123456789")
	}
	if err := Replace(ctx, s, cf("nope"), token); fault.KindOf(err) != fault.NotFound || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Replace of a missing credential = %v", err)
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t)
	mustAdd(t, s, cf("used"), token)
	mustAdd(t, s, cf("free"), token)
	useIn(t, s, "wild", "used")
	useIn(t, s, "apex", "used")

	before := snapshot(t, s)
	_, err := Remove(ctx, s, "used")
	if fault.KindOf(err) != fault.Failure || !strings.Contains(err.Error(), "used by 2 mapping(s): apex, wild") ||
		!strings.Contains(fault.HintOf(err), "mapping remove") {
		t.Errorf("Remove of a used credential = %v (hint %q)", err, fault.HintOf(err))
	}
	_, err = Remove(ctx, s, "nope")
	if fault.KindOf(err) != fault.NotFound || !strings.Contains(err.Error(), `DNS credential "nope" does not exist`) ||
		fault.HintOf(err) != "see 'p2ptls dns-credential list' for the existing ones" {
		t.Errorf("Remove of a missing credential = %v (hint %q)", err, fault.HintOf(err))
	}
	assertSame(t, before, snapshot(t, s))

	removed, err := Remove(ctx, s, "free")
	if err != nil || removed.Name != "free" || removed.TokenHint == "" {
		t.Fatalf("Remove = %+v, %v", removed, err)
	}
	if _, err := s.Read(ctx, TokenFile("free")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("token file after Remove: %v", err)
	}
	cfg := loadConfig(t, s)
	if len(cfg.DNSCredentials) != 1 || cfg.DNSCredentials[0].Name != "used" {
		t.Errorf("credentials after Remove: %+v", cfg.DNSCredentials)
	}
	// A credential whose token file is gone can still be removed.
	mustAdd(t, s, cf("gone"), token)
	_ = s.Delete(ctx, TokenFile("gone"))
	if _, err := Remove(ctx, s, "gone"); err != nil {
		t.Errorf("Remove without a token file: %v", err)
	}
}

func TestEnableDisableAndLookup(t *testing.T) {
	s := newStore(t)
	mustAdd(t, s, cf("cf"), token)

	cred, err := Lookup(ctx, s, loadConfig(t, s), "cf")
	if err != nil || cred.Token != token || cred.Name != "cf" || cred.Provider != "cloudflare" || cred.BaseURL() != DefaultCloudflareBaseURL {
		t.Fatalf("Lookup = %v, %v", cred, err)
	}

	// Enabling what is enabled writes nothing.
	before := snapshot(t, s)
	if changed, err := SetEnabled(ctx, s, "cf", true); changed || err != nil {
		t.Errorf("SetEnabled(true) on an enabled credential = %v, %v", changed, err)
	}
	after := snapshot(t, s)
	assertSame(t, before, after)

	if changed, err := SetEnabled(ctx, s, "cf", false); !changed || err != nil {
		t.Fatalf("SetEnabled(false) = %v, %v", changed, err)
	}
	_, err = Lookup(ctx, s, loadConfig(t, s), "cf")
	if fault.KindOf(err) != fault.Failure || !strings.Contains(err.Error(), `DNS credential "cf" is disabled`) ||
		fault.HintOf(err) != "enable it with 'p2ptls dns-credential enable cf'" {
		t.Errorf("Lookup of a disabled credential = %v (hint %q)", err, fault.HintOf(err))
	}
	// test may still use it.
	if cred, err := Get(ctx, s, loadConfig(t, s), "cf"); err != nil || cred.Token != token {
		t.Errorf("Get of a disabled credential = %v", err)
	}
	if changed, err := SetEnabled(ctx, s, "cf", true); !changed || err != nil {
		t.Fatalf("SetEnabled(true) = %v, %v", changed, err)
	}
	if _, err := Lookup(ctx, s, loadConfig(t, s), "cf"); err != nil {
		t.Errorf("Lookup after enable: %v", err)
	}

	before = snapshot(t, s)
	if _, err := SetEnabled(ctx, s, "nope", false); fault.KindOf(err) != fault.NotFound || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("SetEnabled of a missing credential = %v", err)
	}
	assertSame(t, before, snapshot(t, s))

	_, err = Lookup(ctx, s, loadConfig(t, s), "nope")
	if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), `DNS credential "nope" does not exist`) {
		t.Errorf("Lookup of a missing credential = %v (kind %v), want Invalid", err, fault.KindOf(err))
	}
}

func TestMissingOrDamagedTokenFile(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		content []byte // nil: the file is deleted
		want    string
	}{
		{"missing", nil, "is missing"},
		{"empty", []byte("\n"), "is damaged: the API token is empty"},
		{"two tokens", []byte(token + "\n" + token + "\n"), "is damaged"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := newStore(t)
			mustAdd(t, s, cf("cf"), token)
			useIn(t, s, "wild", "cf")
			var err error
			if tc.content == nil {
				err = s.Delete(ctx, TokenFile("cf"))
			} else {
				err = s.Write(ctx, TokenFile("cf"), tc.content, state.SecretMode)
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg := loadConfig(t, s)
			p := state.Locate(s, TokenFile("cf"))
			_, err = Lookup(ctx, s, cfg, "cf")
			if fault.KindOf(err) != fault.Failure || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(fault.HintOf(err), "dns-credential add cf --replace") {
				t.Errorf("Lookup = %v (hint %q)", err, fault.HintOf(err))
			}
			noToken(t, "error", err.Error())
			list, err := List(ctx, s, cfg)
			if err != nil || len(list) != 1 || list[0].TokenHint != "" || !strings.Contains(list[0].Problem, p) ||
				!slices.Equal(list[0].UsedBy, []string{"wild"}) {
				t.Errorf("List = %+v, %v", list, err)
			}
			noToken(t, "problem", list[0].Problem)
		})
	}
}

func TestListSortedAndUsedBy(t *testing.T) {
	s := newStore(t)
	for _, n := range []string{"zeta", "alpha", "mid"} {
		mustAdd(t, s, cf(n), token)
	}
	useIn(t, s, "m2", "mid")
	useIn(t, s, "m1", "mid")
	useIn(t, s, "m3", "alpha")
	list, err := List(ctx, s, loadConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, i := range list {
		got = append(got, fmt.Sprintf("%s:%s", i.Name, strings.Join(i.UsedBy, ",")))
	}
	// Mappings in the order of their ids.
	if want := []string{"alpha:m3", "mid:m1,m2", "zeta:"}; !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if list, _ := List(ctx, newStore(t), &state.Config{SchemaVersion: 1}); list == nil {
		t.Error("List of nothing is nil; JSON would print null")
	}
	info, err := Show(ctx, s, loadConfig(t, s), "mid")
	if err != nil || !slices.Equal(info.UsedBy, []string{"m1", "m2"}) {
		t.Errorf("Show = %+v, %v", info, err)
	}
	if _, err := Show(ctx, s, loadConfig(t, s), "nope"); fault.KindOf(err) != fault.NotFound || !strings.Contains(fault.HintOf(err), "dns-credential list") {
		t.Errorf("Show of a missing credential = %v", err)
	}
}

func TestTokenHint(t *testing.T) {
	for tok, want := range map[string]string{
		token:          token[36:],
		"abcdefghijkl": "ijkl", // no ellipsis: DESIGN.md's token_hint is the last four only
		"abcdefghijk":  "",     // too short to give away a quarter of it
		"abc":          "",
	} {
		if got := tokenHint(tok); got != want {
			t.Errorf("tokenHint(%q) = %q, want %q", tok, got, want)
		}
	}
}

func TestCredentialNeverPrintsItsToken(t *testing.T) {
	c := Credential{Name: "cf", Provider: "cloudflare", Token: token, APIBaseURL: "http://x"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		noToken(t, verb, fmt.Sprintf(verb, c))
		noToken(t, verb+" pointer", fmt.Sprintf(verb, &c))
	}
	b, _ := json.Marshal(c)
	noToken(t, "JSON", string(b))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("use", "cred", c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("use", "cred", c)
	noToken(t, "slog", buf.String())
	if !strings.Contains(buf.String(), "cf") {
		t.Errorf("slog does not name the credential: %s", buf.String())
	}
}

func TestTokenFromFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", token+"\n")
	if got, err := TokenFromFile(good, nil); err != nil || got != token {
		t.Errorf("TokenFromFile = %v", err)
	}
	if got, err := TokenFromFile("-", strings.NewReader("\n"+token+"\n")); err != nil || got != token {
		t.Errorf("TokenFromFile(-) = %v", err)
	}
	env := map[string]string{"CF_TOKEN": " " + token + "\n", "EMPTY": "", "BAD": "a b"}
	getenv := func(k string) string { return env[k] }
	if got, err := TokenFromEnv("CF_TOKEN", getenv); err != nil || got != token {
		t.Errorf("TokenFromEnv = %v", err)
	}
	tests := []struct {
		desc string
		run  func() (string, error)
		want string
		not  string // must not appear in the error
	}{
		{"missing file", func() (string, error) { return TokenFromFile(filepath.Join(dir, "nope"), nil) }, "the API token file (--api-token-file): cannot read " + filepath.Join(dir, "nope") + ": no such file or directory", ""},
		{"directory", func() (string, error) { return TokenFromFile(dir, nil) }, dir, ""},
		{"empty file", func() (string, error) { return TokenFromFile(write("empty", "\n"), nil) }, "the API token is empty", ""},
		{"env file", func() (string, error) { return TokenFromFile(write("env", "A=1\nB=2\n"), nil) }, "space or a line break", "A=1"},
		{"huge file", func() (string, error) { return TokenFromFile(write("huge", strings.Repeat("x", 70000)), nil) }, "larger than", ""},
		{"empty stdin", func() (string, error) { return TokenFromFile("-", strings.NewReader("")) }, "standard input: the API token is empty", ""},
		{"stdin larger than 64 KiB", func() (string, error) { return TokenFromFile("-", strings.NewReader(strings.Repeat("x", 64<<10+1))) }, "cannot read standard input: it is larger than the 64 KiB limit", ""},
		{"file of 64 KiB and 1 byte", func() (string, error) { return TokenFromFile(write("over", strings.Repeat("x", 64<<10+1)), nil) }, "larger than the 64 KiB limit", ""},
		{"unset variable", func() (string, error) { return TokenFromEnv("NOPE", getenv) }, "environment variable NOPE is not set or empty", ""},
		{"empty variable", func() (string, error) { return TokenFromEnv("EMPTY", getenv) }, "environment variable EMPTY is not set or empty", ""},
		{"bad value", func() (string, error) { return TokenFromEnv("BAD", getenv) }, "environment variable BAD: the API token contains a space", "a b"},
		{"token given as the name", func() (string, error) { return TokenFromEnv(token, getenv) }, "not the token", token[:8]},
		{"long name looking like a token", func() (string, error) { return TokenFromEnv("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", getenv) }, "the environment variable named by --api-token-env is not set", "AbCdEfGh"},
		{"empty name", func() (string, error) { return TokenFromEnv("", getenv) }, "not the token", ""},
	}
	for _, h := range statetest.HostilePaths(t, t.TempDir()) {
		tests = append(tests, struct {
			desc string
			run  func() (string, error)
			want string
			not  string
		}{h.Desc, func() (string, error) { return TokenFromFile(h.Path, nil) }, h.Path + ": " + h.Says, ""})
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var err error
			statetest.Within(t, 5*time.Second, func() { _, err = tc.run() })
			if err == nil || fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (kind %v), want Invalid with %q", err, fault.KindOf(err), tc.want)
			}
			if tc.not != "" && strings.Contains(err.Error()+fault.HintOf(err), tc.not) {
				t.Errorf("error %q quotes %q", err, tc.not)
			}
		})
	}
}

func snapshot(t *testing.T, s *state.Dir) map[string]string { return statetest.Snapshot(t, s.Root()) }

func assertSame(t *testing.T, before, after map[string]string) {
	t.Helper()
	statetest.AssertSame(t, before, after)
}
