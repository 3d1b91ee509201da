package public

import (
	"crypto/tls"
	"hash/maphash"
	"reflect"
	"sync"
	"testing"
	"unsafe"

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

// TestEntryIsSmall: an entry per mapping is most of what serve keeps
// besides the certificates (at 100k, each 8 bytes are 0.8 MB of heap and
// about twice that in RSS). Its strings that many entries hold alike share
// one copy, and a "file" mapping's paths are kept, the others' are not.
func TestEntryIsSmall(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size > 224 {
		t.Errorf("an entry is %d bytes; keep it at most 224 (a size class of the allocator)", size)
	}
	fresh := func(s string) string { return string([]byte(s)) } // as the TOML decoder makes them
	listener := "web"
	for _, tc := range []struct {
		m    state.Mapping
		want string
	}{
		{state.Mapping{ID: "a", Source: fresh(state.SourceManual), Listener: fresh("web")}, state.SourceManual},
		{state.Mapping{ID: "b", Source: fresh(state.SourceACME), Listener: fresh("web")}, state.SourceACME},
		{state.Mapping{ID: "c", Source: fresh(state.SourceFile), Listener: fresh("web"), CertFile: "/etc/c.pem", KeyFile: "/etc/c.key"}, state.SourceFile},
	} {
		e := newEntry(&tc.m, listener, 1)
		if unsafe.StringData(e.source) != unsafe.StringData(tc.want) {
			t.Errorf("%s: the entry keeps its own copy of source %q", tc.m.ID, e.source)
		}
		if unsafe.StringData(e.listener) != unsafe.StringData(listener) {
			t.Errorf("%s: the entry keeps its own copy of the listener's name", tc.m.ID)
		}
		if (e.files != nil) != (tc.m.Source == state.SourceFile) {
			t.Errorf("%s: files %+v", tc.m.ID, e.files)
		}
		if got := e.mapping(); got.ID != tc.m.ID || got.Source != tc.m.Source || got.CertFile != tc.m.CertFile || got.KeyFile != tc.m.KeyFile {
			t.Errorf("%s: mapping() = %+v, want the files of %+v", tc.m.ID, got, tc.m)
		}
	}
}
