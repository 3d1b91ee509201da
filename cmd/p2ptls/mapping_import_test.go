package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// importState is a state with listeners web and api and DNS credential cf,
// as the source and the target of a round trip have them.
func importState(t *testing.T) (dir string, env []string) {
	t.Helper()
	dir = seededState(t)
	env = []string{"CONFIG_DIR=" + dir, "CF_TOKEN=token"}
	for _, args := range [][]string{
		{"listener", "add", "api", "--addr", ":9443"},
		{"dns-credential", "add", "cf", "--api-token-env", "CF_TOKEN"},
	} {
		if r := p2ptls(t, env, args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	return dir, env
}

// listed is what a round trip must keep of "mapping list --output json".
type listed struct {
	ID, Listener, Source, Challenge, DNSCredential, Upstream, CertFile, KeyFile string
	Hosts                                                                       []string
	FingerprintSHA256                                                           string `json:"fingerprint_sha256"`
}

func listMappings(t *testing.T, env []string) []listed {
	t.Helper()
	r := p2ptls(t, env, "mapping", "list", "--output", "json")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); r.code != 0 || err != nil {
		t.Fatalf("mapping list: exit %d, %v: %s", r.code, err, r.stderr)
	}
	var out []listed
	for _, m := range raw {
		l := listed{}
		for k, p := range map[string]*string{"id": &l.ID, "listener": &l.Listener, "source": &l.Source, "challenge": &l.Challenge,
			"dns_credential": &l.DNSCredential, "upstream": &l.Upstream, "cert_file": &l.CertFile, "key_file": &l.KeyFile} {
			*p, _ = m[k].(string)
		}
		for _, h := range m["hosts"].([]any) {
			l.Hosts = append(l.Hosts, h.(string))
		}
		// The certificate is the same only where the export carries it;
		// the files of the others are in each state's own directory.
		if l.Source == "manual" || l.Source == "file" {
			l.FingerprintSHA256, _ = m["fingerprint_sha256"].(string)
		}
		if l.Source != "file" {
			l.CertFile, l.KeyFile = "", ""
		}
		out = append(out, l)
	}
	return out
}

func TestMappingExportImportRoundTrip(t *testing.T) {
	srcDir, src := importState(t)
	files := t.TempDir()
	manCert, manKey := writeSelfSigned(t, files, "manual", "shop.example.test")
	fileCert, fileKey := writeSelfSigned(t, files, "file", "file.example.test")
	add := func(args ...string) {
		t.Helper()
		if r := p2ptls(t, src, append([]string{"mapping", "add"}, args...)...); r.code != 0 {
			t.Fatalf("mapping add %v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	add("--listener", "web", "--host", "shop.example.test", "--manual", "--cert-file", manCert, "--key-file", manKey)
	add("--listener", "web", "--host", "file.example.test", "--file", "--cert-file", fileCert, "--key-file", fileKey)
	add("--listener", "api", "--host", "self.example.test", "--self-signed", "--days", "30", "--upstream", "http://127.0.0.1:8080")
	add("--listener", "web", "--host", "acme.example.test", "--acme", "--challenge", "tls-alpn-01", "--key-type", "ec384")
	add("--listener", "api", "--id", "wild", "--host", "*.example.test", "--acme", "--challenge", "dns-01", "--dns-credential", "cf")
	want := listMappings(t, src)

	// To a file: 0600, a warning about the key, the summary.
	out := filepath.Join(t.TempDir(), "mappings.jsonl")
	r := p2ptls(t, src, "mapping", "export", "--out", out, "--output", "json")
	if r.code != 0 || !strings.Contains(r.stderr, "private keys of 1 manual mappings in clear") {
		t.Fatalf("export: exit %d, stderr %q", r.code, r.stderr)
	}
	var summary struct {
		File           string
		Exported, Keys int
	}
	if err := json.Unmarshal([]byte(r.stdout), &summary); err != nil || summary.Exported != 5 || summary.Keys != 1 {
		t.Errorf("export summary %q: %+v, %v", r.stdout, summary, err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file: %v, %v", fi, err)
	}
	// --quiet silences the warning.
	if r := p2ptls(t, src, "mapping", "export", "--out", out, "--quiet"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("export --quiet: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// From the file into a new state with the same listeners.
	_, dst := importState(t)
	r = p2ptls(t, dst, "mapping", "import", out, "--output", "json")
	var added struct{ Added []string }
	if err := json.Unmarshal([]byte(r.stdout), &added); r.code != 0 || err != nil || len(added.Added) != 5 {
		t.Fatalf("import: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := listMappings(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("after the round trip:\n got %+v\nwant %+v", got, want)
	}

	// Through a pipe into a third state: stdout to stdin.
	piped := p2ptls(t, src, "mapping", "export")
	if piped.code != 0 || strings.Count(piped.stdout, "\n") != 5 {
		t.Fatalf("export to stdout: exit %d, %q", piped.code, piped.stderr)
	}
	_, third := importState(t)
	if r := runStdin(t, third, []byte(piped.stdout), "mapping", "import", "-"); r.code != 0 || r.stdout != "added 5 mappings\n" {
		t.Fatalf("import -: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := listMappings(t, third); !reflect.DeepEqual(got, want) {
		t.Errorf("after the pipe:\n got %+v\nwant %+v", got, want)
	}

	// Keys are never written to a terminal (a pseudo-terminal here; not
	// /dev/null, which cron gives and is no terminal); without keys, or
	// with no manual mapping, they may be.
	before := snapshot(t, srcDir)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"mapping", "export"}, 2},
		{[]string{"mapping", "export", "--no-keys"}, 0},
		{[]string{"mapping", "export", "--listener", "api"}, 0},
	} {
		if r := runTo(t, src, openTerminal(t), tc.args...); r.code != tc.code {
			t.Errorf("%v to a terminal: exit %d, want %d: %s", tc.args, r.code, tc.code, r.stderr)
		}
	}
	assertSameSnapshot(t, before, snapshot(t, srcDir))
	if r := p2ptls(t, src, "mapping", "export", "--no-keys"); r.code != 0 || strings.Contains(r.stdout, "PRIVATE KEY") || !strings.Contains(r.stdout, "CERTIFICATE") {
		t.Errorf("--no-keys: exit %d: %s", r.code, r.stdout)
	}
}

// runTo runs the binary with stdout to f.
func runTo(t *testing.T, env []string, f *os.File, args ...string) result {
	t.Helper()
	cmd := command(env, args...)
	var errb strings.Builder
	cmd.Stdout, cmd.Stderr = f, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stderr: errb.String()}
}

func TestMappingImportRefusals(t *testing.T) {
	dir, env := importState(t)
	if r := p2ptls(t, env, "mapping", "add", "--listener", "web", "--host", "taken.example.test", "--self-signed", "--id", "taken"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	ok := func(i int) string {
		return fmt.Sprintf(`{"listener":"web","hosts":["ok%d.example.test"],"source":"self-signed"}`, i)
	}
	lines := func(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
	files := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(files, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, input string
		code        int
		want        string
	}{
		{"bad line 17", lines(ok(1), ok(2), ok(3), ok(4), ok(5), ok(6), ok(7), ok(8), ok(9), ok(10), ok(11), ok(12), ok(13), ok(14), ok(15), ok(16),
			`{"listener":"web","hosts":["bad_host.example.test"],"source":"self-signed"}`, ok(18)), 2, "line 17: "},
		{"unknown field", lines(ok(1), `{"listener":"web","hosts":["x.example.test"],"source":"self-signed","dayz":3}`), 2, `line 2: invalid JSON: unknown field "dayz"`},
		{"wildcard with http-01", lines(ok(1), ok(2), `{"listener":"web","hosts":["*.example.test"],"source":"acme","challenge":"http-01"}`), 2, "line 3: "},
		{"id twice", lines(`{"listener":"web","hosts":["a.example.test"],"id":"a","source":"self-signed"}`, `{"listener":"api","hosts":["b.example.test"],"id":"a","source":"self-signed"}`), 2, `line 2: mapping id "a" is given twice (first on line 1)`},
		{"host twice", lines(ok(1), `{"listener":"web","hosts":["OK1.example.test"],"source":"self-signed"}`), 2, `line 2: host "ok1.example.test" is given twice on listener "web" (first on line 1)`},
		{"id in the state", lines(ok(1), `{"listener":"api","hosts":["b.example.test"],"id":"taken","source":"self-signed"}`), 1, `line 2: mapping "taken" already exists`},
		{"host in the state", lines(ok(1), `{"listener":"web","hosts":["taken.example.test"],"source":"self-signed"}`), 2, `line 2: host "taken.example.test" is already mapped`},
		{"comment", lines("# mappings", ok(1)), 2, "line 1: invalid JSON"},
		{"over-long line", lines(ok(1), `{"listener":"web","hosts":["`+strings.Repeat("a", 2<<20)+`"]}`), 2, "line 2: the line is longer than the 2 MiB limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := write(strings.ReplaceAll(tc.name, " ", "-")+".jsonl", tc.input)
			for _, via := range []string{"file", "stdin"} {
				before := snapshot(t, dir)
				var r result
				if via == "file" {
					r = p2ptls(t, env, "mapping", "import", file)
				} else {
					r = runStdin(t, env, []byte(tc.input), "mapping", "import", "-")
				}
				if r.code != tc.code || !strings.HasPrefix(r.stderr, "p2ptls: error: "+tc.want) {
					t.Errorf("%s: exit %d (want %d), stderr %q (want %q)", via, r.code, tc.code, r.stderr, tc.want)
				}
				assertSameSnapshot(t, before, snapshot(t, dir))
			}
		})
	}

	// What is not a regular file is refused at once, never read.
	for _, h := range statetest.HostilePaths(t, t.TempDir()) {
		if h.Desc == "a 2 MiB file" {
			continue // a regular file is read: the over-long line is refused above
		}
		t.Run(h.Desc, func(t *testing.T) {
			before := snapshot(t, dir)
			statetest.Within(t, 20*time.Second, func() {
				r := p2ptls(t, env, "mapping", "import", h.Path)
				if r.code != 2 || !strings.Contains(r.stderr, h.Says) {
					t.Errorf("exit %d, stderr %q", r.code, r.stderr)
				}
			})
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}

	// Standard input that is a terminal is refused.
	cmd := command(env, "mapping", "import", "-")
	cmd.Stdin = openTerminal(t)
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "standard input, which is a terminal") {
		t.Errorf("import - from a terminal: %v: %s", err, out)
	}
}
