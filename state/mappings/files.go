package mappings

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// Store names of the certificate files; see the package documentation.
const (
	PublicDir    = state.MappingsDir
	CertFileName = "cert.pem"
	KeyFileName  = "key.pem"
	MetaFileName = "meta.toml"
)

// MappingDir is the store directory of mapping id's files. Ids are checked
// by hostname.ValidateName, so they never contain a slash or "..".
func MappingDir(id string) string { return PublicDir + "/" + id }

func certName(id string) string { return MappingDir(id) + "/" + CertFileName }
func keyName(id string) string  { return MappingDir(id) + "/" + KeyFileName }
func metaName(id string) string { return MappingDir(id) + "/" + MetaFileName }

// Meta is meta.toml: where the current certificate came from and how its
// issuance and renewal went. Zero fields are left out of the file.
type Meta struct {
	Source string `toml:"source,omitempty"`
	// IssuedAt is when this certificate was put in place (generated,
	// uploaded or issued), not its NotBefore.
	IssuedAt          time.Time `toml:"issued_at,omitempty"`
	NotAfter          time.Time `toml:"not_after,omitempty"`
	FingerprintSHA256 string    `toml:"fingerprint_sha256,omitempty"`
	LastAttemptAt     time.Time `toml:"last_attempt_at,omitempty"`
	LastError         string    `toml:"last_error,omitempty"`
	NextRenewalAt     time.Time `toml:"next_renewal_at,omitempty"`
	// LastErrorDetail is the full text of the last error (bounded);
	// LastError is its one-line summary.
	LastErrorDetail string `toml:"last_error_detail,omitempty"`
	// ACME: failed attempts in a row, and when to try again (back-off).
	Attempts int       `toml:"attempts,omitempty"`
	RetryAt  time.Time `toml:"retry_at,omitempty"`
	// BackoffReason says why RetryAt holds: BackoffRateLimited,
	// BackoffAccountPaused or BackoffFailed; empty when not backing off.
	BackoffReason string `toml:"backoff_reason,omitempty"`
	// Reissue, when not empty, says why the certificate in place is due
	// for a new order though it is valid: the mapping's hosts or ACME
	// settings changed (Set). The next issued certificate clears it.
	Reissue string `toml:"reissue,omitempty"`
	// ACME renewal info (ARI) of this certificate; see meta_ari.go.
	ARI
}

// Reasons of a back-off (Meta.BackoffReason).
const (
	// BackoffRateLimited: the ACME server answered rateLimited; RetryAt is
	// its Retry-After.
	BackoffRateLimited = "rate_limited"
	// BackoffAccountPaused: the ACME server paused the account for these
	// hosts; an operator unpauses it (the link is in LastError).
	BackoffAccountPaused = "account_paused"
	// BackoffFailed: any other failure; RetryAt doubles with each attempt.
	BackoffFailed = "failed"
)

// BackingOff reports whether m is in a back-off at now, and why (a meta
// written before reasons were recorded counts as BackoffFailed).
func (m Meta) BackingOff(now time.Time) (string, bool) {
	if !now.Before(m.RetryAt) {
		return "", false
	}
	if m.BackoffReason == "" {
		return BackoffFailed, true
	}
	return m.BackoffReason, true
}

// MetaChanged returns the mappings whose metadata c names, in its order:
// where Set marks one for a new order (Meta.Reissue), so that serve orders
// it at once instead of at its next timed pass.
func MetaChanged(c state.Changed) []string {
	var ids []string
	for _, n := range c.Names {
		if id, file, ok := cutMappingFile(n); ok && file == MetaFileName {
			ids = append(ids, id)
		}
	}
	return ids
}

// LoadMeta reads the metadata of mapping id; a mapping without any (not yet
// issued, or source "file") has the zero Meta.
func LoadMeta(ctx context.Context, s state.Store, id string) (Meta, error) {
	b, err := s.Read(ctx, metaName(id))
	return parseMeta(metaName(id), b, err)
}

// parseMeta decodes meta.toml store file name as read (b, err).
func parseMeta(name string, b []byte, err error) (Meta, error) {
	var m Meta
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("read %s: %w", name, err)
	}
	if err := toml.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("parse %s: %w", name, err)
	}
	return m, nil
}

// SaveMeta replaces the metadata of mapping id; s is a change of the state
// (state.Tx), so that the record goes with what it describes.
func SaveMeta(ctx context.Context, s state.Store, id string, m Meta) error {
	b, err := toml.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", metaName(id), err)
	}
	if err := s.Write(ctx, metaName(id), b, state.SecretMode); err != nil {
		return fmt.Errorf("save %s: %w", metaName(id), err)
	}
	return nil
}

// newMeta describes kp, put in place at now from source.
func newMeta(source string, kp *pki.KeyPair, now time.Time) Meta {
	now = now.UTC().Truncate(time.Second)
	return Meta{
		Source:            source,
		IssuedAt:          now,
		NotAfter:          kp.Cert.NotAfter.UTC(),
		FingerprintSHA256: pki.Fingerprint(kp.Cert),
		LastAttemptAt:     now,
		NextRenewalAt:     pki.RenewalTime(kp.Cert),
	}
}

// WriteCertificate puts a new certificate for mapping id in place (ACME);
// s is a change of the state (state.Tx).
func WriteCertificate(ctx context.Context, s state.Store, id string, kp *pki.KeyPair, meta Meta) error {
	return writeMaterial(ctx, s, id, kp, meta)
}

// writeMaterial writes a mapping's key, certificate and metadata, key first:
// a reader that finds cert.pem finds its key too (except during a
// replacement, when a key/certificate mismatch makes serve keep the pair it
// already has).
func writeMaterial(ctx context.Context, s state.Store, id string, kp *pki.KeyPair, meta Meta) error {
	if err := s.Write(ctx, keyName(id), kp.KeyPEM, state.SecretMode); err != nil {
		return fmt.Errorf("save %s: %w", keyName(id), err)
	}
	if err := s.Write(ctx, certName(id), kp.CertPEM, state.PublicMode); err != nil {
		return fmt.Errorf("save %s: %w", certName(id), err)
	}
	return SaveMeta(ctx, s, id, meta)
}

// Cert is a mapping's certificate chain (leaf first) and private key, ready
// for tls.X509KeyPair.
type Cert struct {
	Chain   []*x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Load reads mapping m's certificate and key and checks that they belong
// together: from the state for sources manual, self-signed and acme, from
// m.CertFile and m.KeyFile for source file. A certificate that is not there
// (yet) gives an error matching fs.ErrNotExist.
func Load(ctx context.Context, s state.Store, m state.Mapping) (*Cert, error) {
	certPEM, chain, err := readChain(ctx, s, m)
	if err != nil {
		return nil, fmt.Errorf("load mapping %q: %w", m.ID, err)
	}
	keyPEM, err := readFile(ctx, s, m, keyName(m.ID), m.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load mapping %q: %w", m.ID, err)
	}
	if _, err := pki.LoadKeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("load mapping %q: %w", m.ID, err)
	}
	return &Cert{Chain: chain, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// ReadFiles returns mapping m's certificate chain and key as stored, unparsed, for
// a server that parses them itself (tls.X509KeyPair checks the pair).
func ReadFiles(ctx context.Context, s state.Store, m state.Mapping) (certPEM, keyPEM []byte, err error) {
	// The key first: writers put the key in place before the certificate,
	// so a reader racing a renewal sees a pair that matches or fails, never
	// a new certificate with the old key that would be served.
	if keyPEM, err = readFile(ctx, s, m, keyName(m.ID), m.KeyFile); err != nil {
		return nil, nil, fmt.Errorf("load mapping %q: %w", m.ID, err)
	}
	// Measured before the caller parses it: a huge RSA key costs seconds
	// to minutes to parse and to sign with (pki.MaxRSABits), and a file
	// mapping's key can be replaced on disk by anything.
	if err := pki.CheckKeySize(keyPEM); err != nil {
		return nil, nil, fmt.Errorf("load mapping %q: %s: %w", m.ID, keyPath(s, m), err)
	}
	if certPEM, err = readFile(ctx, s, m, certName(m.ID), m.CertFile); err != nil {
		return nil, nil, fmt.Errorf("load mapping %q: %w", m.ID, err)
	}
	return certPEM, keyPEM, nil
}

// CertFiles are the files a mapping's certificate comes from, as serve
// watches them: store names for stored certificates (the certificate alone:
// it is written last, after its key), both paths for source "file", whose
// files an operator may replace in any order.
func CertFiles(m state.Mapping) (names []string, onDisk bool) {
	if m.Source == state.SourceFile {
		return []string{m.CertFile, m.KeyFile}, true
	}
	return []string{certName(m.ID)}, false
}

// readChain reads and parses mapping m's certificate chain.
func readChain(ctx context.Context, s state.Store, m state.Mapping) ([]byte, []*x509.Certificate, error) {
	certPEM, err := readFile(ctx, s, m, certName(m.ID), m.CertFile)
	if err != nil {
		return nil, nil, err
	}
	chain, err := pki.ParseCertChain(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath(s, m), err)
	}
	return certPEM, chain, nil
}

// readFile reads a mapping's file: path for source file, the store name
// otherwise.
func readFile(ctx context.Context, s state.Store, m state.Mapping, name, path string) ([]byte, error) {
	if m.Source == state.SourceFile {
		b, err := userfile.Read(path, userfile.MaxPEM)
		if err == nil {
			return b, nil
		}
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			return nil, serr // "no certificate", as Load promises
		}
		// A file that became a FIFO, a device or too large is the mapping's
		// problem, not the input of the command that reads it (exit 1).
		return nil, &fault.Error{Kind: fault.Failure, Err: err}
	}
	b, err := s.Read(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// certPath and keyPath name mapping m's files the way an operator finds
// them on disk.
func certPath(s state.Store, m state.Mapping) string {
	if m.Source == state.SourceFile {
		return m.CertFile
	}
	return state.Locate(s, certName(m.ID))
}

func keyPath(s state.Store, m state.Mapping) string {
	if m.Source == state.SourceFile {
		return m.KeyFile
	}
	return state.Locate(s, keyName(m.ID))
}
