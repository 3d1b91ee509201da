package acme

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/go-acme/lego/v4/challenge/dns01"
	"github.com/miekg/dns"
)

// lego keeps the resolvers DNS-01 checks propagation at (and the
// Cloudflare provider finds zones with) in one package variable, which
// dns01.AddRecursiveNameservers writes: DNS-01 orders that run at once
// would race on it, and one would check at the other's resolvers. The
// gate sets it only while no order uses another set: orders with the set
// in place go ahead together, an order with another set waits until they
// are done (and, while it waits, new orders of the set in place wait too,
// so that it is not starved).
var resolverGate = &gate{set: func(ns []string) { _ = dns01.AddRecursiveNameservers(ns)(nil) }}

type gate struct {
	set func([]string) // writes the process-wide list; only under mu

	mu      sync.Mutex
	current string // key of the set in place; "" before the first
	holders int
	waiting int           // orders waiting for another set
	changed chan struct{} // closed when holders drop to zero
}

// systemResolvers is what an order that names no resolvers checks at:
// lego's own choice (the system's, else its defaults), made again since
// another order may have set its own.
var systemResolvers = sync.OnceValue(func() []string {
	if c, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(c.Servers) > 0 {
		out := make([]string, 0, len(c.Servers))
		for _, s := range c.Servers {
			out = append(out, net.JoinHostPort(s, c.Port))
		}
		return out
	}
	return []string{"google-public-dns-a.google.com:53", "google-public-dns-b.google.com:53"}
})

// enter waits until resolvers (none: the system's) may be the process's
// list, puts them in place and returns the release. It ends with ctx's
// error when ctx ends first.
func (g *gate) enter(ctx context.Context, resolvers []string) (func(), error) {
	want := resolvers
	if len(want) == 0 {
		want = systemResolvers()
	}
	key := strings.Join(want, ",")
	g.mu.Lock()
	for {
		free := g.holders == 0
		if free || (g.current == key && g.waiting == 0) {
			break
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		wait := g.changed
		other := g.current != key
		if other {
			g.waiting++
		}
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			if other {
				g.mu.Lock()
				g.waiting--
				g.mu.Unlock()
			}
			return nil, fmt.Errorf("wait for other DNS-01 orders' resolvers: %w", context.Cause(ctx))
		}
		g.mu.Lock()
		if other {
			g.waiting--
		}
	}
	if g.current != key {
		g.set(slices.Clone(want))
		g.current = key
	}
	g.holders++
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.holders--; g.holders == 0 && g.changed != nil {
				close(g.changed)
				g.changed = nil
			}
		})
	}, nil
}
