package mappings

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// BenchmarkImport: "mapping import" of n self-signed records into a state
// holding only their listener, as clibench measures it through the binary.
//
//	go test -run '^$' -bench Import -benchtime 1x -cpuprofile /tmp/import.prof ./state/mappings/
func BenchmarkImport(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			var in bytes.Buffer
			for i := range n {
				fmt.Fprintf(&in, `{"listener":"web","hosts":["i%06d.example.org"],"id":"i%06d","source":"self-signed","days":90}`+"\n", i, i)
			}
			for b.Loop() {
				b.StopTimer()
				s := state.OpenDir(filepath.Join(b.TempDir(), "state"), time.Minute)
				if _, err := state.AddListener(context.Background(), s, state.Listener{Name: "web", Addr: ":8443"}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				added, _, err := Import(context.Background(), s, bytes.NewReader(in.Bytes()), "bench", time.Now())
				if err != nil || len(added) != n {
					b.Fatalf("%d added, %v", len(added), err)
				}
			}
		})
	}
}
