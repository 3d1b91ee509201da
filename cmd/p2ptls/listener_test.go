package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type listenerJSON struct {
	Name     string `json:"name"`
	Addr     string `json:"addr"`
	HTTPAddr string `json:"http_addr"`
	Fallback string `json:"fallback"`
	Upstream string `json:"upstream"`
}

// listListeners returns what "listener list --output json" prints.
func listListeners(t *testing.T, dir string) []listenerJSON {
	t.Helper()
	r := p2ptls(t, nil, "--config-dir", dir, "--output", "json", "listener", "list")
	if r.code != 0 {
		t.Fatalf("listener list: exit %d: %s", r.code, r.stderr)
	}
	var ls []listenerJSON
	if err := json.Unmarshal([]byte(r.stdout), &ls); err != nil {
		t.Fatalf("listener list output is not one JSON document: %v\n%s", err, r.stdout)
	}
	return ls
}

func TestListenerLifecycle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	r := p2ptls(t, nil, "listener", "add", "web", "--addr", ":8443", "--http-addr", ":8080",
		"--upstream", "http://127.0.0.1:9000", "--config-dir", dir)
	if r.code != 0 {
		t.Fatalf("listener add: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "added listener web") {
		t.Errorf("listener add said %q", r.stdout)
	}
	// Flags before the command name, names in any case the validator accepts.
	if r := p2ptls(t, nil, "--config-dir", dir, "--quiet", "listener", "add", "--fallback", "reject", "--addr", "127.0.0.1:9443", "api"); r.code != 0 || r.stdout != "" {
		t.Fatalf("quiet listener add: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	want := []listenerJSON{
		{Name: "web", Addr: ":8443", HTTPAddr: ":8080", Fallback: "self-signed", Upstream: "http://127.0.0.1:9000"},
		{Name: "api", Addr: "127.0.0.1:9443", Fallback: "reject"},
	}
	got := listListeners(t, dir)
	if len(got) != len(want) {
		t.Fatalf("listeners = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("listener %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	info, err := os.Stat(dir)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode = %v (%v), want 0700", info.Mode().Perm(), err)
	}
	info, err = os.Stat(filepath.Join(dir, "p2ptls.toml"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("p2ptls.toml mode = %v (%v), want 0600", info.Mode().Perm(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "p2ptls.lock")); !os.IsNotExist(err) {
		t.Errorf("lock file left behind after the command: %v", err)
	}

	r = p2ptls(t, nil, "--config-dir", dir, "listener", "show", "web", "--output", "json")
	var one listenerJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &one) != nil || one != want[0] {
		t.Errorf("listener show: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	r = p2ptls(t, nil, "--config-dir", dir, "listener", "list")
	if r.code != 0 || !strings.Contains(r.stdout, "NAME") || !strings.Contains(r.stdout, "127.0.0.1:9443") {
		t.Errorf("listener list table: exit %d: %q", r.code, r.stdout)
	}

	if r := p2ptls(t, nil, "--config-dir", dir, "listener", "remove", "web"); r.code != 0 {
		t.Fatalf("listener remove: exit %d: %s", r.code, r.stderr)
	}
	if got := listListeners(t, dir); len(got) != 1 || got[0].Name != "api" {
		t.Errorf("after remove: %+v", got)
	}
}

func TestListenerListEmptyIsJSONArray(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	r := p2ptls(t, nil, "--config-dir", dir, "listener", "list", "--output", "json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("a read-only command created the state directory: %v", err)
	}
}

func TestStateDirectoryResolution(t *testing.T) {
	base := t.TempDir()
	env := filepath.Join(base, "env")
	flag := filepath.Join(base, "flag")
	xdg := filepath.Join(base, "xdg")
	home := filepath.Join(base, "home")
	tests := []struct {
		desc string
		env  []string
		args []string
		want string
	}{
		{"flag beats CONFIG_DIR", []string{"CONFIG_DIR=" + env}, []string{"--config-dir", flag}, flag},
		{"flag after the command beats CONFIG_DIR", []string{"CONFIG_DIR=" + env}, []string{"--config-dir=" + flag + "2"}, flag + "2"},
		{"CONFIG_DIR beats XDG", []string{"CONFIG_DIR=" + env, "XDG_DATA_HOME=" + xdg}, nil, env},
		{"XDG_DATA_HOME/p2ptls", []string{"XDG_DATA_HOME=" + xdg}, nil, filepath.Join(xdg, "p2ptls")},
		{"HOME/.local/share/p2ptls", []string{"HOME=" + home}, nil, filepath.Join(home, ".local", "share", "p2ptls")},
	}
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			name := "l" + string(rune('a'+i))
			args := append([]string{"listener", "add", name, "--addr", ":" + string(rune('1'+i)) + "443"}, tc.args...)
			if r := p2ptls(t, tc.env, args...); r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			b, err := os.ReadFile(filepath.Join(tc.want, "p2ptls.toml"))
			if err != nil || !strings.Contains(string(b), name) {
				t.Errorf("listener %s not in %s: %v", name, tc.want, err)
			}
		})
	}
}

func TestGlobalFlagPrecedence(t *testing.T) {
	dir := t.TempDir()
	env := []string{"CONFIG_DIR=" + dir, "P2PTLS_OUTPUT=json"}
	// The environment asks for JSON; a flag on either side of the command wins.
	for _, args := range [][]string{
		{"--output", "table", "listener", "list"},
		{"listener", "list", "--output", "table"},
	} {
		r := p2ptls(t, env, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "NAME") {
			t.Errorf("%v: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := p2ptls(t, env, "listener", "list"); r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("P2PTLS_OUTPUT=json: exit %d, stdout %q", r.code, r.stdout)
	}
}
