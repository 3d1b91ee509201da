package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompletionMatchesCommittedFiles(t *testing.T) {
	for shell, file := range map[string]string{"bash": "p2ptls.bash", "zsh": "_p2ptls", "fish": "p2ptls.fish"} {
		r := p2ptls(t, nil, "completion", shell)
		want, err := os.ReadFile(filepath.Join("..", "..", "completions", file))
		if err != nil {
			t.Fatal(err)
		}
		if r.code != 0 || r.stdout != string(want) {
			t.Errorf("completion %s: exit %d; output differs from completions/%s", shell, r.code, file)
		}
	}
}

func TestVersion(t *testing.T) {
	r := p2ptls(t, nil, "version", "--output", "json")
	var v struct{ Version, Go string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go") {
		t.Errorf("version: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
}

func TestHelpEndsWithExitStatus(t *testing.T) {
	for _, args := range [][]string{{"listener", "add", "--help"}, {"--help"}} {
		r := p2ptls(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "EXIT STATUS") || !strings.Contains(r.stdout, "3  the state directory stayed locked") {
			t.Errorf("%v: exit %d, help lacks EXIT STATUS:\n%s", args, r.code, r.stdout)
		}
	}
}
