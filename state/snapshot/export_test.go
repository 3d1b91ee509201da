package snapshot

import (
	"context"

	"github.com/p2pstream/p2ptls/state"
)

// Update is update, for benchmarks that time one copy without the watch.
func (s *Store) Update(ctx context.Context, p state.Store, names []string) error {
	return s.update(ctx, p, names)
}

// Check is the check of a change of the copy: as a change of records
// (whole false), or loading the copy as changed whole, as every change of
// a record was checked before Config.LoadChanged (whole true).
func (s *Store) Check(ctx context.Context, ch state.Change, whole bool) error {
	_, err := s.check(ctx, ch, whole)
	return err
}
