package statetest

import (
	"context"
	"io/fs"
	"slices"
	"sync"

	"github.com/p2pstream/p2ptls/state"
)

// Recorder is a state directory that records how a command changes it:
// the names of each Apply (sorted, a delete as "-NAME"), and every write
// or delete made outside one, so that a test can prove a command's change
// is exactly one Apply.
type Recorder struct {
	*state.Dir

	mu      sync.Mutex
	Applies [][]string
	Loose   []string
}

func (r *Recorder) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	r.mu.Lock()
	r.Loose = append(r.Loose, name)
	r.mu.Unlock()
	return r.Dir.Write(ctx, name, data, perm)
}

func (r *Recorder) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	r.Loose = append(r.Loose, "-"+name)
	r.mu.Unlock()
	return r.Dir.Delete(ctx, name)
}

func (r *Recorder) Apply(ctx context.Context, c state.Change) error {
	var names []string
	for _, d := range c.Deletes {
		names = append(names, "-"+d)
	}
	for _, w := range c.Writes {
		names = append(names, w.Name)
	}
	slices.Sort(names)
	r.mu.Lock()
	r.Applies = append(r.Applies, names)
	r.mu.Unlock()
	return r.Dir.Apply(ctx, c)
}
