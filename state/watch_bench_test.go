package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkRevision times one Revision over n record files: what the
// watch pays per burst of events and per full poll (which it spaces to
// 1/pollBudget of one core).
//
//	go test -run XXX -bench Revision ./state/
func BenchmarkRevision(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			root := b.TempDir()
			records := filepath.Join(root, RecordsDir)
			if err := os.MkdirAll(records, DirMode); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				if err := os.WriteFile(filepath.Join(records, fmt.Sprintf("m%06d.toml", i)), []byte("id = 'x'\n"), SecretMode); err != nil {
					b.Fatal(err)
				}
			}
			d := OpenDir(root, 0)
			ctx := context.Background()
			for b.Loop() {
				if _, err := d.Revision(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
