package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

// BackupV1File keeps the schema_version 1 p2ptls.toml that a migration
// replaced, byte for byte.
const BackupV1File = ConfigFile + ".v1.bak"

// maxBackupNames bounds the search for a free backup name.
const maxBackupNames = 100

// migration is the start of the change that migrates a schema_version 1
// state to records: a backup of p2ptls.toml as it is, never over an
// earlier backup. The caller adds every record and the new p2ptls.toml to
// it, so that the migration is one Store.Apply. Only a change under the
// lock migrates; reads take a version 1 state as it is.
func migration(ctx context.Context, s Store, now time.Time) (Change, error) {
	names, err := s.List(ctx, RecordsDir)
	if err != nil {
		return Change{}, fmt.Errorf("list %s: %w", RecordsDir, err)
	}
	for _, n := range names {
		if _, ok, _ := recordID(n); ok || path.Ext(n) == recordExt {
			// Records were never part of this state, and a migration
			// would write over them.
			return Change{}, fault.Invalidf("move "+Locate(s, RecordsDir)+" away (its records are not read while "+ConfigFile+" says schema_version 1), then run the command again",
				"cannot migrate %s to schema_version %d: %s already holds %s", ConfigFile, SchemaVersion, Locate(s, RecordsDir), n)
		}
	}
	old, err := s.Read(ctx, ConfigFile)
	if err != nil {
		return Change{}, fmt.Errorf("read %s to keep it: %w", ConfigFile, err)
	}
	name, err := backupName(ctx, s, now)
	if err != nil {
		return Change{}, err
	}
	return Change{Writes: []FileWrite{{Name: name, Data: old, Perm: SecretMode}}}, nil
}

// backupName is the first of p2ptls.toml.v1.bak,
// p2ptls.toml.v1.<UTC time>.bak, p2ptls.toml.v1.<UTC time>-2.bak, … that
// does not exist.
func backupName(ctx context.Context, s Store, now time.Time) (string, error) {
	stamp := now.UTC().Format("20060102T150405Z")
	for i := range maxBackupNames {
		name := BackupV1File
		switch {
		case i == 1:
			name = fmt.Sprintf("%s.v1.%s.bak", ConfigFile, stamp)
		case i > 1:
			name = fmt.Sprintf("%s.v1.%s-%d.bak", ConfigFile, stamp, i)
		}
		_, err := s.Stat(ctx, name)
		if errors.Is(err, fs.ErrNotExist) {
			return name, nil
		}
		if err != nil {
			return "", fmt.Errorf("look for a free backup name: %w", err)
		}
	}
	return "", fault.Failf("remove old "+BackupV1File+"* files you no longer need",
		"cannot back up %s before migrating it: %d backups of it exist", ConfigFile, maxBackupNames)
}
