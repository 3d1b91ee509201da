package mappings

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// certsMemo is the kind of the memo (state.OpenMemo) of what lists and
// renewal decisions need of each mapping's files, so that a list of 100k
// mappings stats them instead of reading and parsing them:
//   - cert.pem: its leaf's CertSummary, by the file's identity;
//   - meta.toml: the decoded Meta, by the file's identity;
//   - key.pem: whether it is the key of the certificate file of a given
//     identity (Load's pair check), by the key file's identity.
//
// Only a store that is a directory keeps one; elsewhere (a state.Tx, a
// backend) every call reads and parses. Source "file" mappings, whose
// files are the operator's, outside the state, are always read (with
// userfile's bounds): there are few of them, and their paths may name
// anything.
const certsMemo = "certs"

// CertSummary is what a list and a renewal decision need of a mapping's
// certificate: its leaf's validity, fingerprint and names.
type CertSummary struct {
	NotBefore, NotAfter time.Time // UTC
	Fingerprint         [sha256.Size]byte
	DNSNames            []string
	IPAddresses         []net.IP
}

// summarize describes leaf.
func summarize(leaf *x509.Certificate) CertSummary {
	return CertSummary{
		NotBefore:   leaf.NotBefore.UTC(),
		NotAfter:    leaf.NotAfter.UTC(),
		Fingerprint: sha256.Sum256(leaf.Raw),
		DNSNames:    leaf.DNSNames,
		IPAddresses: leaf.IPAddresses,
	}
}

// Leaf is a certificate carrying only the summarized fields, for pki's
// rules (RenewalTime, NeedsRenewal, Names.Equal), which read nothing else.
func (c CertSummary) Leaf() *x509.Certificate {
	return &x509.Certificate{NotBefore: c.NotBefore, NotAfter: c.NotAfter, DNSNames: c.DNSNames, IPAddresses: c.IPAddresses}
}

// FingerprintSHA256 is the fingerprint as pki.Fingerprint writes it.
func (c CertSummary) FingerprintSHA256() string {
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, 3*len(c.Fingerprint)-1)
	for i, x := range c.Fingerprint {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return string(b)
}

// readHook, set by tests, learns each file a Summaries reads (a miss).
var readHook func(name string)

func noteRead(name string) {
	if readHook != nil {
		readHook(name)
	}
}

// Summaries reads mappings' certificate summaries and metadata through the
// memo of one store (see certsMemo); safe for concurrent use. Save writes
// what it learnt.
type Summaries struct {
	s    state.Store
	memo *state.Memo
	dir  string // state.Locate(s, PublicDir), for the paths of 100k Infos
	seen Seen   // nil: stat each file (see EachSeen)
	// at stats the stored files relative to dir (see state.StatDir),
	// until Save; nil without a memo or with a relative dir.
	at *state.StatDir
}

// NewSummaries reads through the memo kept for s.
func NewSummaries(s state.Store) *Summaries { return NewSummariesSeen(s, nil) }

// NewSummariesSeen is NewSummaries taking the identities of the files
// from seen (nil: none) where it has them, for a caller that has just
// stat'ed them itself (see Seen).
func NewSummariesSeen(s state.Store, seen Seen) *Summaries {
	c := &Summaries{s: s, memo: state.OpenMemo(s, certsMemo), dir: state.Locate(s, PublicDir), seen: seen}
	if c.memo.Keeps() && filepath.IsAbs(c.dir) {
		c.at = state.OpenStatDir(c.dir)
	}
	return c
}

// direct reads through no memo: for one mapping shown, the files as they
// are now.
func direct(s state.Store) *Summaries {
	return &Summaries{s: s, memo: &state.Memo{}, dir: state.Locate(s, PublicDir)}
}

// path is certPath or keyPath of mapping m (file is CertFileName or
// KeyFileName) without cleaning a path per mapping: an id is one clean
// path element (hostname.ValidateName), so the result is the same.
func (c *Summaries) path(m state.Mapping, file string) string {
	switch {
	case m.Source != state.SourceFile:
		return c.dir + string(filepath.Separator) + m.ID + string(filepath.Separator) + file
	case file == CertFileName:
		return m.CertFile
	}
	return m.KeyFile
}

// Save writes the memo when something was learnt; a memo that cannot be
// written costs the next command time, never correctness. It ends the
// pass: the directory held open for stats is let go, so that a state
// swapped in since (a restore) is what any later call sees.
func (c *Summaries) Save() {
	c.at.Close()
	c.memo.Save()
}

// retain prunes, at the next save, the entries of mappings not in ids.
func (c *Summaries) retain(ids map[string]bool) {
	c.memo.Retain(func(name string) bool {
		id, _, ok := cutMappingFile(name)
		return ok && ids[id]
	})
}

// stat is the identity of mapping id's stored file (CertFileName,
// KeyFileName or MetaFileName), whose store name is name, for the memo's
// Get.
func (c *Summaries) stat(id, file, name string) (state.FileID, bool) {
	if c.seen != nil {
		if fid, ok := c.seen(id, file); ok {
			return fid, true
		}
	}
	if c.at != nil {
		// name is PublicDir/<id>/<file>: relative to the directory at
		// holds, without a string made for it.
		return c.at.Stat(name[len(PublicDir)+1:])
	}
	if filepath.IsAbs(c.dir) { // as Memo.Stat would make it, without a Join
		return c.memo.Stat(c.dir + string(filepath.Separator) + id + string(filepath.Separator) + file)
	}
	return c.memo.Stat(name)
}

// storedName is certName, keyName or metaName of id (file is the file's
// name) in one allocation: a pass makes 300k of them.
func storedName(id, file string) string { return PublicDir + "/" + id + "/" + file }

// cutMappingFile splits "mappings/<id>/<file>".
func cutMappingFile(name string) (id, file string, ok bool) {
	const pre = PublicDir + "/"
	if len(name) <= len(pre) || name[:len(pre)] != pre {
		return "", "", false
	}
	rest := name[len(pre):]
	for i := 0; i < len(rest); i++ {
		if rest[i] == '/' {
			return rest[:i], rest[i+1:], i > 0 && i < len(rest)-1
		}
	}
	return "", "", false
}

// Cert summarizes mapping m's certificate; its errors are readChain's (one
// matching fs.ErrNotExist when there is no certificate).
func (c *Summaries) Cert(ctx context.Context, m state.Mapping) (CertSummary, error) {
	if m.Source == state.SourceFile {
		_, chain, err := readChain(ctx, c.s, m)
		if err != nil {
			return CertSummary{}, err
		}
		return summarize(chain[0]), nil
	}
	sum, _, _, err := c.cert(ctx, m)
	return sum, err
}

// cert is Cert for a stored certificate, with the identity of the file it
// describes (zero without a memo) and whether the memo had it.
func (c *Summaries) cert(ctx context.Context, m state.Mapping) (_ CertSummary, _ state.FileID, hit bool, _ error) {
	name := storedName(m.ID, CertFileName)
	if id, ok := c.stat(m.ID, CertFileName, name); ok {
		if v, ok := c.memo.Get(name, id); ok {
			if sum, err := decodeCertSummary(v); err == nil {
				return sum, id, true, nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return CertSummary{}, state.FileID{}, false, err
	}
	noteRead(name)
	b, id, err := c.memo.Read(ctx, c.s, name)
	if err != nil {
		return CertSummary{}, state.FileID{}, false, fmt.Errorf("read %s: %w", name, err)
	}
	chain, err := pki.ParseCertChain(b)
	if err != nil {
		return CertSummary{}, state.FileID{}, false, fmt.Errorf("%s: %w", certPath(c.s, m), err)
	}
	sum := summarize(chain[0])
	c.memo.Put(name, id, encodeCertSummary(sum), false)
	return sum, id, false, nil
}

// Meta is LoadMeta through the memo.
func (c *Summaries) Meta(ctx context.Context, id string) (Meta, error) {
	name := storedName(id, MetaFileName)
	if fid, ok := c.stat(id, MetaFileName, name); ok {
		if v, ok := c.memo.Get(name, fid); ok {
			if meta, err := decodeMeta(v); err == nil {
				return meta, nil
			}
		}
	}
	noteRead(name)
	b, fid, err := c.memo.Read(ctx, c.s, name)
	meta, err := parseMeta(name, b, err)
	if err == nil && fid != (state.FileID{}) {
		c.memo.Put(name, fid, encodeMeta(meta), false)
	}
	return meta, err
}

// Usable summarizes mapping m's certificate when Load would succeed: the
// certificate parses and its key is there and belongs to it. Its errors
// are Load's.
func (c *Summaries) Usable(ctx context.Context, m state.Mapping) (CertSummary, error) {
	if m.Source == state.SourceFile {
		cert, err := Load(ctx, c.s, m)
		if err != nil {
			return CertSummary{}, err
		}
		return summarize(cert.Chain[0]), nil
	}
	sum, certID, hit, err := c.cert(ctx, m)
	if err != nil {
		return CertSummary{}, fmt.Errorf("load mapping %q: %w", m.ID, err)
	}
	name := storedName(m.ID, KeyFileName)
	// A pair verdict stands only with a certificate whose summary is
	// trusted (a hit, so no longer racy): one read again is checked again,
	// with the key, and a verdict not renewed by that check is dropped.
	if hit {
		if keyID, ok := c.stat(m.ID, KeyFileName, name); ok {
			if v, ok := c.memo.Get(name, keyID); ok {
				if pairedWith, err := decodeKeyPair(v); err == nil && pairedWith == certID {
					return sum, nil
				}
			}
		}
	}
	if _, ok := c.memo.Trusted(name); ok {
		c.memo.Forget(name)
	}
	noteRead(name)
	certPEM, gotID, err := c.memo.Read(ctx, c.s, certName(m.ID))
	if err != nil {
		return CertSummary{}, fmt.Errorf("load mapping %q: read %s: %w", m.ID, certName(m.ID), err)
	}
	keyPEM, keyID, err := c.memo.Read(ctx, c.s, name)
	if err != nil {
		return CertSummary{}, fmt.Errorf("load mapping %q: read %s: %w", m.ID, name, err)
	}
	kp, err := pki.LoadKeyPair(certPEM, keyPEM)
	if err != nil {
		return CertSummary{}, fmt.Errorf("load mapping %q: %w", m.ID, err)
	}
	if gotID != certID {
		sum = summarize(kp.Cert) // replaced since: describe what was checked
		if gotID != (state.FileID{}) {
			c.memo.Put(certName(m.ID), gotID, encodeCertSummary(sum), false)
		}
	}
	if gotID != (state.FileID{}) && keyID != (state.FileID{}) {
		c.memo.Put(name, keyID, encodeKeyPair(gotID), false)
	}
	return sum, nil
}
