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
type Index[T any] struct {
	exact map[string]T
	// wild is keyed by what follows "*.", so a lookup slices the name after
	// its first dot instead of building "*.rest" on every handshake.
	wild map[string]T
}

// Builder fills an Index; it is not safe for concurrent use.
type Builder[T any] struct {
	x     *Index[T]
	built bool
}

// NewBuilder starts an Index; size is a capacity hint (0 is fine).
func NewBuilder[T any](size int) *Builder[T] {
	return &Builder[T]{x: &Index[T]{exact: make(map[string]T, size), wild: map[string]T{}}}
}

// Add maps host, an already normalised exact name or "*.example.com"
// wildcard (see hostname.Normalize), to v. It refuses a host given twice,
// since one name can select only one certificate.
func (b *Builder[T]) Add(host string, v T) error {
	if b.built {
		return errors.New("sni: Add after Build; the index is immutable once built")
	}
	rest, wild := strings.CutPrefix(host, "*.")
	// Cheap checks against caller bugs: a host that is not in normalised
	// form could never match, and "" would catch handshakes without SNI.
	if rest == "" || hostname.NormalizeSNI(host) != host || strings.Contains(rest, "*") {
		return fmt.Errorf("host %q is not a normalised host name; give it as hostname.Normalize returns it", host)
	}
	m := b.x.exact
	if wild {
		m = b.x.wild
	}
	if _, dup := m[rest]; dup {
		return fmt.Errorf("host %q is added twice; each host can select only one certificate on a listener", host)
	}
	m[rest] = v
	return nil
}

// Build returns the Index. Further calls return the same Index; Add is
// refused from now on, because the Index must not change under lookups.
func (b *Builder[T]) Build() *Index[T] {
	b.built = true
	return b.x
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
	if v, ok = x.exact[name]; ok {
		if usable == nil || usable(v) {
			return v, true, false
		}
		skipped = true
	}
	// i <= 0: no dot, or an empty first label (".example.com"), which no
	// wildcard covers.
	if i := strings.IndexByte(name, '.'); i > 0 {
		if v, ok = x.wild[name[i+1:]]; ok && (usable == nil || usable(v)) {
			return v, true, skipped
		}
	}
	var zero T
	return zero, false, skipped
}

// Len returns the number of hosts, exact and wildcard.
func (x *Index[T]) Len() int { return len(x.exact) + len(x.wild) }

// Edit starts a Builder holding a copy of x's hosts, for a reload that
// changes a few mappings: x stays as it is for the lookups in flight, and
// the Builder's Index replaces it. Copying costs O(hosts) (measured in
// BenchmarkEdit), far less than reading the mappings again.
func (x *Index[T]) Edit() *Builder[T] {
	return &Builder[T]{x: &Index[T]{exact: maps.Clone(x.exact), wild: maps.Clone(x.wild)}}
}

// Get returns the value that host, a normalised exact name or wildcard as
// Add takes, is mapped to: who owns the host, for a change that must not
// take it from another mapping.
func (b *Builder[T]) Get(host string) (v T, ok bool) {
	rest, wild := strings.CutPrefix(host, "*.")
	if wild {
		v, ok = b.x.wild[rest]
	} else {
		v, ok = b.x.exact[rest]
	}
	return v, ok
}

// Remove unmaps host; a host that is not mapped is no error.
func (b *Builder[T]) Remove(host string) error {
	if b.built {
		return errors.New("sni: Remove after Build; the index is immutable once built")
	}
	rest, wild := strings.CutPrefix(host, "*.")
	if wild {
		delete(b.x.wild, rest)
	} else {
		delete(b.x.exact, rest)
	}
	return nil
}
