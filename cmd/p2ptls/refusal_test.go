package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seededState returns a state directory holding one listener "web".
func seededState(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if r := p2ptls(t, nil, "--config-dir", dir, "listener", "add", "web", "--addr", ":8443", "--http-addr", ":8080"); r.code != 0 {
		t.Fatalf("seed: exit %d: %s", r.code, r.stderr)
	}
	return dir
}

func TestRefusalsLeaveStateUnchanged(t *testing.T) {
	tests := []struct {
		desc   string
		args   []string
		code   int
		stderr string // a fragment of the one-sentence error
		hint   string // a fragment of the hint line
	}{
		{"unknown flag", []string{"listener", "add", "x", "--addr", ":1", "--bogus"}, 2, "p2ptls listener add: unknown flag --bogus", "p2ptls listener add --help"},
		{"unknown global flag", []string{"--bogus", "listener", "list"}, 2, "p2ptls: unknown flag --bogus", "p2ptls --help"},
		{"missing required flag", []string{"listener", "add", "x"}, 2, "needs --addr", "p2ptls listener add --help"},
		{"missing name", []string{"listener", "add", "--addr", ":1"}, 2, "needs NAME", "usage"},
		{"two names", []string{"listener", "add", "a", "b", "--addr", ":1"}, 2, "takes one NAME", "usage"},
		{"invalid name", []string{"listener", "add", "Web!", "--addr", ":9443"}, 2, `listener name "Web!"`, ""},
		{"address without port", []string{"listener", "add", "x", "--addr", "localhost"}, 2, "localhost", "HOST:PORT"},
		{"port zero", []string{"listener", "add", "x", "--addr", ":0"}, 2, "port", "HOST:PORT"},
		{"port out of range", []string{"listener", "add", "x", "--addr", ":70000"}, 2, "70000", ""},
		{"service name port", []string{"listener", "add", "x", "--addr", ":https"}, 2, "https", ""},
		{"bad host in address", []string{"listener", "add", "x", "--addr", "bad_host!:443"}, 2, "bad_host!", ""},
		{"http addr equals addr", []string{"listener", "add", "x", "--addr", ":9443", "--http-addr", "0.0.0.0:9443"}, 2, "collides", "own port"},
		{"address taken by another listener", []string{"listener", "add", "x", "--addr", "127.0.0.1:8443"}, 2, `collides with listener "web"`, "own port"},
		{"unknown fallback", []string{"listener", "add", "x", "--addr", ":9443", "--fallback", "maybe"}, 2, `unknown fallback "maybe"`, "reject"},
		{"bad upstream", []string{"listener", "add", "x", "--addr", ":9443", "--upstream", "ftp://x"}, 2, "ftp://x", "http://"},
		{"bad output format", []string{"listener", "list", "--output", "yaml"}, 2, `unknown output format "yaml"`, "json"},
		{"bad log level", []string{"--log-level", "loud", "listener", "list"}, 2, `unknown log level "loud"`, ""},
		{"negative lock timeout", []string{"listener", "list", "--lock-timeout", "-1s"}, 2, "lock-timeout", ""},
		{"unknown command", []string{"listner", "list"}, 2, `unknown command "listner"`, "did you mean 'p2ptls listener'"},
		{"unknown subcommand", []string{"listener", "bogus"}, 2, `p2ptls listener: unknown command "bogus"`, ""},
		{"arguments to list", []string{"listener", "list", "extra"}, 2, "takes no arguments", ""},
		{"duplicate listener", []string{"listener", "add", "web", "--addr", ":9443"}, 1, `listener "web" already exists`, "listener remove web"},
		{"remove missing listener", []string{"listener", "remove", "nope"}, 1, `listener "nope" does not exist`, "listener list"},
		{"show missing listener", []string{"listener", "show", "nope"}, 1, `listener "nope" does not exist`, ""},
		{"unknown completion shell", []string{"completion", "powershell"}, 2, `no completion for shell "powershell"`, "bash, zsh, fish"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := seededState(t)
			before := snapshot(t, dir)
			r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if !strings.HasPrefix(lines[0], "p2ptls: error: ") || !strings.Contains(lines[0], tc.stderr) {
				t.Errorf("stderr first line %q, want p2ptls: error: …%s…", lines[0], tc.stderr)
			}
			if tc.hint != "" && (len(lines) < 2 || !strings.HasPrefix(lines[1], "p2ptls: hint: ") || !strings.Contains(lines[1], tc.hint)) {
				t.Errorf("stderr %q, want a hint line with %q", r.stderr, tc.hint)
			}
			if len(lines) > 2 {
				t.Errorf("stderr has %d lines, want an error and at most a hint:\n%s", len(lines), r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty on refusal: %q", r.stdout)
			}
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}
}

func TestHandEditedConfigErrors(t *testing.T) {
	tests := []struct {
		desc    string
		content string
		want    []string // fragments of the error line
	}{
		{"syntax error", "schema_version = 1\n[[listeners]]\nname = \"web\nadDr = 1\n", []string{"p2ptls.toml", "line 3"}},
		{"type error", "schema_version = 1\n\n[[listeners]]\nname = \"web\"\naddr = 8443\n", []string{"p2ptls.toml", "line 5", "listeners.addr"}},
		{"unknown field", "schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":8443\"\nport = 1\n", []string{"p2ptls.toml", "line 5", "unknown field", "listeners.port"}},
		{"unknown schema version", "schema_version = 9\n", []string{"p2ptls.toml", "schema_version 9 is not supported"}},
		{"missing schema version", "[[listeners]]\nname = \"web\"\naddr = \":8443\"\n", []string{"schema_version is missing"}},
		{"invalid value", "schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":0\"\n", []string{"p2ptls.toml", "listeners[0]", "port"}},
		{"duplicate listener", "schema_version = 1\n[[listeners]]\nname = \"a\"\naddr = \":1443\"\n[[listeners]]\nname = \"a\"\naddr = \":2443\"\n", []string{"listeners[1]", `"a" is used twice`}},
		{"mapping on missing listener", "schema_version = 1\n[[mappings]]\nid = \"m\"\nlistener = \"nope\"\nhosts = [\"a.example.com\"]\nsource = \"self-signed\"\n", []string{"mappings[0]", `listener "nope" does not exist`}},
		{"wildcard with http-01", "schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":8443\"\n[[mappings]]\nid = \"m\"\nlistener = \"web\"\nhosts = [\"*.example.com\"]\nsource = \"acme\"\nchallenge = \"http-01\"\n", []string{"mappings[0]", "need DNS-01"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "p2ptls.toml"), []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			for _, args := range [][]string{{"listener", "list"}, {"listener", "add", "new", "--addr", ":7443"}} {
				r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, args...)
				if r.code != 2 {
					t.Errorf("%v: exit %d, want 2; stderr %s", args, r.code, r.stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%v: stderr %q lacks %q", args, r.stderr, w)
					}
				}
			}
			assertSameSnapshot(t, before, snapshot(t, dir))
		})
	}
}
