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
// An entry holds no pointer, so the garbage collector never scans it: at
// 100k mappings entries with seven pointer words each (strings, listener,
// files, certificate, error, hot certificate) were 12 of the 15 MiB every
// cycle scanned. What it refers to is kept by its slab's header
// (slabHdr), which it finds by its place in the slab (at), and indexes:
// the string block its id, upstream and hosts lie in, its listener's
// name, the chunk its packed certificate lies in, and the rare rest
// (entryExtra: a "file" mapping's paths, a load error, a certificate not
// packed). Its id, upstream and hosts are copied into a strArena block:
// the loaded mapping's strings are views of the records memo's buffer,
// which one kept string would keep whole (about 100 bytes per mapping).
type entry struct {
	// digest tells a reload whether the whole mapping changed.
	digest uint64
	sig    uint64         // the files' signature (certSig.hash) when they were read
	loc    packedcert.Loc // the packed certificate in hdr().chunks[chunk-1]
	// strs is hdr().blocks[block][strOff:][:strEnd]: id, upstream, then
	// hosts (each ended by hostEnd, normalised as in the listener's index).
	strOff               uint32
	idEnd, upEnd, strEnd uint32
	slot                 int32         // the entry's index in its view's entries (see swapViews)
	hot                  atomic.Uint32 // 1 + its slot in its listener's hotSet, 0 for none
	extra                atomic.Uint32 // 1 + its index in hdr().extras, 0 for none
	mu                   sync.Mutex    // serialises the one load
	chunk                uint16        // 1 + the index of its certificate's chunk in hdr().chunks
	block, listener      uint16        // indexes in hdr().blocks and hdr().listeners
	at                   uint8         // its index in its slab
	source               sourceKind
	loaded               atomic.Bool // set after loc, chunk, extra's fail and sig
}

// slabHdr is what the entries of one slab refer to, by index: the one
// part of a slab the collector scans.
type slabHdr struct {
	blocks    [][]byte // written only before the entries are served
	listeners []string // likewise
	mu        sync.Mutex
	chunks    []packedcert.Owner // guarded by mu: entries load their certificates concurrently
	extras    []*entryExtra      // guarded by mu; each replaced, never changed
	// gen and num are the slab's number in the entryDir of generation
	// gen; only the goroutine that builds views uses them.
	gen, num uint32
}

// slab is entrySlab entries and their header; slab1 is one entry and its
// header, for a change of a few mappings. Entries find their header at the
// same offset before the first entry in both.
type (
	slab struct {
		slabHdr
		ents [entrySlab]entry
	}
	slab1 struct {
		slabHdr
		ents [1]entry
	}
)

const slabEnts = unsafe.Offsetof(slab{}.ents)

// Both kinds of slab keep their entries where hdr looks for them.
var _ = [1]int{}[slabEnts-unsafe.Offsetof(slab1{}.ents)]

// hdr is the header of e's slab.
func (e *entry) hdr() *slabHdr {
	return (*slabHdr)(unsafe.Add(unsafe.Pointer(e), -int(slabEnts)-int(e.at)*int(unsafe.Sizeof(entry{}))))
}

// entryExtra is what few entries have: a pointer's worth of them lives in
// the slab's header rather than a field of each.
type entryExtra struct {
	files *fileRef        // source "file" (and a source serve does not know) only
	fail  error           // why the certificate did not load; nil if it did
	cert  packedcert.Cert // a certificate packedcert keeps as given (not packed)
}

// getExtra is e's extra, nil for none.
func (e *entry) getExtra() *entryExtra {
	i := e.extra.Load()
	if i == 0 {
		return nil
	}
	h := e.hdr()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.extras[i-1]
}

// setExtra replaces e's extra by a copy that fn changed.
func (e *entry) setExtra(fn func(*entryExtra)) {
	h := e.hdr()
	h.mu.Lock()
	defer h.mu.Unlock()
	var x entryExtra
	i := e.extra.Load()
	if i != 0 {
		x = *h.extras[i-1]
	}
	fn(&x)
	if i == 0 {
		h.extras = append(h.extras, &x)
		e.extra.Store(uint32(len(h.extras)))
		return
	}
	h.extras[i-1] = &x
}

// files is where e's certificate files are, nil unless it names them.
func (e *entry) files() *fileRef {
	if x := e.getExtra(); x != nil {
		return x.files
	}
	return nil
}

// loadErr is why e's certificate did not load, nil if it did.
func (e *entry) loadErr() error {
	if x := e.getExtra(); x != nil {
		return x.fail
	}
	return nil
}

// setCert keeps c as e's certificate; e.mu is held.
func (e *entry) setCert(c packedcert.Cert) {
	o, loc, ok := c.Split()
	if !ok {
		if c != (packedcert.Cert{}) {
			e.setExtra(func(x *entryExtra) { x.cert = c })
		}
		return
	}
	h := e.hdr()
	h.mu.Lock()
	if n := len(h.chunks); n == 0 || h.chunks[n-1] != o {
		h.chunks = append(h.chunks, o)
	}
	e.chunk = uint16(len(h.chunks))
	h.mu.Unlock()
	e.loc = loc
}

// cert is e's certificate, once it loaded.
func (e *entry) cert() packedcert.Cert {
	if e.chunk == 0 {
		if x := e.getExtra(); x != nil {
			return x.cert
		}
		return packedcert.Cert{}
	}
	h := e.hdr()
	h.mu.Lock()
	o := h.chunks[e.chunk-1]
	h.mu.Unlock()
	return packedcert.Join(o, e.loc)
}

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

// strs is e's id, upstream and hosts.
func (e *entry) strs() string {
	if e.strEnd == 0 {
		return ""
	}
	return unsafe.String(&e.hdr().blocks[e.block][e.strOff], e.strEnd)
}

func (e *entry) id() string       { return e.strs()[:e.idEnd] }
func (e *entry) upstream() string { return e.strs()[e.idEnd:e.upEnd] }
func (e *entry) hosts() string    { return e.strs()[e.upEnd:] }

// listenerName is the name of e's listener.
func (e *entry) listenerName() string { return e.hdr().listeners[e.listener] }

// sourceName is e's mapping's source.
func (e *entry) sourceName() string {
	if e.source == sourceOther {
		f := e.files()
		if f == nil {
			return ""
		}
		return f.source
	}
	return sourceNames[e.source]
}

// newEntry is m's entry on listener, the listener's own name: m's copy
// of it is one more string per mapping. Its own strings are copied into a.
func newEntry(m *state.Mapping, listener string, digest uint64, a *strArena) *entry {
	e, h := a.entry()
	at := e.at
	*e = entry{digest: digest, at: at, idEnd: uint32(len(m.ID)), upEnd: uint32(len(m.ID) + len(m.Upstream))}
	if b, off, n := a.entryStrs(m); n > 0 {
		if k := len(h.blocks); k == 0 || unsafe.SliceData(h.blocks[k-1]) != unsafe.SliceData(b) {
			h.blocks = append(h.blocks, b)
		}
		e.block, e.strOff, e.strEnd = uint16(len(h.blocks)-1), off, uint32(n)
	}
	name := intern(m.Listener, listener)
	if k := len(h.listeners); k == 0 || h.listeners[k-1] != name {
		h.listeners = append(h.listeners, name)
	}
	e.listener = uint16(len(h.listeners) - 1)
	for k, name := range sourceNames {
		if k != int(sourceOther) && m.Source == name {
			e.source = sourceKind(k)
		}
	}
	if m.CertFile != "" || m.KeyFile != "" || e.source == sourceOther {
		f := &fileRef{cert: strings.Clone(m.CertFile), key: strings.Clone(m.KeyFile)}
		if e.source == sourceOther {
			f.source = strings.Clone(m.Source)
		}
		e.setExtra(func(x *entryExtra) { x.files = f })
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
// keeps its slab's 18 KiB and the blocks its slab's entries use: a full
// reload keeps the unchanged entries whole, and a change of a few mappings
// makes its own); what it has handed out is never handed out again. The
// zero strArena is ready; a nil one gives each entry a slab and a block of
// its own (a change of a few mappings).
type strArena struct {
	block []byte
	slab  *slab
	used  int       // entries of slab handed out
	dir   *entryDir // the generation the views built with it refer by
}

// refs is the entryDir of the views built with a: a new generation.
func (a *strArena) refs() *entryDir {
	if a.dir == nil {
		a.dir = newEntryDir()
	}
	return a.dir
}

// strBlock is the size of a strArena's blocks; entrySlab the entries of
// a slab (at most 256: entry.at is a byte).
const (
	strBlock  = 64 << 10
	entrySlab = 256
)

// entry is a zero entry to fill (but for at) and its slab's header.
func (a *strArena) entry() (*entry, *slabHdr) {
	if a == nil {
		s := new(slab1)
		return &s.ents[0], &s.slabHdr
	}
	if a.slab == nil || a.used == entrySlab {
		a.slab, a.used = new(slab), 0
	}
	e := &a.slab.ents[a.used]
	e.at = uint8(a.used)
	a.used++
	return e, &a.slab.slabHdr
}

// entryStrs copies m's id, upstream and hosts, as entry.strs keeps them,
// into a block: they are b[off:off+n], n zero for none.
func (a *strArena) entryStrs(m *state.Mapping) (b []byte, off uint32, n int) {
	n = len(m.ID) + len(m.Upstream)
	for _, h := range m.Hosts {
		n += len(h) + len(hostEnd)
	}
	if n == 0 {
		return nil, 0, 0
	}
	var w []byte
	if a == nil {
		b = make([]byte, 0, n)
		w = b
	} else {
		if cap(a.block)-len(a.block) < n {
			a.block = make([]byte, 0, max(strBlock, n))
		}
		b, off = a.block, uint32(len(a.block))
		w = a.block[off:off:cap(a.block)]
	}
	w = append(append(w, m.ID...), m.Upstream...)
	for _, h := range m.Hosts {
		w = append(append(w, h...), hostEnd...)
	}
	if a != nil {
		a.block = a.block[:int(off)+n]
	}
	return b[:cap(b)], off, n
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
	if f := e.files(); f != nil {
		m.CertFile, m.KeyFile = f.cert, f.key
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
	return e.loadErr()
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
	if c, err := e.read(ctx, store); err != nil {
		e.setExtra(func(x *entryExtra) { x.fail = err })
	} else {
		e.setCert(c)
	}
	e.loaded.Store(true)
}

// fingerprint is the SHA-256 of e's leaf, once it loaded: resumed sessions
// are bound to it (see tickets.go).
func (e *entry) fingerprint() [sha256.Size]byte { return e.cert().Fingerprint() }

// certificate returns the certificate for a handshake.
func (e *entry) certificate(store state.Store, hot *hotSet) (*tls.Certificate, error) {
	if c := hot.cert(e); c != nil {
		return c, nil
	}
	if err := e.load(store); err != nil {
		return nil, err
	}
	c, err := e.cert().Certificate()
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
// the oldest admitted first. It needs no lock: an entry names its slot,
// and a slot's pair names its entry, so a race can only miss a kept
// certificate, which costs one rebuild, never hand out another's.
type hotSet struct {
	next  atomic.Uint64
	slots [hotSetSize]atomic.Pointer[hotPair]
}

// hotPair is a kept certificate and its entry.
type hotPair struct {
	e *entry
	c *tls.Certificate
}

func (h *hotSet) admit(e *entry, c *tls.Certificate) {
	i := h.next.Add(1) % hotSetSize
	h.slots[i].Store(&hotPair{e, c})
	e.hot.Store(uint32(i) + 1)
}

// cert is e's kept certificate, nil for none.
func (h *hotSet) cert(e *entry) *tls.Certificate {
	i := e.hot.Load()
	if i == 0 {
		return nil
	}
	if p := h.slots[i-1].Load(); p != nil && p.e == e {
		return p.c
	}
	return nil
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
