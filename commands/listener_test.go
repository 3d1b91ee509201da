package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// runIn runs p2ptls with args against the state directory dir.
func runIn(t *testing.T, dir string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	all := append([]string{"p2ptls", "--config-dir", dir}, args...)
	code = Main(context.Background(), all, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestListenerReadsOnlyTheTopFile: "listener list", "listener show" and
// "acme account list" print what p2ptls.toml holds without reading the
// mapping records (100k of them cost half a second), so a record that does
// not load does not stop them, while a p2ptls.toml that does not load
// still does, with LoadConfig's error.
func TestListenerReadsOnlyTheTopFile(t *testing.T) {
	tests := []struct {
		name     string
		damage   func(t *testing.T, dir string)
		args     []string
		code     int
		stdout   string // a substring of it
		stderr   string // a substring of it
		listJSON []string
	}{
		{name: "list, a record that does not parse", damage: badRecord,
			args: []string{"--output", "json", "listener", "list"}, listJSON: []string{"web"}},
		{name: "list table, a record naming no listener", damage: strayRecord,
			args: []string{"listener", "list"}, stdout: "127.0.0.1:8443"},
		{name: "show, a record that does not parse", damage: badRecord,
			args: []string{"--output", "json", "listener", "show", "web"}, stdout: `"addr": "127.0.0.1:8443"`},
		{name: "show, no such listener", damage: badRecord,
			args: []string{"listener", "show", "nope"}, code: 1, stderr: `listener "nope" does not exist`},
		{name: "list, p2ptls.toml broken", damage: badTop,
			args: []string{"listener", "list"}, code: 2, stderr: "p2ptls.toml: line 3"},
		{name: "show, p2ptls.toml broken", damage: badTop,
			args: []string{"listener", "show", "web"}, code: 2, stderr: "p2ptls.toml: line 3"},
		{name: "acme account list, a record that does not parse", damage: badRecord,
			args: []string{"--output", "json", "acme", "account", "list"}, stdout: "[]"},
		{name: "acme account list, p2ptls.toml broken", damage: badTop,
			args: []string{"acme", "account", "list"}, code: 2, stderr: "p2ptls.toml: line 3"},
		{name: "list, no state yet", damage: func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}, args: []string{"--output", "json", "listener", "list"}, listJSON: []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if code, _, stderr := runIn(t, dir, "listener", "add", "web", "--addr", "127.0.0.1:8443"); code != 0 {
				t.Fatalf("listener add: exit %d: %s", code, stderr)
			}
			if code, _, stderr := runIn(t, dir, "mapping", "add", "--listener", "web", "--host", "a.example.com", "--id", "a", "--self-signed"); code != 0 {
				t.Fatalf("mapping add: exit %d: %s", code, stderr)
			}
			tc.damage(t, dir)
			code, stdout, stderr := runIn(t, dir, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stdout %q want %q, stderr %q want %q", stdout, tc.stdout, stderr, tc.stderr)
			}
			if tc.listJSON != nil {
				var ls []state.Listener
				if err := json.Unmarshal([]byte(stdout), &ls); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, stdout)
				}
				var got []string
				for _, l := range ls {
					got = append(got, l.Name)
				}
				if strings.Join(got, ",") != strings.Join(tc.listJSON, ",") || ls == nil {
					t.Errorf("listeners %q, want %q", got, tc.listJSON)
				}
			}
		})
	}
}

// badRecord writes a record that does not parse; the commands that read
// mappings refuse the state (exit 2), which the test checks first.
func badRecord(t *testing.T, dir string) {
	t.Helper()
	writeRecord(t, dir, "bad", "id = 'bad'\nlistener = \n")
}

// strayRecord writes a record that parses but names a listener that does
// not exist: the config does not validate.
func strayRecord(t *testing.T, dir string) {
	t.Helper()
	writeRecord(t, dir, "stray", "id = 'stray'\nlistener = 'nope'\nhosts = ['s.example.com']\nsource = 'self-signed'\n")
}

func writeRecord(t *testing.T, dir, id, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(state.RecordName(id))), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runIn(t, dir, "mapping", "list"); code != 2 || !strings.Contains(stderr, state.RecordName(id)) {
		t.Fatalf("mapping list with %s: exit %d, want 2 naming it: %s", id, code, stderr)
	}
}

// badTop breaks p2ptls.toml at line 3.
func badTop(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, state.ConfigFile), []byte("schema_version = 2\n\n[[listeners]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCompletionOfListenersReadsOnlyTheTopFile: completing a listener or
// DNS credential name reads p2ptls.toml alone (a broken record does not
// hide them); a mapping id still needs the records.
func TestCompletionOfListenersReadsOnlyTheTopFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if code, _, stderr := runIn(t, dir, "listener", "add", "web", "--addr", "127.0.0.1:8443"); code != 0 {
		t.Fatalf("listener add: exit %d: %s", code, stderr)
	}
	if code, _, stderr := runIn(t, dir, "mapping", "add", "--listener", "web", "--host", "a.example.com", "--id", "a", "--self-signed"); code != 0 {
		t.Fatalf("mapping add: exit %d: %s", code, stderr)
	}
	if got := readNames(context.Background(), liveMappings, state.OpenDir(dir, 0)); len(got) != 1 {
		t.Fatalf("mapping ids before the damage: %v", got)
	}
	badRecord(t, dir)
	tests := []struct {
		kind liveKind
		want []string
	}{
		{liveListeners, []string{"web"}},
		{liveDNSCredentials, nil},
		{liveMappings, nil}, // the records do not load
	}
	for _, tc := range tests {
		var got []string
		for _, c := range readNames(context.Background(), tc.kind, state.OpenDir(dir, 0)) {
			got = append(got, c.value)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("names of kind %v: %q, want %q", tc.kind, got, tc.want)
		}
	}
}
