package state

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkApply: one Apply of the files an import of n mappings writes
// into an empty state (a record and a directory of three files for
// each), and one that replaces n mappings' directories (what regenerating
// them writes). It runs in $TMPDIR: point it at the file system to measure.
//
//	go test -run '^$' -bench Apply -benchtime 3x ./state/
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1, 1_000, 10_000} {
		files := func(replace bool) Change {
			var c Change
			for i := range n {
				id := fmt.Sprintf("m%06d", i)
				dir := "certs/public/" + id
				if replace {
					c.Deletes = append(c.Deletes, dir)
				}
				c.Writes = append(c.Writes,
					FileWrite{Name: dir + "/cert.pem", Data: bytes.Repeat([]byte("c"), 700), Perm: PublicMode},
					FileWrite{Name: dir + "/key.pem", Data: bytes.Repeat([]byte("k"), 240), Perm: SecretMode},
					FileWrite{Name: dir + "/meta.toml", Data: bytes.Repeat([]byte("m"), 300), Perm: SecretMode},
					FileWrite{Name: RecordName(id), Data: bytes.Repeat([]byte("r"), 200), Perm: SecretMode})
			}
			return c
		}
		for _, replace := range []bool{false, true} {
			name := "new"
			if replace {
				name = "replace"
			}
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					d := OpenDir(filepath.Join(b.TempDir(), "state"), time.Minute)
					unlock, err := d.Lock(context.Background(), "bench")
					if err != nil {
						b.Fatal(err)
					}
					if replace {
						if err := d.Apply(context.Background(), files(false)); err != nil {
							b.Fatal(err)
						}
					}
					c := files(replace)
					b.StartTimer()
					if err := d.Apply(context.Background(), c); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					if err := unlock(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			})
		}
	}
}
