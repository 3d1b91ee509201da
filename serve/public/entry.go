package public

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/p2pstream/p2ptls/serve/packedcert"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// entry is one mapping as served. Its certificate is parsed on first use:
// at 100k mappings parsing all of them up front would make start and reload
// slow, while a handshake pays the parse once. It is then kept packed (see
// packedcert) and rebuilt per handshake unless the entry is in its
// listener's hot set.
type entry struct {
	m     state.Mapping
	store state.Store

	once   sync.Once
	cert   packedcert.Cert
	err    error
	sig    certSig     // the files' signature when they were read
	loaded atomic.Bool // set after cert, err and sig
	hot    atomic.Pointer[tls.Certificate]
}

// load reads the certificate files, once.
func (e *entry) load() error {
	e.once.Do(func() {
		e.sig = signature(e.store, e.m)
		e.cert, e.err = e.read()
		e.loaded.Store(true)
	})
	return e.err
}

// certificate returns the certificate for a handshake.
func (e *entry) certificate(hot *hotSet) (*tls.Certificate, error) {
	if c := e.hot.Load(); c != nil {
		return c, nil
	}
	if err := e.load(); err != nil {
		return nil, err
	}
	c, err := e.cert.Certificate()
	if err != nil {
		return nil, err
	}
	hot.admit(e, c)
	return c, nil
}

func (e *entry) read() (packedcert.Cert, error) {
	certPEM, keyPEM, err := mappings.ReadFiles(e.store, e.m)
	if err != nil {
		return packedcert.Cert{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return packedcert.Cert{}, fmt.Errorf("load certificate of mapping %q: %w", e.m.ID, err)
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
func (e *entry) changed() bool {
	return e.loaded.Load() && signature(e.store, e.m) != e.sig
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

// signature describes a mapping's certificate files cheaply (inode, size,
// modification time), so a reload notices which ones changed without
// reading them.
func signature(store state.Store, m state.Mapping) certSig {
	names, onDisk := mappings.CertFiles(m)
	var sig certSig
	for i, f := range names[:min(len(names), len(sig))] {
		var info os.FileInfo
		var err error
		if onDisk {
			info, err = os.Stat(f)
		} else {
			info, err = store.Stat(f)
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
