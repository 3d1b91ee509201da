package text

import (
	"encoding/json"
	"testing"
	"time"
)

func TestOneLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"  padded\t", "padded"},
		{"acme: error: 400 :: urn:ietf:params:acme:error:malformed ::\n  detail\r\n\tmore", "acme: error: 400 :: urn:ietf:params:acme:error:malformed :: detail more"},
		{"a \u00a0 b", "a b"}, // Unicode white space counts too
	} {
		if got := OneLine(tc.in); got != tc.want {
			t.Errorf("OneLine(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStamp(t *testing.T) {
	plus2 := time.FixedZone("+02", 2*60*60)
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC), "2026-12-01T10:30:00Z"},
		{time.Date(2026, 12, 1, 0, 30, 0, 999, plus2), "2026-11-30T22:30:00Z"}, // UTC, no fraction
	} {
		if got := Stamp(tc.in); got != tc.want {
			t.Errorf("Stamp(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestNonNil(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string
	}{
		{"nil", nil, "[]"},
		{"empty", []string{}, "[]"},
		{"some", []string{"a", "b"}, `["a","b"]`},
	} {
		out, err := json.Marshal(NonNil(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != tc.want {
			t.Errorf("%s: JSON %s, want %s", tc.name, out, tc.want)
		}
	}
}
