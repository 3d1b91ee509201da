package mappings

import (
	"context"
	"errors"
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

// Remove removes mapping id and its certificate files, and returns it. The
// config is saved first and the files deleted after, so a crash in between
// leaves an orphan directory, which the next Add of that id replaces, and
// never a mapping without its files.
func Remove(ctx context.Context, s state.Store, id string) (_ state.Mapping, err error) {
	unlock, err := s.Lock(ctx, "mapping remove "+id)
	if err != nil {
		return state.Mapping{}, err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return state.Mapping{}, err
	}
	i, err := find(cfg, id)
	if err != nil {
		return state.Mapping{}, err
	}
	removed := cfg.Mappings[i]
	cfg.Mappings = slices.Delete(cfg.Mappings, i, i+1)
	if err := state.SaveConfig(ctx, s, cfg); err != nil {
		return removed, fmt.Errorf("remove mapping %q: %w", id, err)
	}
	if err := s.Delete(ctx, MappingDir(id)); err != nil {
		return removed, fault.Failf("delete it by hand; nothing uses it any more",
			"mapping %q is removed, but its directory %s is left over: %v", id, state.Locate(s, MappingDir(id)), err)
	}
	return removed, nil
}

// Regenerate gives self-signed mapping id a new key and certificate for its
// hosts and days, valid from now. Other sources get their certificate from
// elsewhere, and the error says from where.
func Regenerate(ctx context.Context, s state.Store, id string, now time.Time) (err error) {
	unlock, err := s.Lock(ctx, "mapping regenerate "+id)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return err
	}
	i, err := find(cfg, id)
	if err != nil {
		return err
	}
	m := cfg.Mappings[i]
	switch m.Source {
	case state.SourceManual:
		return fault.Failf(fmt.Sprintf("upload a new certificate: 'p2ptls mapping remove %s', then 'p2ptls mapping add --id %s … --manual --cert-file F --key-file F'", id, id),
			"mapping %q serves an uploaded certificate, which p2ptls cannot renew", id)
	case state.SourceFile:
		return fault.Failf("replace the files on disk; p2ptls reads them again when they change",
			"mapping %q serves the files %s and %s, which p2ptls cannot renew", id, m.CertFile, m.KeyFile)
	case state.SourceACME:
		// Callers send ACME mappings to acme.Issue; this one changed to
		// ACME after the caller looked.
		return fault.Failf(fmt.Sprintf("run 'p2ptls cert issue %s' again; it changed while this command ran", id),
			"mapping %q is issued by ACME now, not generated self-signed", id)
	}
	if m.Days == 0 { // a hand-written mapping may leave it out
		m.Days = DefaultDays
	}
	if err := checkDays(m.Days, fmt.Sprintf("set days between 1 and %d for mapping %q in p2ptls.toml", MaxDays, id)); err != nil {
		return err
	}
	kp, err := selfSigned(m, now)
	if err != nil {
		return err
	}
	return writeMaterial(ctx, s, id, kp, newMeta(m.Source, kp, now))
}
