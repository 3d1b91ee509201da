package mappings

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// find returns the index of mapping id in cfg, or a not-found error.
func find(cfg *state.Config, id string) (int, error) {
	i := slices.IndexFunc(cfg.Mappings, func(m state.Mapping) bool { return m.ID == id })
	if i < 0 {
		return -1, fault.NotFoundf("see 'p2ptls mapping list' for the existing ones", "mapping %q does not exist", id)
	}
	return i, nil
}

// Remove removes mapping id and its certificate files, and returns it:
// the config and the files go in one change.
func Remove(ctx context.Context, s state.Store, id string) (removed state.Mapping, err error) {
	err = state.Update(ctx, s, "mapping remove "+id, func(tx *state.Tx) error {
		i, err := find(tx.Config, id)
		if err != nil {
			return err
		}
		removed = tx.Config.Mappings[i]
		tx.Config.Mappings = slices.Delete(tx.Config.Mappings, i, i+1)
		return tx.Delete(ctx, MappingDir(id))
	})
	return removed, err
}

// Regenerate gives self-signed mapping id a new key and certificate for its
// hosts and days, valid from now. Other sources get their certificate from
// elsewhere, and the error says from where.
func Regenerate(ctx context.Context, s state.Store, id string, now time.Time) error {
	return state.Update(ctx, s, "mapping regenerate "+id, func(tx *state.Tx) error {
		i, err := find(tx.Config, id)
		if err != nil {
			return err
		}
		m := tx.Config.Mappings[i]
		if err := Renewable(m); err != nil {
			return err
		}
		if m.Source == state.SourceACME {
			// Callers send ACME mappings to acme.Issue; this one changed to
			// ACME after the caller looked.
			return fault.Failf(fmt.Sprintf("run 'p2ptls cert issue %s' again; it changed while this command ran", id),
				"mapping %q is issued by ACME now, not generated self-signed", id)
		}
		return regenerate(ctx, tx, m, now)
	})
}

// regenerate writes a new self-signed key and certificate for m's hosts
// and days, valid from now, into the change tx.
func regenerate(ctx context.Context, tx *state.Tx, m state.Mapping, now time.Time) error {
	if m.Days == 0 { // a hand-written mapping may leave it out
		m.Days = DefaultDays
	}
	if err := checkDays(m.Days, fmt.Sprintf("set days between 1 and %d in %s", MaxDays, state.RecordName(m.ID))); err != nil {
		return err
	}
	kp, err := selfSigned(m, now)
	if err != nil {
		return err
	}
	return writeMaterial(ctx, tx, m.ID, kp, newMeta(m.Source, kp, now))
}

// Renewable refuses a mapping whose certificate p2ptls cannot make (an
// uploaded one, files on disk), saying where it comes from instead; nil
// for ACME and self-signed mappings.
func Renewable(m state.Mapping) error {
	switch m.Source {
	case state.SourceManual:
		return fault.Failf(fmt.Sprintf("upload a new certificate: 'p2ptls mapping remove %s', then 'p2ptls mapping add --id %s … --manual --cert-file F --key-file F'", m.ID, m.ID),
			"mapping %q serves an uploaded certificate, which p2ptls cannot renew", m.ID)
	case state.SourceFile:
		return fault.Failf("replace the files on disk; p2ptls reads them again when they change",
			"mapping %q serves the files %s and %s, which p2ptls cannot renew", m.ID, m.CertFile, m.KeyFile)
	}
	return nil
}
