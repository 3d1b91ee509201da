package public

import (
	"crypto/tls"
	"hash/maphash"
	"reflect"
	"sync"
	"testing"

	"github.com/p2pstream/p2ptls/state"
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

// A reload keeps an entry only when its mapping's digest is unchanged, so
// every field of a mapping must count in the digest.
func TestMappingDigestCoversEveryField(t *testing.T) {
	seed := maphash.MakeSeed()
	base := state.Mapping{}
	want := mappingDigest(seed, &base)
	typ := reflect.TypeFor[state.Mapping]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			m := base
			v := reflect.ValueOf(&m).Elem().Field(i)
			switch f.Type.Kind() {
			case reflect.String:
				v.SetString("x")
			case reflect.Int:
				v.SetInt(1)
			case reflect.Slice:
				v.Set(reflect.ValueOf([]string{"x"}))
			default:
				t.Fatalf("mappingDigest does not know fields of kind %s; add %s to it and to this test", f.Type.Kind(), f.Name)
			}
			if mappingDigest(seed, &m) == want {
				t.Fatalf("changing %s does not change the digest: add it to mappingDigest", f.Name)
			}
		})
	}
	// Moving a value between fields or hosts is a change too.
	a := state.Mapping{ID: "a", Hosts: []string{"x.example", "y.example"}}
	b := state.Mapping{ID: "a", Hosts: []string{"x.exampley.example"}}
	c := state.Mapping{ID: "", Listener: "a", Hosts: a.Hosts}
	if d := mappingDigest(seed, &a); d == mappingDigest(seed, &b) || d == mappingDigest(seed, &c) {
		t.Fatal("mappings that differ only in where the bytes are have the same digest")
	}
}
