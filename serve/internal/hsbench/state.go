package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// Mapping i has one host: h<i>.example.com, except that every fourth
// (i%4 == 3) is a wildcard, *.w<i>.example.net.
func isWildcard(i int) bool { return i%4 == 3 }

func host(i int) string {
	if isWildcard(i) {
		return fmt.Sprintf("*.w%06d.example.net", i)
	}
	return fmt.Sprintf("h%06d.example.com", i)
}

// prepareState writes a state directory with the listener "bench" on addr
// and n mappings, each with its own self-signed certificate. The pairs are
// generated on all cores and written with plain os.WriteFile: p2ptls's
// atomic writes fsync twice per file, which would only make setup slower.
func prepareState(ctx context.Context, dir, addr string, n int) (sniMix, error) {
	cfg := &state.Config{
		SchemaVersion: state.SchemaVersion,
		Listeners:     []state.Listener{{Name: "bench", Addr: addr}},
		Mappings:      make([]state.Mapping, n),
	}
	for i := range cfg.Mappings {
		cfg.Mappings[i] = state.Mapping{ID: mappingID(i), Listener: "bench", Hosts: []string{host(i)}, Source: state.SourceManual}
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, runtime.NumCPU())
	now := time.Now()
	for range runtime.NumCPU() {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := writeMapping(dir, cfg.Mappings[i], now); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return sniMix{}, err
	}
	if err := ctx.Err(); err != nil {
		return sniMix{}, err
	}
	if err := state.SaveConfig(ctx, state.OpenDir(dir, time.Minute), cfg); err != nil {
		return sniMix{}, err
	}
	return sniMix{n: n}, nil
}

func writeMapping(dir string, m state.Mapping, now time.Time) error {
	kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), now, 90*24*time.Hour)
	if err != nil {
		return err
	}
	md := filepath.Join(dir, filepath.FromSlash(mappings.MappingDir(m.ID)))
	if err := os.MkdirAll(md, state.DirMode); err != nil {
		return err
	}
	// Key first, as p2ptls writes them.
	if err := os.WriteFile(filepath.Join(md, mappings.KeyFileName), kp.KeyPEM, state.SecretMode); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(md, mappings.CertFileName), kp.CertPEM, state.PublicMode)
}

// sniMix chooses the server names clients send: 70 % exact names, 25 %
// names covered by a wildcard, 5 % unmapped (served the fallback). With
// fewer than 4 mappings there is no wildcard, and mapped names are exact.
// Both servers get the same mix, so their ClientHellos are alike.
type sniMix struct{ n int }

// unmapped names are a fixed few, like a misconfigured DNS record: serve
// counts fallback hits per name, and 5 % of random names would grow that
// table to its bound and keep rewriting the status file.
const unmappedNames = 16

// pick returns a name and whether a mapping covers it.
func (m sniMix) pick(r *rand.Rand) (name string, mapped bool) {
	x := r.IntN(100)
	switch {
	case x < 5:
		return fmt.Sprintf("nomap%02d.example.org", r.IntN(unmappedNames)), false
	case x < 30 && m.n >= 4:
		i := 4*r.IntN(m.n/4) + 3
		return fmt.Sprintf("a%d.w%06d.example.net", r.IntN(1000), i), true
	}
	for {
		if i := r.IntN(m.n); !isWildcard(i) {
			return fmt.Sprintf("h%06d.example.com", i), true
		}
	}
}

// warmName is a name that selects mapping i.
func warmName(i int) string {
	if isWildcard(i) {
		return fmt.Sprintf("warm.w%06d.example.net", i)
	}
	return host(i)
}
