package acme

import (
	"context"
	"net"
	"reflect"
	"sync"

	"github.com/p2pstream/p2ptls/state"
)

// Without serve, an order binds its listener's address to answer the
// validation itself (answerIfNoServe). Orders that run at once in one
// process share that one socket: the answerer serves every challenge
// published in the state, whichever order published it, and the second
// order's bind would fail with "address in use". The socket closes with
// the last order that uses it.
var shared struct {
	mu sync.Mutex
	by map[sharedKey]*sharedAnswerer
}

type sharedKey struct {
	s    state.Store
	addr string
	kind string
}

type sharedAnswerer struct {
	refs int
	stop func()
}

// bindShared returns a release for an answerer on addr of kind (which
// answerer: "http-01", "tls-alpn-01") for store s, binding it and starting
// serve when no order of this process has it already. The answerer reads
// the state with a context of its own: it outlives the order that bound
// it, until the last release.
func bindShared(s state.Store, addr, kind string, serve func(ctx context.Context, ln net.Listener) func()) (func(), error) {
	if !reflect.TypeOf(s).Comparable() {
		// No key to share by (a test store that is a value): unshared.
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		stop := serve(ctx, ln)
		return func() { stop(); cancel() }, nil
	}
	key := sharedKey{s, addr, kind}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	a := shared.by[key]
	if a == nil {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		stop := serve(ctx, ln)
		a = &sharedAnswerer{stop: func() { stop(); cancel() }}
		if shared.by == nil {
			shared.by = map[sharedKey]*sharedAnswerer{}
		}
		shared.by[key] = a
	}
	a.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			shared.mu.Lock()
			defer shared.mu.Unlock()
			if a.refs--; a.refs == 0 {
				delete(shared.by, key)
				a.stop()
			}
		})
	}, nil
}
