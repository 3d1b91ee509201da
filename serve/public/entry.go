package public

import (
	"crypto/tls"
	"fmt"
	"os"
	"path"
	"sync"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// entry is one mapping as served. Its certificate is parsed on first use:
// at 100k mappings parsing all of them up front would make start and reload
// slow and the heap large, while a handshake pays the parse once.
type entry struct {
	m     state.Mapping
	sig   string // what the certificate files looked like when loaded
	store state.Store

	once sync.Once
	cert *tls.Certificate
	err  error
}

func (e *entry) certificate() (*tls.Certificate, error) {
	e.once.Do(func() {
		e.cert, e.err = e.load()
	})
	return e.cert, e.err
}

func (e *entry) load() (*tls.Certificate, error) {
	c, err := mappings.Load(e.store, e.m)
	if err != nil {
		return nil, fmt.Errorf("load certificate of mapping %q: %w", e.m.ID, err)
	}
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("load certificate of mapping %q: %w", e.m.ID, err)
	}
	return &pair, nil
}

// signature describes a mapping's certificate files cheaply (size and
// modification time), so a reload notices which ones changed without
// reading them.
func signature(store state.Store, m state.Mapping) string {
	var sig string
	for _, f := range certFiles(m) {
		var info os.FileInfo
		var err error
		if m.Source == state.SourceFile {
			info, err = os.Stat(f)
		} else {
			info, err = store.Stat(f)
		}
		if err != nil {
			sig += "missing;"
			continue
		}
		sig += fmt.Sprintf("%d:%d;", info.Size(), info.ModTime().UnixNano())
	}
	return sig
}

// certFiles are the files a mapping's certificate comes from: paths for
// source "file", store names for the others.
func certFiles(m state.Mapping) []string {
	if m.Source == state.SourceFile {
		return []string{m.CertFile, m.KeyFile}
	}
	dir := mappings.MappingDir(m.ID)
	return []string{path.Join(dir, mappings.CertFileName), path.Join(dir, mappings.KeyFileName)}
}
