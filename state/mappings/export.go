package mappings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// ExportOptions choose what Export leaves out.
type ExportOptions struct {
	// Listener exports only its mappings; "" exports all.
	Listener string
	// NoKeys leaves out the private keys of manual mappings (key_pem); such
	// a record shows the certificate but cannot be imported.
	NoKeys bool
}

// Export returns the mappings as the records that Import adds back, in the
// order of their ids, read under the lock so that a mapping and its files
// are seen together. A record holds what "mapping add" was given, not what
// was made of it since: a self-signed mapping gets a new certificate when
// imported, and an ACME one is issued again. A manual mapping carries its
// certificate chain and private key (unless NoKeys), so the export then
// holds secrets. A manual or file certificate outside its validity now is
// exported with allow_expired, as it was accepted when added.
func Export(ctx context.Context, s state.Store, opts ExportOptions, now time.Time) (_ []Record, err error) {
	unlock, err := s.Lock(ctx, "mapping export")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if opts.Listener != "" {
		if _, err := cfg.FindListener(opts.Listener); err != nil {
			return nil, err
		}
	}
	recs := []Record{}
	for _, m := range cfg.Mappings {
		if opts.Listener != "" && m.Listener != opts.Listener {
			continue
		}
		r := Record{
			Listener: m.Listener, Hosts: m.Hosts, ID: m.ID, Upstream: m.Upstream, Source: m.Source,
			CertFile: m.CertFile, KeyFile: m.KeyFile, Days: m.Days,
			Challenge: m.Challenge, DNSCredential: m.DNSCredential, KeyType: m.KeyType, Profile: m.Profile,
		}
		switch m.Source {
		case state.SourceManual:
			certPEM, keyPEM, err := ReadFiles(ctx, s, m)
			if err != nil {
				return nil, fmt.Errorf("export mapping %q: %w", m.ID, err)
			}
			r.CertPEM = string(certPEM)
			if !opts.NoKeys {
				r.KeyPEM = string(keyPEM)
			}
			r.AllowExpired = outsideValidity(certPEM, now)
		case state.SourceFile:
			// The files may be missing or broken now; import then refuses
			// the line as add would, which says more than export could.
			if certPEM, _, err := readChain(ctx, s, m); err == nil {
				r.AllowExpired = outsideValidity(certPEM, now)
			}
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// outsideValidity reports whether the leaf of certPEM is expired or not yet
// valid at now.
func outsideValidity(certPEM []byte, now time.Time) bool {
	chain, err := pki.ParseCertChain(certPEM)
	if err != nil {
		return false
	}
	return now.After(chain[0].NotAfter) || now.Before(chain[0].NotBefore)
}

// EncodeRecords writes recs as Import reads them: one JSON object per line.
func EncodeRecords(recs []Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // nothing here is served as HTML
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return nil, fmt.Errorf("encode mapping %q: %w", r.ID, err)
		}
	}
	return buf.Bytes(), nil
}
