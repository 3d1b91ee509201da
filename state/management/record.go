package management

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// CARecordFile records the management CA this state created or handed to
// agents, so that its loss is noticed: with certs/management gone (a
// restore of the wrong archive, a volume mounted over it) and this record
// there, serve refuses to mint a new CA silently and doctor fails, naming
// the fingerprint agents trust. It sits at the state's root, outside
// certs/management, so that it survives that directory; it is state (a
// backup carries it, a restore brings it back) and changes only through
// state.Update.
const CARecordFile = "management-ca.toml"

// How the record came to name its CA, in CARecord.By.
const (
	RecordByCreate = "created"   // the CA was created (ca init, serve)
	RecordByExport = "ca export" // handed out
	RecordByEnv    = "agent env" // handed out
	RecordByBackup = "backup"    // a backup archived it
	RecordByServe  = "serve"     // serve found the CA without a record
	RecordByInit   = "ca init"   // recorded as ca init found it
	recordVersion  = 1           // of the record's format
	recordLimit    = 4096        // bytes; the record is a few lines
)

// CARecord is the content of CARecordFile.
type CARecord struct {
	Version           int       `toml:"version"`
	FingerprintSHA256 string    `toml:"fingerprint_sha256"`
	NotAfter          time.Time `toml:"not_after"`
	RecordedAt        time.Time `toml:"recorded_at"`
	By                string    `toml:"recorded_by"`
}

// ReadCARecord returns the record, nil when there is none. A record that
// does not parse is an error: it still says a CA existed.
func ReadCARecord(ctx context.Context, s state.Reader) (*CARecord, error) {
	b, err := s.Read(ctx, CARecordFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", CARecordFile, err)
	}
	var r CARecord
	if len(b) > recordLimit || toml.Unmarshal(b, &r) != nil || r.FingerprintSHA256 == "" {
		return nil, fault.Failf("restore it from a backup, or accept a new CA with 'p2ptls ca init --replace --confirm-new-ca'",
			"%s, the record of the management CA agents trust, is damaged", state.Locate(s, CARecordFile))
	}
	return &r, nil
}

// writeCARecord records ca in the change s (a Tx).
func writeCARecord(ctx context.Context, s state.Store, ca *x509.Certificate, by string, now time.Time) error {
	b, err := toml.Marshal(CARecord{Version: recordVersion, FingerprintSHA256: pki.Fingerprint(ca),
		NotAfter: ca.NotAfter.UTC(), RecordedAt: now.UTC().Truncate(time.Second), By: by})
	if err != nil {
		return err
	}
	header := []byte("# The management CA this state created or gave agents: while this file names it,\n" +
		"# p2ptls refuses to create another one silently ('p2ptls ca init --replace --confirm-new-ca').\n")
	if err := s.Write(ctx, CARecordFile, append(header, b...), state.SecretMode); err != nil {
		return fmt.Errorf("save %s: %w", CARecordFile, err)
	}
	return nil
}

// RecordCA records the current CA when the record is missing or, with
// follow, names another CA (ca export and agent env hand the current one
// out: that is the one agents trust from now on). Nothing is written when
// the record already names it, or when there is no CA.
func RecordCA(ctx context.Context, s state.Store, by string, follow bool, now time.Time) error {
	needs := func(s state.Store) (*x509.Certificate, bool, error) {
		_, ca, err := CACertificate(ctx, s)
		if err != nil {
			return nil, false, nil // no CA (or a damaged one): nothing to record
		}
		rec, err := ReadCARecord(ctx, s)
		if err != nil && !follow {
			return nil, false, err
		}
		return ca, rec == nil || (follow && rec.FingerprintSHA256 != pki.Fingerprint(ca)), nil
	}
	// What every later call finds: told without the lock.
	if _, need, err := needs(s); err != nil || !need {
		return err
	}
	err := state.Update(ctx, s, "record the management CA", func(tx *state.Tx) error {
		ca, need, err := needs(tx)
		if err != nil {
			return err
		}
		if !need {
			return errUnchanged
		}
		return writeCARecord(ctx, tx, ca, by, now)
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// refuseNewCA is the refusal to create a CA where rec says one existed.
func refuseNewCA(s state.Reader, rec *CARecord) error {
	return fault.Failf("restore certs/management from a backup that holds it ('p2ptls restore BACKUP --force'), or accept a new CA with 'p2ptls ca init --replace --confirm-new-ca' and give every agent the new one ('p2ptls agent env')",
		"the management CA is missing from %s, but this state had the CA %s (valid until %s): agents that trust it will not trust a new one",
		state.Locate(s, Dir), rec.FingerprintSHA256, text.Stamp(rec.NotAfter))
}
