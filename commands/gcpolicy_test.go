package commands

import (
	"runtime/debug"
	"testing"
)

func TestGCPolicy(t *testing.T) {
	tests := []struct {
		name    string
		command string
		env     map[string]string
		ok      bool
	}{
		{"a change", "mapping", nil, true},
		{"a list", "cert", nil, true},
		{"no command", "", nil, true},
		{"serve keeps the defaults", "serve", nil, false},
		{"the operator's GOGC wins", "mapping", map[string]string{"GOGC": "50"}, false},
		{"the operator's GOMEMLIMIT wins", "mapping", map[string]string{"GOMEMLIMIT": "100MiB"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			percent, limit, ok := gcPolicy(tc.command, func(k string) string { return tc.env[k] })
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && (percent != cliGCPercent || limit != cliMemoryLimit) {
				t.Errorf("policy = %d, %d; want %d, %d", percent, limit, cliGCPercent, cliMemoryLimit)
			}
		})
	}
}

func TestApplyGCPolicySetsTheRuntime(t *testing.T) {
	if _, _, ok := gcPolicy("mapping", func(k string) string { return "" }); !ok {
		t.Fatal("no policy for mapping")
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	prevPercent := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(prevPercent); debug.SetMemoryLimit(prevLimit) })

	applyGCPolicy("serve")
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("serve: GC percent %d, want the default 100", got)
	}
	applyGCPolicy("mapping")
	if got := debug.SetGCPercent(100); got != cliGCPercent {
		t.Errorf("mapping: GC percent %d, want %d", got, cliGCPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != cliMemoryLimit {
		t.Errorf("mapping: memory limit %d, want %d", got, cliMemoryLimit)
	}
}
