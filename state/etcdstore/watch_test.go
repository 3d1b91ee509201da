package etcdstore

import (
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// cutProxy forwards TCP connections to target; while cut it drops every
// connection it carries and closes new ones at once, so that a client
// behind it sees etcd away while etcd itself runs on.
type cutProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
	wg    sync.WaitGroup
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	mustDo(t, err)
	p := &cutProxy{l: l, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		_ = l.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.l.Addr().String() }

func (p *cutProxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		p.mu.Lock()
		if err != nil || p.cut {
			p.mu.Unlock()
			_ = in.Close()
			if out != nil {
				_ = out.Close()
			}
			continue
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(out, in) })
		p.wg.Go(func() { pipe(in, out) })
	}
}

// setCut cuts the proxy (dropping what it carries) or lets it carry again.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// nextChange waits (at most 30 s) for what feed tells next.
func nextChange(t *testing.T, feed *state.Feed, what string) state.Changed {
	t.Helper()
	select {
	case _, ok := <-feed.C:
		if !ok {
			t.Fatalf("the feed closed while waiting for %s", what)
		}
		return feed.Take()
	case <-time.After(30 * time.Second):
		t.Fatalf("nothing on the feed within 30s while waiting for %s", what)
	}
	return state.Changed{}
}

// A compaction of the revisions a watcher has not seen yet (it was cut
// off from etcd while they were made and compacted) reaches a subscriber
// as Full, since the names are lost; the watch then follows the changes
// made after it, and reads see the values of the gap, not a cached value.
func TestCompactionPastTheWatchIsFull(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := testCtx(t)
	proxy := startCutProxy(t, c.Endpoints()[0])
	prefix := newPrefix("compact")
	s, err := Open(ctx, Config{Endpoints: []string{proxy.addr()}, Prefix: prefix, DialTimeout: 5 * time.Second,
		RequestTimeout: 5 * time.Second, SessionTTL: testTTL}, time.Second)
	mustDo(t, err)
	defer s.Close()
	other := openTest(t, c, prefix) // another replica, reaching etcd directly
	direct, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	mustDo(t, err)
	defer direct.Close()

	feed := s.WatchChanges(ctx)
	mustDo(t, other.Write(ctx, "certs/a", []byte("1"), state.SecretMode))
	if got := nextChange(t, feed, "the first change"); got.Full || !slices.Equal(got.Names, []string{"certs/a"}) {
		t.Fatalf("first change = %+v, want certs/a", got)
	}
	got, err := s.Read(ctx, "certs/a") // cached from here on
	if err != nil || string(got) != "1" {
		t.Fatalf("read certs/a = %q, %v", got, err)
	}

	proxy.setCut(true)
	for _, v := range []string{"2", "3", "4"} {
		mustDo(t, other.Write(ctx, "certs/a", []byte(v), state.SecretMode))
	}
	r, err := direct.Get(ctx, "/"+prefix+"/")
	mustDo(t, err)
	if _, err := direct.Compact(ctx, r.Header.Revision); err != nil {
		t.Fatalf("compact at %d: %v", r.Header.Revision, err)
	}
	proxy.setCut(false)

	if got := nextChange(t, feed, "the compaction"); !got.Full {
		t.Fatalf("after a compaction past the watch the feed told %+v, want Full", got)
	}
	if got, err := s.Read(ctx, "certs/a"); err != nil || string(got) != "4" {
		t.Errorf("read certs/a after the compaction = %q, %v; want the gap's last value 4", got, err)
	}
	mustDo(t, other.Write(ctx, "certs/b", []byte("1"), state.SecretMode))
	if got := nextChange(t, feed, "a change after the compaction"); got.Full || !slices.Equal(got.Names, []string{"certs/b"}) {
		t.Errorf("change after the compaction = %+v, want certs/b", got)
	}
}
