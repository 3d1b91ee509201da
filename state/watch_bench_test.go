package state

import (
	"context"
	"fmt"
	"hash/maphash"
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
			root := recordFiles(b, n)
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

// BenchmarkFullPoll times the watch's full poll (statAll against what the
// last one saw) over n record files: serve pays it every second or more
// (see space), on the core that serves handshakes.
//
//	go test -run XXX -bench FullPoll -benchmem ./state/
func BenchmarkFullPoll(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			root := recordFiles(b, n)
			ctx, seed := context.Background(), maphash.MakeSeed()
			prev := statAll(ctx, root, seed, seenSet{}, 0)
			if prev.err != nil || prev.seen.len() != n {
				b.Fatalf("first poll: %v, %d files seen", prev.err, prev.seen.len())
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := statAll(ctx, root, seed, prev.seen, 0); r.err != nil || len(r.names) != 0 {
					b.Fatalf("poll: %v, %d changed", r.err, len(r.names))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
		})
	}
}

// recordFiles is a state root whose records directory holds n files.
func recordFiles(b *testing.B, n int) string {
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
	return root
}
