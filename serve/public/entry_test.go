package public

import (
	"crypto/tls"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"strings"
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
						e, _ := (*strArena)(nil).entry()
						entries[g][i] = e
						h.admit(e, &tls.Certificate{})
					}
				})
			}
			wg.Wait()
			hot := 0
			for _, es := range entries {
				for _, e := range es {
					if h.cert(e) != nil {
						hot++
					}
				}
			}
			want := min(tt.goroutines*tt.perG, hotSetSize)
			if hot > hotSetSize || (tt.goroutines == 1 && hot != want) {
				t.Fatalf("%d entries keep a certificate, want %d (at most %d)", hot, want, hotSetSize)
			}
			if last := entries[0][tt.perG-1]; tt.goroutines == 1 && h.cert(last) == nil {
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
// about twice that in RSS). The listener's name is shared, the source is
// a byte, and a "file" mapping's paths (or a source serve does not know)
// are kept, the others' are not.
func TestEntryIsSmall(t *testing.T) {
	if size := unsafe.Sizeof(entry{}); size > 72 {
		t.Errorf("an entry is %d bytes; keep it at most 72 (at 100k mappings each 8 bytes are 0.8 MB)", size)
	}
	fresh := func(s string) string { return string([]byte(s)) } // as the TOML decoder makes them
	listener := "web"
	for _, tc := range []struct {
		m     state.Mapping
		files bool
	}{
		{state.Mapping{ID: "a", Source: fresh(state.SourceManual), Listener: fresh("web")}, false},
		{state.Mapping{ID: "b", Source: fresh(state.SourceACME), Listener: fresh("web")}, false},
		{state.Mapping{ID: "s", Source: fresh(state.SourceSelfSigned), Listener: fresh("web")}, false},
		{state.Mapping{ID: "c", Source: fresh(state.SourceFile), Listener: fresh("web"), CertFile: "/etc/c.pem", KeyFile: "/etc/c.key"}, true},
		{state.Mapping{ID: "d", Source: fresh("future"), Listener: fresh("web")}, true},
	} {
		e := newEntry(&tc.m, listener, 1, nil)
		if unsafe.StringData(e.listenerName()) != unsafe.StringData(listener) {
			t.Errorf("%s: the entry keeps its own copy of the listener's name", tc.m.ID)
		}
		if (e.files() != nil) != tc.files {
			t.Errorf("%s: files %+v", tc.m.ID, e.files())
		}
		if got := e.mapping(); got.ID != tc.m.ID || got.Source != tc.m.Source || got.CertFile != tc.m.CertFile || got.KeyFile != tc.m.KeyFile {
			t.Errorf("%s: mapping() = %+v, want the files of %+v", tc.m.ID, got, tc.m)
		}
		if (e.source == sourceFile) != (tc.m.Source == state.SourceFile) {
			t.Errorf("%s: source %d", tc.m.ID, e.source)
		}
	}
}

// An entry holds no pointer: the collector then scans only its slab's
// header, not 100k entries on every cycle (at 100k mappings a cycle cost
// 20 ms CPU with seven pointer words per entry, 14 ms without).
func TestEntryHoldsNoPointer(t *testing.T) {
	var walk func(path string, typ reflect.Type)
	walk = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Pointer, reflect.UnsafePointer, reflect.String, reflect.Slice, reflect.Map,
			reflect.Chan, reflect.Func, reflect.Interface:
			t.Errorf("entry%s is a %s: keep what it points to in slabHdr, and an index in the entry", path, typ.Kind())
		case reflect.Struct:
			for i := range typ.NumField() {
				walk(path+"."+typ.Field(i).Name, typ.Field(i).Type)
			}
		case reflect.Array:
			walk(path+"[]", typ.Elem())
		}
	}
	walk("", reflect.TypeFor[entry]())
	// Entries from a slab and alone find their slab's header.
	var a strArena
	for i := range entrySlab + 2 {
		for _, arena := range []*strArena{&a, nil} {
			e := newEntry(&state.Mapping{ID: fmt.Sprintf("m%d", i), Listener: "web", Hosts: []string{"h.example.com"}}, "web", 1, arena)
			if e.id() != fmt.Sprintf("m%d", i) || e.listenerName() != "web" || e.hosts() != "h.example.com"+hostEnd {
				t.Fatalf("entry %d (arena %v) reads %q, %q, %q", i, arena != nil, e.id(), e.listenerName(), e.hosts())
			}
		}
	}
}

// An entry keeps none of its mapping's strings: a loaded mapping's are
// views of the records memo's buffer (one string kept keeps all of it),
// so the entry copies them, many entries into one block of a strArena.
func TestEntryKeepsNoViewOfTheRecord(t *testing.T) {
	memo := strings.Repeat("x", 1<<10) + "m01web" + "https://up.example.com" + "a.example.com*.b.example.com" + "/etc/c.pem/etc/c.key"
	at := strings.Index(memo, "m01")
	view := func(n int) string { s := memo[at : at+n]; at += n; return s }
	m := state.Mapping{ID: view(3), Listener: view(3), Upstream: view(22), Hosts: []string{view(13), view(15)},
		Source: state.SourceFile, CertFile: view(10), KeyFile: view(10)}
	inMemo := func(s string) bool {
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(memo)))
		return s != "" && p >= lo && p < lo+uintptr(len(memo))
	}
	for _, a := range []*strArena{nil, new(strArena)} {
		e := newEntry(&m, "web", 1, a)
		hosts := slices.Collect(e.eachHost())
		for _, s := range append([]string{e.strs(), e.listenerName(), e.files().cert, e.files().key}, hosts...) {
			if inMemo(s) {
				t.Errorf("arena %v: the entry keeps %q, a view of the record's buffer", a != nil, s)
			}
		}
		if e.id() != m.ID || e.upstream() != m.Upstream || !slices.Equal(hosts, m.Hosts) || e.hostCount() != 2 || e.mapping().CertFile != m.CertFile {
			t.Errorf("arena %v: entry %+v does not hold mapping %+v", a != nil, e, m)
		}
	}
}

// A strArena's strings stay as they were handed out while it hands out
// more, across blocks and for strings larger than a block.
func TestStrArenaKeepsWhatItHandedOut(t *testing.T) {
	var a strArena
	var want, got []string
	for i := range 3 * strBlock / 100 {
		m := state.Mapping{ID: fmt.Sprintf("%0*d", 1+i%200, i), Upstream: "u", Hosts: []string{"h.example.com"}}
		if i == 700 {
			m.ID = strings.Repeat("L", strBlock+1)
		}
		want = append(want, m.ID+"uh.example.com"+hostEnd)
		got = append(got, strsOf(a.entryStrs(&m)))
	}
	got = append(got, strsOf(a.entryStrs(&state.Mapping{ID: "a", Hosts: []string{"a.example.com", "*.b.example.com"}})), strsOf(a.entryStrs(&state.Mapping{})))
	want = append(want, "aa.example.com\x00*.b.example.com\x00", "")
	if !slices.Equal(got, want) {
		t.Fatal("a string the arena handed out changed")
	}
}

// strsOf is the string entryStrs placed, as an entry reads it.
func strsOf(b []byte, off uint32, n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&b[off], n)
}

// What serve keeps of the loaded config holds no mapping and not the
// store's baseline of them (every id and digest, the ids views of the
// records memo): the entries hold what is served.
func TestServeKeepsNoLoadedMappings(t *testing.T) {
	f := newFixture(t, []state.Mapping{{ID: "a", Hosts: []string{"a.example.com"}}, {ID: "b", Hosts: []string{"b.example.com"}}}, nil, Options{})
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if len(f.s.cfg.Mappings) != 0 || len(f.s.cfg.Listeners) != 1 {
		t.Errorf("serve keeps %d mappings and %d listeners of the config, want 0 and 1", len(f.s.cfg.Mappings), len(f.s.cfg.Listeners))
	}
	// Every other field of the config that holds memory is one serve
	// chose to keep: a field added to state.Config is decided here.
	keep := map[string]bool{"SchemaVersion": true, "ACME": true, "Listeners": true, "DNSCredentials": true, "Mappings": false}
	v := reflect.ValueOf(f.s.cfg).Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if k, ok := keep[name]; !ok {
			if !v.Field(i).IsZero() {
				t.Errorf("serve keeps the config's field %s", name)
			}
		} else if !k && !v.Field(i).IsZero() {
			t.Errorf("serve keeps the config's field %s", name)
		}
	}
}

// A strArena hands out entries from slabs (one object per entrySlab
// entries for the collector to mark, not one each), each entry once, and
// an entry filled later leaves those handed out before as they were.
func TestStrArenaHandsOutEntriesFromSlabs(t *testing.T) {
	var a strArena
	var es []*entry
	for i := range 2*entrySlab + 3 {
		m := state.Mapping{ID: fmt.Sprintf("m%d", i), Source: state.SourceACME, Hosts: []string{fmt.Sprintf("h%d.example.com", i)}}
		es = append(es, newEntry(&m, "web", uint64(i), &a))
	}
	adjacent := 0
	for i, e := range es {
		if e.id() != fmt.Sprintf("m%d", i) || e.digest != uint64(i) || e.hosts() != fmt.Sprintf("h%d.example.com", i)+hostEnd {
			t.Fatalf("entry %d holds %q, digest %d: it was handed out again", i, e.id(), e.digest)
		}
		if i > 0 && uintptr(unsafe.Pointer(e))-uintptr(unsafe.Pointer(es[i-1])) == unsafe.Sizeof(entry{}) {
			adjacent++
		}
	}
	if want := len(es) - 3; adjacent < want {
		t.Errorf("%d of %d entries follow the one before in memory; want %d (slabs of %d)", adjacent, len(es), want, entrySlab)
	}
	if e, h := (*strArena)(nil).entry(); e == nil || e.loaded.Load() || e.hdr() != h {
		t.Error("a nil strArena hands out no zero entry")
	}
}
