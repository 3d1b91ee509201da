package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
)

// RecordFile describes the last backup taken of this state directory, so
// that "p2ptls doctor" can tell whether a backup exists and whether it holds
// the management CA agents trust now. It lives under run/: backups leave it
// out (it describes backups, it is not state), and a restore carries it over
// with the rest of run/, since it stays true of this machine. Writing it is
// no state change, so a running serve does not reload for it.
const RecordFile = state.RunDir + "/last-backup.toml"

// Record is the content of RecordFile.
type Record struct {
	CreatedAt     time.Time `toml:"created_at"`
	P2PTLSVersion string    `toml:"p2ptls_version"`
	// CAFingerprintSHA256 is the management CA in the archive, "" for none.
	CAFingerprintSHA256 string `toml:"ca_fingerprint_sha256"`
	// File is the archive's absolute path; "" when it went to standard
	// output.
	File      string `toml:"file"`
	Encrypted bool   `toml:"encrypted"`
	Files     int    `toml:"files"`
}

// writeRecord records a complete backup. The archive is already written: a
// record that cannot be saved is logged, never turned into a failed backup.
func writeRecord(ctx context.Context, s state.Store, m *Manifest, file string, opts CreateOptions) {
	r := Record{
		CreatedAt:           m.CreatedAt,
		P2PTLSVersion:       m.P2PTLSVersion,
		CAFingerprintSHA256: m.CAFingerprintSHA256,
		File:                file,
		Encrypted:           opts.Passphrase != "",
		Files:               len(m.Files),
	}
	b, err := toml.Marshal(r)
	if err == nil {
		err = s.Write(ctx, RecordFile, b, state.SecretMode)
	}
	if err != nil {
		slog.Warn("the backup is complete, but its record for 'p2ptls doctor' was not saved", "file", RecordFile, "err", err)
	}
}

// ReadRecord returns the record of the last backup, nil when none was
// recorded.
func ReadRecord(ctx context.Context, s state.Store) (*Record, error) {
	b, err := s.Read(ctx, RecordFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", RecordFile, err)
	}
	var r Record
	if err := toml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read %s: %w", RecordFile, err)
	}
	return &r, nil
}
