package commands

import (
	"io"
	"runtime/debug"
	"strings"
	"testing"
)

func TestGCPolicy(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		ok   bool
	}{
		{"mapping add", []string{"p2ptls", "mapping", "add", "--listener", "web", "--host", "a.example.com", "--self-signed"}, nil, true},
		{"mapping remove after a global flag", []string{"p2ptls", "--config-dir", "/tmp/x", "mapping", "remove", "a"}, nil, true},
		{"listener remove", []string{"p2ptls", "listener", "remove", "web"}, nil, true},
		{"a list keeps the defaults", []string{"p2ptls", "mapping", "list", "--output", "json"}, nil, false},
		{"doctor keeps the defaults", []string{"p2ptls", "doctor"}, nil, false},
		{"mapping import", []string{"p2ptls", "mapping", "import", "f.jsonl"}, nil, true},
		{"mapping export keeps the defaults", []string{"p2ptls", "mapping", "export", "--out", "f.jsonl"}, nil, false},
		{"serve keeps the defaults", []string{"p2ptls", "serve"}, nil, false},
		{"no command", []string{"p2ptls"}, nil, false},
		{"an unknown command", []string{"p2ptls", "frob", "add"}, nil, false},
		{"the operator's GOGC wins", []string{"p2ptls", "mapping", "add"}, map[string]string{"GOGC": "50"}, false},
		{"the operator's GOMEMLIMIT wins", []string{"p2ptls", "mapping", "add"}, map[string]string{"GOMEMLIMIT": "100MiB"}, false},
	}
	app := NewApp(io.Discard, io.Discard)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := commandPath(app, tc.args)
			percent, limit, ok := gcPolicy(path, func(k string) string { return tc.env[k] })
			if ok != tc.ok {
				t.Fatalf("command %q: ok = %v, want %v", path, ok, tc.ok)
			}
			if ok && (percent != cliGCPercent || limit != cliMemoryLimit) {
				t.Errorf("policy = %d, %d; want %d, %d", percent, limit, cliGCPercent, cliMemoryLimit)
			}
		})
	}
}

// Every command the policy names exists: a renamed one would silently lose it.
func TestGCPolicyNamesRealCommands(t *testing.T) {
	app := NewApp(io.Discard, io.Discard)
	for path := range changeCommands {
		args := append([]string{"p2ptls"}, strings.Fields(path)...)
		if got := commandPath(app, args); got != path {
			t.Errorf("%q is no command (found %q)", path, got)
		}
	}
}

func TestApplyGCPolicySetsTheRuntime(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(prevPercent); debug.SetMemoryLimit(prevLimit) })

	applyGCPolicy("mapping list")
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("mapping list: GC percent %d, want the default 100", got)
	}
	applyGCPolicy("mapping add")
	if got := debug.SetGCPercent(100); got != cliGCPercent {
		t.Errorf("mapping add: GC percent %d, want %d", got, cliGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != cliMemoryLimit {
		t.Errorf("mapping add: memory limit %d, want %d", got, cliMemoryLimit)
	}
}
