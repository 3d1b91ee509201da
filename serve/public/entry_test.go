package public

import (
	"crypto/tls"
	"sync"
	"testing"
)

// However many entries are admitted, and however concurrently, at most
// hotSetSize keep a rebuilt certificate, and the latest admitted do.
func TestHotSetIsBounded(t *testing.T) {
	tests := []struct {
		name       string
		goroutines int
		perG       int
	}{
		{"fewer than its size", 1, hotSetSize / 2},
		{"many times its size", 1, 5 * hotSetSize},
		{"concurrent admissions", 8, hotSetSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h hotSet
			entries := make([][]*entry, tt.goroutines)
			var wg sync.WaitGroup
			for g := range entries {
				entries[g] = make([]*entry, tt.perG)
				wg.Go(func() {
					for i := range entries[g] {
						e := &entry{}
						entries[g][i] = e
						h.admit(e, &tls.Certificate{})
					}
				})
			}
			wg.Wait()
			hot := 0
			for _, es := range entries {
				for _, e := range es {
					if e.hot.Load() != nil {
						hot++
					}
				}
			}
			want := min(tt.goroutines*tt.perG, hotSetSize)
			if hot > hotSetSize || (tt.goroutines == 1 && hot != want) {
				t.Fatalf("%d entries keep a certificate, want %d (at most %d)", hot, want, hotSetSize)
			}
			if last := entries[0][tt.perG-1]; tt.goroutines == 1 && last.hot.Load() == nil {
				t.Fatal("the entry admitted last has no certificate")
			}
		})
	}
}
