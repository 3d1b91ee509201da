package public

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"hash/maphash"
	"iter"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/p2pstream/p2ptls/serve/packedcert"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// entry is one mapping as served. Its certificate is parsed on first use:
// at 100k mappings parsing all of them up front would make start and reload
// slow, while a handshake pays the parse once. It is then kept packed (see
// packedcert) and rebuilt per handshake unless the entry is in its
// listener's hot set.
//
// Its fields are few and small, and pointers come first, because there is
// one per mapping (at 100k, each 8 bytes are 0.8 MB of heap and, with the
// heap goal, about twice that in RSS) and the garbage collector scans every
// entry up to its last pointer on every cycle: 128 bytes and 7 pointer
// words, where one string field each for id, upstream and hosts, the
// source as a string, a sync.Once and the leaf's fingerprint made 208 and
// 12. Its listener is shared with the view's name instead of a copy; its
// id, upstream and hosts are one string, copied into a strArena: the
// loaded mapping's strings are views of the records memo's buffer, which
// one kept string would keep whole (about 100 bytes per mapping).
type entry struct {
	strs     string   // id, upstream, then hosts (each ended by hostEnd, normalised as in the listener's index)
	listener string   // the listener's own name
	files    *fileRef // source "file" (and a source serve does not know) only
	cert     packedcert.Cert
	fail     *loadError // why the certificate did not load; nil if it did
	hot      atomic.Pointer[tls.Certificate]

	// digest tells a reload whether the whole mapping changed.
	digest       uint64
	sig          uint64      // the files' signature (certSig.hash) when they were read
	idEnd, upEnd uint32      // where id and upstream end in strs
	slot         int32       // the entry's index in its view's entries (see swapViews)
	loaded       atomic.Bool // set after cert, fail and sig
	source       sourceKind
	mu           sync.Mutex // serialises the one load
}

// loadError is an entry's load failure: a pointer, half an error's size,
// since nearly every entry has none.
type loadError struct{ err error }

// fileRef is where a "file" mapping's certificate and key are, and a
// source serve does not know by name.
type fileRef struct{ cert, key, source string }

// sourceKind is a mapping's source in one byte; sourceOther keeps its
// name in files.
type sourceKind uint8

const (
	sourceOther sourceKind = iota
	sourceManual
	sourceACME
	sourceSelfSigned
	sourceFile
)

var sourceNames = [...]string{sourceManual: state.SourceManual, sourceACME: state.SourceACME,
	sourceSelfSigned: state.SourceSelfSigned, sourceFile: state.SourceFile}

func (e *entry) id() string       { return e.strs[:e.idEnd] }
func (e *entry) upstream() string { return e.strs[e.idEnd:e.upEnd] }
func (e *entry) hosts() string    { return e.strs[e.upEnd:] }

// sourceName is e's mapping's source.
func (e *entry) sourceName() string {
	if e.source == sourceOther {
		if e.files == nil {
			return ""
		}
		return e.files.source
	}
	return sourceNames[e.source]
}

// newEntry is m's entry on listener, the listener's own name: m's copy
// of it is one more string per mapping. Its own strings are copied into a.
func newEntry(m *state.Mapping, listener string, digest uint64, a *strArena) *entry {
	e := a.entry()
	*e = entry{strs: a.entryStrs(m), listener: intern(m.Listener, listener), digest: digest,
		idEnd: uint32(len(m.ID)), upEnd: uint32(len(m.ID) + len(m.Upstream))}
	for k, name := range sourceNames {
		if k != int(sourceOther) && m.Source == name {
			e.source = sourceKind(k)
		}
	}
	if m.CertFile != "" || m.KeyFile != "" || e.source == sourceOther {
		e.files = &fileRef{cert: strings.Clone(m.CertFile), key: strings.Clone(m.KeyFile)}
		if e.source == sourceOther {
			e.files.source = strings.Clone(m.Source)
		}
	}
	return e
}

// hostEnd ends each host in entry.hosts: no normalised host holds it.
const hostEnd = "\x00"

// eachHost yields e's hosts, in the order of its mapping.
func (e *entry) eachHost() iter.Seq[string] {
	return func(yield func(string) bool) {
		for h := range strings.SplitSeq(strings.TrimSuffix(e.hosts(), hostEnd), hostEnd) {
			if h != "" && !yield(h) {
				return
			}
		}
	}
}

// hostCount is the number of e's hosts.
func (e *entry) hostCount() int { return strings.Count(e.hosts(), hostEnd) }

// strArena copies strings into large shared blocks, and hands out entries
// from slabs: a string per field of every mapping, or an entry, is an
// object each, which the garbage collector marks on every cycle, and a
// block or slab holds hundreds or thousands of them. A block or slab is
// kept while any of what it handed out is (an entry kept across reloads
// keeps its slab's 32 KiB: a full reload keeps the unchanged entries
// whole, and a change of a few mappings makes its own); what it has handed
// out is never handed out again. The zero strArena is ready; a nil one
// allocates each string and entry on its own (a change of a few mappings).
type strArena struct {
	block []byte
	slab  []entry
}

// strBlock is the size of a strArena's blocks; entrySlab the entries of
// a slab.
const (
	strBlock  = 64 << 10
	entrySlab = 256
)

// entry is a zero entry to fill.
func (a *strArena) entry() *entry {
	if a == nil {
		return new(entry)
	}
	if len(a.slab) == 0 {
		a.slab = make([]entry, entrySlab)
	}
	e := &a.slab[0]
	a.slab = a.slab[1:]
	return e
}

// entryStrs is m's id, upstream and hosts as entry.strs keeps them.
func (a *strArena) entryStrs(m *state.Mapping) string {
	n := len(m.ID) + len(m.Upstream)
	for _, h := range m.Hosts {
		n += len(h) + len(hostEnd)
	}
	if n == 0 {
		return ""
	}
	var b []byte
	if a == nil {
		b = make([]byte, 0, n)
	} else {
		b = a.grow(n)
	}
	b = append(append(b, m.ID...), m.Upstream...)
	for _, h := range m.Hosts {
		b = append(append(b, h...), hostEnd...)
	}
	if a == nil {
		return string(b)
	}
	return a.keep(b)
}

// grow returns the free end of the block, with room for n bytes.
func (a *strArena) grow(n int) []byte {
	if cap(a.block)-len(a.block) < n {
		a.block = make([]byte, 0, max(strBlock, n))
	}
	return a.block[len(a.block):len(a.block):cap(a.block)]
}

// keep hands out b, filled from grow's slice, as a string.
func (a *strArena) keep(b []byte) string {
	a.block = a.block[:len(a.block)+len(b)]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// intern returns the one of known equal to s, else s.
func intern(s string, known ...string) string {
	for _, k := range known {
		if s == k {
			return k
		}
	}
	return s
}

// mapping is what the mappings package needs to find e's files.
func (e *entry) mapping() state.Mapping {
	m := state.Mapping{ID: e.id(), Source: e.sourceName()}
	if e.files != nil {
		m.CertFile, m.KeyFile = e.files.cert, e.files.key
	}
	return m
}

// load reads the certificate files, once. Every handshake that needs the
// entry shares the result, so no one caller's end (a client gone) may
// become the entry's error: the read runs on a context of its own.
func (e *entry) load(store state.Store) error {
	if !e.loaded.Load() {
		e.loadOnce(store)
	}
	if e.fail != nil {
		return e.fail.err
	}
	return nil
}

// loadOnce is load's first call, serialised: a sync.Once would be 4 more
// bytes per entry, beside loaded.
func (e *entry) loadOnce(store state.Store) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.loaded.Load() {
		return
	}
	ctx := context.Background()
	e.sig = signature(ctx, store, e.mapping()).hash()
	var err error
	if e.cert, err = e.read(ctx, store); err != nil {
		e.fail = &loadError{err}
	}
	e.loaded.Store(true)
}

// fingerprint is the SHA-256 of e's leaf, once it loaded: resumed sessions
// are bound to it (see tickets.go).
func (e *entry) fingerprint() [sha256.Size]byte { return e.cert.Fingerprint() }

// certificate returns the certificate for a handshake.
func (e *entry) certificate(store state.Store, hot *hotSet) (*tls.Certificate, error) {
	if c := e.hot.Load(); c != nil {
		return c, nil
	}
	if err := e.load(store); err != nil {
		return nil, err
	}
	c, err := e.cert.Certificate()
	if err != nil {
		return nil, err
	}
	hot.admit(e, c)
	return c, nil
}

func (e *entry) read(ctx context.Context, store state.Store) (packedcert.Cert, error) {
	certPEM, keyPEM, err := mappings.ReadFiles(ctx, store, e.mapping())
	if err != nil {
		return packedcert.Cert{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return packedcert.Cert{}, fmt.Errorf("load certificate of mapping %q: %w", e.id(), err)
	}
	// Packed, the pair is one object the garbage collector need not scan;
	// parsed, it is a dozen, and at 100k mappings marking them on every
	// GC cycle is most of what the mappings add to a handshake's cost.
	return packedcert.Pack(&pair)
}

// hotSetSize bounds how many entries of a listener keep their certificate
// rebuilt: enough for every mapping of a typical deployment and for the
// busy names of a large one, few enough that their parsed keys cost the
// garbage collector nothing worth measuring.
const hotSetSize = 1024

// hotSet holds the entries whose rebuilt certificate is kept, replacing
// the oldest admitted first. It needs no lock: a race can only clear an
// entry's certificate early, which costs one rebuild.
type hotSet struct {
	next  atomic.Uint64
	slots [hotSetSize]atomic.Pointer[entry]
}

func (h *hotSet) admit(e *entry, c *tls.Certificate) {
	e.hot.Store(c)
	i := h.next.Add(1) % hotSetSize
	if old := h.slots[i].Swap(e); old != nil && old != e {
		old.hot.Store(nil)
	}
}

// changed reports whether e read its files and they have changed since. An
// entry that has not been used yet reads whatever is current when it is.
func (e *entry) changed(ctx context.Context, store state.Store) bool {
	return e.loaded.Load() && signature(ctx, store, e.mapping()).hash() != e.sig
}

// mappingDigest hashes every field of m. Equal digests stand for equal
// mappings: a 64-bit hash with a per-process seed makes the chance that an
// edited mapping keeps its entry negligible, and keeping a digest instead
// of the mapping spares the garbage collector most of an entry.
func mappingDigest(seed maphash.Seed, m *state.Mapping) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	for _, f := range [...]string{m.ID, m.Listener, m.Source, m.Upstream, m.CertFile, m.KeyFile,
		m.Challenge, m.DNSCredential, m.KeyType, m.Profile} {
		h.WriteString(f)
		h.WriteByte(0)
	}
	for _, host := range m.Hosts {
		h.WriteString(host)
		h.WriteByte(0)
	}
	maphash.WriteComparable(&h, m.Days)
	return h.Sum64()
}

// fileSig identifies one version of a file cheaply; the zero value means
// the file is missing.
type fileSig struct {
	ino, size, mtime int64
}

// certSig is the signature of a mapping's certificate files, at most two
// (see mappings.CertFiles). It is a value, not a string: at 100k mappings
// one more heap object per entry costs every GC cycle.
type certSig [2]fileSig

// sigSeed seeds certSig.hash.
var sigSeed = maphash.MakeSeed()

// hash is what an entry keeps of its files' signature: 8 bytes instead of
// 48, and a 64-bit hash with a per-process seed tells a change as surely.
func (c certSig) hash() uint64 { return maphash.Comparable(sigSeed, c) }

// signature describes a mapping's certificate files cheaply (inode, size,
// modification time), so a reload notices which ones changed without
// reading them.
func signature(ctx context.Context, store state.Store, m state.Mapping) certSig {
	names, onDisk := mappings.CertFiles(m)
	var sig certSig
	for i, f := range names[:min(len(names), len(sig))] {
		var info os.FileInfo
		var err error
		if onDisk {
			info, err = os.Stat(f)
		} else {
			info, err = store.Stat(ctx, f)
		}
		if err != nil {
			continue
		}
		sig[i] = fileSig{size: info.Size(), mtime: info.ModTime().UnixNano()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			sig[i].ino = int64(st.Ino)
		}
	}
	return sig
}
