package snapshot_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/snapshot"
)

// benchPrimary is a primary with n mappings (records and a certificate
// file each, as many files as a real state has per mapping).
func benchPrimary(b *testing.B, n int) *primary { return benchPrimaryWith(b, n, true) }

// benchPrimaryWith is benchPrimary, with the certificate files or without.
func benchPrimaryWith(b *testing.B, n int, certs bool) *primary {
	b.Helper()
	ctx := context.Background()
	d := state.OpenDir(filepath.Join(b.TempDir(), "primary"), 5*time.Second)
	p := &primary{backend: d, Dir: d}
	err := state.Update(ctx, p, "bench", func(tx *state.Tx) error {
		tx.Config.Listeners = []state.Listener{{Name: "web", Addr: "127.0.0.1:8443"}}
		for i := range n {
			id := fmt.Sprintf("m%d", i)
			tx.Config.Mappings = append(tx.Config.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"},
				Source: state.SourceSelfSigned, Days: 90})
			if !certs {
				continue
			}
			if err := tx.Write(ctx, "certs/public/"+id+"/cert.pem", make([]byte, 1500), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchOptions(p *primary, dir string) snapshot.Options {
	o := options(p, dir)
	o.Heartbeat = time.Hour // nothing in the background while timing
	return o
}

// BenchmarkFirstCopy is Open on an empty directory: the whole state read
// under the lock, checked and written.
func BenchmarkFirstCopy(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("mappings=%d", n), func(b *testing.B) {
			p := benchPrimary(b, n)
			for i := 0; b.Loop(); i++ {
				s, err := snapshot.Open(context.Background(), benchOptions(p, filepath.Join(b.TempDir(), fmt.Sprint(i))))
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkChangeCopied is one change copied: a certificate file (no
// check of the config needed) or a record (the copy as changed is loaded).
func BenchmarkChangeCopied(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{1000, 10000} {
		p := benchPrimary(b, n)
		s, err := snapshot.Open(ctx, benchOptions(p, filepath.Join(b.TempDir(), "snapshot")))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("cert/mappings=%d", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				name := "certs/public/m1/cert.pem"
				b.StopTimer()
				if err := p.Dir.Write(ctx, name, []byte(fmt.Sprint(i)), 0o644); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.Update(ctx, p, []string{name}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("record/mappings=%d", n), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				err := state.Update(ctx, p.Dir, "bench", func(tx *state.Tx) error {
					tx.Config.Mappings[1].Upstream = fmt.Sprintf("http://127.0.0.1:%d", 1000+i%1000)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.Update(ctx, p, []string{state.RecordName("m1")}); err != nil {
					b.Fatal(err)
				}
			}
		})
		s.Close()
	}
}

// BenchmarkRecordChangeChecked is the check that one record changed by
// the primary still loads with the rest, alone: "whole" loads the copy as
// changed (every record read and checked, as before Config.LoadChanged),
// "changed" reads and checks the changed record against the config the
// copy held.
func BenchmarkRecordChangeChecked(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10000, 100000} {
		p := benchPrimaryWith(b, n, false)
		s, err := snapshot.Open(ctx, benchOptions(p, filepath.Join(b.TempDir(), "snapshot")))
		if err != nil {
			b.Fatal(err)
		}
		rec, err := p.Read(ctx, state.RecordName("m1"))
		if err != nil {
			b.Fatal(err)
		}
		ch := state.Change{Writes: []state.FileWrite{{Name: state.RecordName("m1"),
			Data: append(rec, "upstream = 'http://127.0.0.1:8080'\n"...), Perm: state.SecretMode}}}
		for _, whole := range []bool{true, false} {
			name := map[bool]string{true: "whole", false: "changed"}[whole]
			b.Run(fmt.Sprintf("%s/mappings=%d", name, n), func(b *testing.B) {
				for b.Loop() {
					if err := s.Check(ctx, ch, whole); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		s.Close()
	}
}
