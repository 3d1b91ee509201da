// Package sni selects the certificate of one public HTTPS listener by the TLS
// server name and counts the handshakes that fall back because nothing
// matched. Both run on the handshake path of a listener that may hold 100k
// mappings, so lookups are O(1) and do not allocate, and everything an
// attacker can choose (the server name) is bounded.
package sni

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/p2pstream/p2ptls/state/hostname"
)

// Index maps server names to values: exact hosts first, then single-label
// leftmost wildcards. It is immutable once built, so concurrent lookups need
// no locks.
//
// An Index made by Edit shares its base maps with the Index it came from
// and keeps what changed since in a small overlay, so that changing one
// mapping of 100k costs a copy of the overlay, not of the base. Once the
// overlay outgrows compactAt, Build folds it into a new base: O(hosts)
// once every so many changes.
//
// The base is two tables (see table) the garbage collector walks only the
// values of.
type Index[T any] struct {
	exact *table[T]
	// wild is keyed by what follows "*.", so a lookup slices the name after
	// its first dot instead of building "*.rest" on every handshake.
	wild *table[T]
	over *overlay[T] // nil: none
	n    int         // hosts mapped
}

// overlay holds the hosts changed since the base was made: a value, or
// gone for a host removed from the base.
type overlay[T any] struct {
	exact, wild map[string]slot[T]
}

type slot[T any] struct {
	v    T
	gone bool
}

func (o *overlay[T]) size() int { return len(o.exact) + len(o.wild) }

// compactMin is the least overlay compacted; a variable so that a test
// can make compaction happen often.
var compactMin = 256

// compactAt is the overlay size past which Build makes a new base. About
// the square root of the hosts balances what each Edit copies (the
// overlay) against how often the base is copied.
func compactAt(n int) int {
	k := compactMin
	for k*k < n {
		k *= 2
	}
	return k
}

// Builder fills an Index; it is not safe for concurrent use.
type Builder[T any] struct {
	x     *Index[T]
	built bool
}

// NewBuilder starts an Index; size is a capacity hint (0 is fine).
func NewBuilder[T any](size int) *Builder[T] { return NewBuilderOn[T](size, nil, nil) }

// NewBuilderOn starts an Index that keeps no copy of its hosts: every host
// Add maps to v (without its "*." for a wildcard) must lie in keyOf(v),
// which must return the same bytes for as long as an Index holds v, and
// the Index keeps only where it lies. With refs its base keeps each value
// as refs.Ref of it, which holds no pointer. A nil keyOf and a nil refs
// are NewBuilder.
func NewBuilderOn[T any](size int, keyOf func(T) string, refs Refs[T]) *Builder[T] {
	return &Builder[T]{x: &Index[T]{exact: newTable(size, keyOf, refs), wild: newTable(0, keyOf, refs)}}
}

// Refs turns an Index's values into 32-bit references and back, so that
// its base holds no pointer for the garbage collector to follow: at 100k
// hosts a pointer each was 100k pointers every cycle marked, all into a
// few hundred objects (serve's slabs of entries). Deref(Ref(v)) must be v
// for as long as an Index made by the Builder, or by an Edit of it, holds
// v. Ref is called only while a Builder adds or builds, Deref also by
// concurrent lookups.
type Refs[T any] interface {
	Ref(v T) uint32
	Deref(ref uint32) T
}

// split is host's map key and whether it is a wildcard.
func split(host string) (string, bool) { return strings.CutPrefix(host, "*.") }

// get looks key up in the exact (or wildcard) hosts, overlay first.
func (x *Index[T]) get(key string, wild bool) (v T, ok bool) {
	if x.over != nil {
		m := x.over.exact
		if wild {
			m = x.over.wild
		}
		if s, found := m[key]; found {
			return s.v, !s.gone
		}
	}
	if wild {
		return x.wild.get(key)
	}
	return x.exact.get(key)
}

// set maps key, or unmaps it (gone), in the overlay when there is one,
// else in the base (a new Index, not shared yet).
func (x *Index[T]) set(key string, wild bool, v T, gone bool) {
	if x.over != nil {
		m := x.over.exact
		if wild {
			m = x.over.wild
		}
		m[key] = slot[T]{v: v, gone: gone}
		return
	}
	t := x.exact
	if wild {
		t = x.wild
	}
	if gone {
		t.del(key)
	} else {
		t.set(key, v)
	}
}

// Add maps host, an already normalised exact name or "*.example.com"
// wildcard (see hostname.Normalize), to v. It refuses a host given twice,
// since one name can select only one certificate.
func (b *Builder[T]) Add(host string, v T) error {
	if b.built {
		return errors.New("sni: Add after Build; the index is immutable once built")
	}
	rest, wild := split(host)
	// Cheap checks against caller bugs: a host that is not in normalised
	// form could never match, and "" would catch handshakes without SNI.
	if rest == "" || hostname.NormalizeSNI(host) != host || strings.Contains(rest, "*") {
		return fmt.Errorf("host %q is not a normalised host name; give it as hostname.Normalize returns it", host)
	}
	if _, dup := b.x.get(rest, wild); dup {
		return fmt.Errorf("host %q is added twice; each host can select only one certificate on a listener", host)
	}
	if !b.x.exact.keyable(rest, v) {
		return fmt.Errorf("host %q is not in its value's key; NewBuilderOn's keyOf must hold every host of a value", host)
	}
	b.x.set(rest, wild, v, false)
	b.x.n++
	return nil
}

// Build returns the Index. Further calls return the same Index; Add is
// refused from now on, because the Index must not change under lookups.
func (b *Builder[T]) Build() *Index[T] {
	if !b.built && b.x.over != nil && b.x.over.size() > compactAt(b.x.n) {
		b.x.compact()
	}
	if !b.built && b.x.over == nil {
		b.x.exact.trim()
		b.x.wild.trim()
	}
	b.built = true
	return b.x
}

// compact folds the overlay into a new base.
func (x *Index[T]) compact() {
	fold := func(base *table[T], over map[string]slot[T]) *table[T] {
		t := newTable(base.live+len(over), base.keyOf, base.enc)
		base.each(func(k string, v T) {
			if _, changed := over[k]; !changed {
				t.set(k, v)
			}
		})
		for k, s := range over {
			if !s.gone {
				t.set(k, s.v)
			}
		}
		t.trim()
		return t
	}
	x.exact, x.wild = fold(x.exact, x.over.exact), fold(x.wild, x.over.wild)
	x.over = nil
}

// Lookup returns the value for a TLS server name: the exact host, else the
// wildcard covering its leftmost label, else a miss. An empty server name (no
// SNI) is a miss. It allocates only when the name has upper-case letters.
func (x *Index[T]) Lookup(serverName string) (v T, ok bool) {
	v, ok, _ = x.Select(serverName, nil)
	return v, ok
}

// Select is Lookup that passes over values usable rejects: the exact host
// if usable, else the covering wildcard if usable, else a miss. A mapping
// that has no certificate yet must not hide a wildcard that has one, so
// serve asks for "usable" as "has a certificate that loads". skipped
// reports that an exact host matched but was passed over, whatever the
// wildcard did. A nil usable takes every value. usable is called at most
// twice and Select itself allocates only as Lookup does.
func (x *Index[T]) Select(serverName string, usable func(T) bool) (v T, ok, skipped bool) {
	name := hostname.NormalizeSNI(serverName)
	if v, ok = x.get(name, false); ok {
		if usable == nil || usable(v) {
			return v, true, false
		}
		skipped = true
	}
	// i <= 0: no dot, or an empty first label (".example.com"), which no
	// wildcard covers; nor does one cover an IP-shaped name (hostname.Matches).
	if i := strings.IndexByte(name, '.'); i > 0 && !hostname.IPShaped(name) {
		if v, ok = x.get(name[i+1:], true); ok && (usable == nil || usable(v)) {
			return v, true, skipped
		}
	}
	var zero T
	return zero, false, skipped
}

// Len returns the number of hosts, exact and wildcard.
func (x *Index[T]) Len() int { return x.n }

// Edit starts a Builder of a new Index with x's hosts, for a reload that
// changes a few mappings: x stays as it is for the lookups in flight, and
// the Builder's Index replaces it. It shares x's base and copies only the
// overlay (see Index), so an Edit costs O(changes since the last compaction).
func (x *Index[T]) Edit() *Builder[T] {
	o := &overlay[T]{exact: map[string]slot[T]{}, wild: map[string]slot[T]{}}
	if x.over != nil {
		o.exact, o.wild = maps.Clone(x.over.exact), maps.Clone(x.over.wild)
	}
	return &Builder[T]{x: &Index[T]{exact: x.exact, wild: x.wild, over: o, n: x.n}}
}

// Get returns the value that host, a normalised exact name or wildcard as
// Add takes, is mapped to: who owns the host, for a change that must not
// take it from another mapping.
func (b *Builder[T]) Get(host string) (v T, ok bool) {
	rest, wild := split(host)
	return b.x.get(rest, wild)
}

// Remove unmaps host; a host that is not mapped is no error.
func (b *Builder[T]) Remove(host string) error {
	if b.built {
		return errors.New("sni: Remove after Build; the index is immutable once built")
	}
	rest, wild := split(host)
	if _, ok := b.x.get(rest, wild); !ok {
		return nil
	}
	var zero T
	b.x.set(rest, wild, zero, true)
	b.x.n--
	return nil
}
