package sni

import "testing"

// A host without a usable value (a mapping whose certificate is pending or
// broken) must not hide the wildcard that covers it.
func TestSelectPassesOverUnusable(t *testing.T) {
	x := mustBuild(t, "dns.example.com", "app.example.com", "*.example.com", "broken.example.org", "*.example.org")
	bad := map[string]bool{"dns.example.com": true, "broken.example.org": true, "*.example.org": true}
	usable := func(h string) bool { return !bad[h] }
	tests := []struct {
		sni, want     string // want "" is a miss
		wantSkipped   bool
		nilUsableWant string
	}{
		{"dns.example.com", "*.example.com", true, "dns.example.com"},
		{"DNS.Example.Com.", "*.example.com", true, "dns.example.com"},
		{"app.example.com", "app.example.com", false, "app.example.com"},
		{"other.example.com", "*.example.com", false, "*.example.com"},
		{"broken.example.org", "", true, "broken.example.org"}, // its wildcard is unusable too
		{"x.example.org", "", false, "*.example.org"},
		{"nothing.example.net", "", false, ""},
	}
	for _, tc := range tests {
		got, ok, skipped := x.Select(tc.sni, usable)
		if got != tc.want || ok != (tc.want != "") || skipped != tc.wantSkipped {
			t.Errorf("Select(%q) = %q, %v, skipped %v; want %q, skipped %v", tc.sni, got, ok, skipped, tc.want, tc.wantSkipped)
		}
		if got, _, _ := x.Select(tc.sni, nil); got != tc.nilUsableWant {
			t.Errorf("Select(%q, nil) = %q; want %q", tc.sni, got, tc.nilUsableWant)
		}
	}
	if n := testing.AllocsPerRun(100, func() { x.Select("dns.example.com", usable) }); n != 0 {
		t.Errorf("Select allocates %v times per call", n)
	}
}
