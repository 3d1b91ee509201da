package state

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// benchState writes a state of n self-signed mappings in schema version
// (1: one p2ptls.toml; 2: records) straight to disk, as a save would.
func benchState(b *testing.B, version, n int) *Dir {
	b.Helper()
	root := filepath.Join(b.TempDir(), "state")
	cfg := &Config{SchemaVersion: SchemaVersion, Listeners: []Listener{{Name: "web", Addr: ":443"}}}
	for i := range n {
		id := fmt.Sprintf("m%06d", i)
		cfg.Mappings = append(cfg.Mappings, Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: SourceSelfSigned, Days: 90})
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, RecordsDir), 0o700); err != nil {
		b.Fatal(err)
	}
	top, err := encodeConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if version == schemaVersion1 {
		v1 := *cfg
		v1.SchemaVersion = schemaVersion1
		top, err = encodeV1(&v1)
		if err != nil {
			b.Fatal(err)
		}
	} else {
		for i := range cfg.Mappings {
			rec, err := encodeRecord(&cfg.Mappings[i])
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(RecordName(cfg.Mappings[i].ID))), rec, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFile), top, 0o600); err != nil {
		b.Fatal(err)
	}
	return OpenDir(root, time.Minute)
}

// BenchmarkLoadConfig: one p2ptls.toml against one record per mapping.
//
//	go test -run '^$' -bench 'LoadConfig|UpdateAddOne' -benchtime 3x ./state/
func BenchmarkLoadConfig(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, version := range []int{1, 2} {
			b.Run(fmt.Sprintf("v%d/%dk", version, n/1000), func(b *testing.B) {
				d := benchState(b, version, n)
				b.ResetTimer()
				for b.Loop() {
					cfg, err := LoadConfig(context.Background(), d)
					if err != nil || len(cfg.Mappings) != n {
						b.Fatalf("%d mappings, %v", len(cfg.Mappings), err)
					}
				}
			})
		}
	}
}

// BenchmarkUpdateAddOne: a change that adds one mapping to n records,
// through Update (lock, load, validate, save what changed: one record), as
// a new process makes it (a Dir opened afresh: the memo is read from its
// file). The first two changes, which read every record (the memo
// vouches for the listing from the first revision on), are not timed.
func BenchmarkUpdateAddOne(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			root := benchState(b, SchemaVersion, n).Root()
			for range 2 {
				if err := Update(context.Background(), OpenDir(root, time.Minute), "bench", func(tx *Tx) error {
					tx.Config.Listeners[0].Addr = tx.Config.Listeners[0].Addr + "0"
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			b.ResetTimer()
			for b.Loop() {
				i++
				id := fmt.Sprintf("new%06d", i)
				err := Update(context.Background(), OpenDir(root, time.Minute), "bench", func(tx *Tx) error {
					tx.Config.Mappings = append(tx.Config.Mappings, Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: SourceSelfSigned})
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMigrate: the one change that turns a v1 state of n mappings
// into records.
func BenchmarkMigrate(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				d := benchState(b, schemaVersion1, n)
				b.StartTimer()
				if err := Update(context.Background(), d, "bench", func(tx *Tx) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// encodeV1 is a schema_version 1 p2ptls.toml of cfg, every mapping in it.
func encodeV1(cfg *Config) ([]byte, error) {
	b, err := toml.Marshal(cfg)
	return append([]byte(configHeader), b...), err
}
