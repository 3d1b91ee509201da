package runstatus

import (
	"slices"
	"testing"
)

func TestFallbackList(t *testing.T) {
	for _, tc := range []struct {
		name string
		hits map[string]int64
		want []string
	}{
		{"none", nil, []string{}},
		{"most first", map[string]int64{"a.example": 1, "b.example": 5, "": 3}, []string{"b.example=5", "(no SNI)=3", "a.example=1"}},
		{"equals by name", map[string]int64{"c.example": 2, "a.example": 2, "b.example": 2}, []string{"a.example=2", "b.example=2", "c.example=2"}},
	} {
		if got := FallbackList(tc.hits); !slices.Equal(got, tc.want) {
			t.Errorf("%s: FallbackList = %q, want %q", tc.name, got, tc.want)
		}
	}
}
