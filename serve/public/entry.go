package public

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// entry is one mapping as served. Its certificate is parsed on first use:
// at 100k mappings parsing all of them up front would make start and reload
// slow and the heap large, while a handshake pays the parse once.
type entry struct {
	m     state.Mapping
	store state.Store

	once   sync.Once
	cert   *tls.Certificate
	err    error
	sig    string      // the files' signature when they were read
	loaded atomic.Bool // set after cert, err and sig
}

func (e *entry) certificate() (*tls.Certificate, error) {
	e.once.Do(func() {
		e.sig = signature(e.store, e.m)
		e.cert, e.err = e.load()
		e.loaded.Store(true)
	})
	return e.cert, e.err
}

func (e *entry) load() (*tls.Certificate, error) {
	certPEM, keyPEM, err := mappings.ReadFiles(e.store, e.m)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate of mapping %q: %w", e.m.ID, err)
	}
	// The server handshake never needs the parsed leaf, and at 100k
	// mappings it is most of the heap the garbage collector walks.
	pair.Leaf = nil
	return &pair, nil
}

// changed reports whether e read its files and they have changed since. An
// entry that has not been used yet reads whatever is current when it is.
func (e *entry) changed() bool {
	return e.loaded.Load() && signature(e.store, e.m) != e.sig
}

// signature describes a mapping's certificate files cheaply (inode, size,
// modification time), so a reload notices which ones changed without
// reading them.
func signature(store state.Store, m state.Mapping) string {
	names, onDisk := mappings.CertFiles(m)
	var sig []byte
	for _, f := range names {
		var info os.FileInfo
		var err error
		if onDisk {
			info, err = os.Stat(f)
		} else {
			info, err = store.Stat(f)
		}
		if err != nil {
			sig = append(sig, "missing;"...)
			continue
		}
		var ino uint64
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		sig = fmt.Appendf(sig, "%d:%d:%d;", ino, info.Size(), info.ModTime().UnixNano())
	}
	return string(sig)
}
