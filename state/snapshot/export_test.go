package snapshot

import (
	"context"

	"github.com/p2pstream/p2ptls/state"
)

// Update is update, for benchmarks that time one copy without the watch.
func (s *Store) Update(ctx context.Context, p state.Store, names []string) error {
	return s.update(ctx, p, names)
}
