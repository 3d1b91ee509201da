package storecopy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// BenchmarkCopy copies a state of 2,000 files of 2 KiB (a CA, a listener
// and mapping-sized files in 100 directories) per run; b.SetBytes makes
// the figure MB/s of state copied, read back and verified.
func BenchmarkCopy(b *testing.B) {
	for _, to := range []string{"dir", "mem"} {
		b.Run("dir to "+to, func(b *testing.B) {
			from := newDir(b, "from")
			fill(b, from.Store, true)
			data := make([]byte, 2048)
			ctx := context.Background()
			var c state.Change
			for i := range 2000 {
				c.Writes = append(c.Writes, state.FileWrite{Name: fmt.Sprintf("certs/public/m%03d/f%d.pem", i%100, i), Data: data, Perm: state.SecretMode})
			}
			if err := from.Store.Apply(ctx, c); err != nil {
				b.Fatal(err)
			}
			var size int64
			b.ResetTimer()
			for i := range b.N {
				dst := newMem(fmt.Sprint(i))
				if to == "dir" {
					dst = newDir(b, fmt.Sprint(i))
				}
				res, err := Copy(ctx, from, dst, Options{Now: time.Now()})
				if err != nil {
					b.Fatal(err)
				}
				size = res.Bytes
			}
			b.SetBytes(size)
		})
	}
}
