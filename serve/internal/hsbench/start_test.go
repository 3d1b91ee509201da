package main

import (
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		if got := rssGoalLine(100_000, tt.rssKB, c); !strings.Contains(got, tt.want) {
			t.Errorf("rssGoalLine(%d kB) = %q, want it to contain %q", tt.rssKB, got, tt.want)
		}
	}
}
