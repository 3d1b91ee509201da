package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The memory goal's line gives the ratio and the verdict, on either side
// of the goal and exactly on it.
func TestRSSGoalLine(t *testing.T) {
	c := certBytes{pem: 100 << 20, der: 60 << 20}
	tests := []struct {
		rssKB int64
		want  string
	}{
		{100 * 1024, "100k mappings: RSS warm / certificate PEM = 1.00 (goal <= 1.20: met; 100 MiB against 120.0 MiB)"},
		{120 * 1024, "= 1.20 (goal <= 1.20: met;"},
		{121 * 1024, "= 1.21 (goal <= 1.20: NOT met;"},
		{227 * 1024, "= 2.27 (goal <= 1.20: NOT met; 227 MiB"},
		{0, "100k mappings: RSS warm not measured"}, // never "met"
	}
	for _, tt := range tests {
		if got := rssGoalLine(100_000, tt.rssKB, c); !strings.Contains(got, tt.want) {
			t.Errorf("rssGoalLine(%d kB) = %q, want it to contain %q", tt.rssKB, got, tt.want)
		}
	}
}

// procCPU sums utime and stime, counted after the command name however
// many spaces and parentheses it holds.
func TestProcCPU(t *testing.T) {
	got, err := procCPU("testdata/stat")
	if want := (1234 + 56) * 10 * time.Millisecond; err != nil || got != want {
		t.Errorf("procCPU(testdata/stat) = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"4242 (x) S 1 2", "no parenthesis at all 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15"} {
		f := t.TempDir() + "/stat"
		if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := procCPU(f); err == nil {
			t.Errorf("procCPU(%q) = %v, want an error", bad, got)
		}
	}
	if self, err := procCPU("/proc/self/stat"); err != nil || self < 0 {
		t.Errorf("procCPU(self) = %v, %v", self, err)
	}
}
