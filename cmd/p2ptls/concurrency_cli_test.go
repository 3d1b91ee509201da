package main

import (
	"strings"
	"testing"
)

// TestConcurrencyFlagBadInput: --concurrency outside 1..64 on cert issue
// and cert renew is bad input (exit 2) that names the range, before
// anything is done.
func TestConcurrencyFlagBadInput(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	for _, args := range [][]string{
		{"cert", "issue", "--all", "--concurrency", "0"},
		{"cert", "issue", "--all", "--concurrency", "65"},
		{"cert", "renew", "--no-random-sleep", "--concurrency", "-3"},
	} {
		before := snapshot(t, p.dir)
		r := p2ptls(t, p.env, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "is not between 1 and 64") {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming the range", args, r.code, r.stderr)
		}
		assertSameSnapshot(t, before, snapshot(t, p.dir))
	}
}
