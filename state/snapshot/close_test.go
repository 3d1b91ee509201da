package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// closer is a primary that tells how it was closed, and whose Revision,
// while stall is set, waits for the caller's context and fails as the
// etcd store does: unreachable past a deadline, the context's error when
// cancelled.
type closer struct {
	*primary
	stall    atomic.Bool
	stalled  chan struct{} // told when a Revision starts to wait
	closed   atomic.Int32
	awayShut atomic.Int32
}

func newCloser() *closer { return &closer{primary: newMemPrimary(), stalled: make(chan struct{}, 1)} }

func (c *closer) Revision(ctx context.Context) (string, error) {
	if !c.stall.Load() {
		return c.primary.Revision(ctx)
	}
	select {
	case c.stalled <- struct{}{}:
	default:
	}
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "", fmt.Errorf("read the state revision: etcd does not answer: %w", state.ErrUnreachable)
	}
	return "", fmt.Errorf("read the state revision: %w", ctx.Err())
}

func (c *closer) Close() error     { c.closed.Add(1); return nil }
func (c *closer) CloseAway() error { c.awayShut.Add(1); return nil }

// Close asks nothing of a primary known to be away (CloseAway), and
// closes one that answers as usual; a Close that comes while the loop
// waits for a reconnection probe does not take the primary for back.
func TestCloseOfAnAwayPrimaryAsksItNothing(t *testing.T) {
	for _, tc := range []struct {
		desc string
		away bool // cut off, noticed, then stalled in a reconnection probe at Close
	}{
		{"up", false},
		{"away, closed mid-reconnection", true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := newCloser()
			seed(t, c.primary, "127.0.0.1:8443", "a")
			o := options(c.primary, filepath.Join(t.TempDir(), "snapshot"))
			o.Open = func(context.Context) (state.Store, error) { return c, nil }
			s := openWith(t, o)
			eventually(t, "the first copy", func() bool { return s.Health().Current })
			if tc.away {
				c.cut.Store(true)
				eventually(t, "the cut is noticed", func() bool { return !s.Health().Connected })
				c.stall.Store(true)
				c.cut.Store(false)
				<-c.stalled // the loop's next probe waits for etcd
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := s.Health().Connected; got == tc.away {
				t.Errorf("connected after Close = %v, want %v", got, !tc.away)
			}
			wantAway, wantClose := int32(0), int32(1)
			if tc.away {
				wantAway, wantClose = 1, 0
			}
			if c.awayShut.Load() != wantAway || c.closed.Load() != wantClose {
				t.Errorf("CloseAway called %d times and Close %d; want %d and %d", c.awayShut.Load(), c.closed.Load(), wantAway, wantClose)
			}
		})
	}
}
