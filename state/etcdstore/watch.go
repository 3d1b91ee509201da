package etcdstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
)

// Revision is the cluster's id and the etcd revision of the last change of
// the desired state: every such change puts the rev key in its Txn, and
// runtime writes do not. Another cluster (a restored or moved store) gives
// another token.
func (s *Store) Revision(ctx context.Context) (string, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	r, err := s.cli.Get(ctx, s.root+keyRev)
	if err != nil {
		return "", s.opError("read the state revision", err)
	}
	var mod int64
	if len(r.Kvs) == 1 {
		mod = r.Kvs[0].ModRevision
	}
	return revToken(r.Header.ClusterId, mod), nil
}

// revToken is Revision's token: the cluster's id and the rev key's
// ModRevision.
func revToken(cluster uint64, mod int64) string { return fmt.Sprintf("%x-%d", cluster, mod) }

// Watch signals changes of the desired state (see state.Store.Watch).
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	return s.subscribe(ctx, false).C
}

// WatchChanges signals changes of the desired state with the names of
// the files changed (see state.Store.WatchChanges).
func (s *Store) WatchChanges(ctx context.Context) *state.Feed {
	return s.subscribe(ctx, true)
}

// rewatchDelay spaces the restarts of a watch that etcd ended.
const rewatchDelay = 200 * time.Millisecond

// subscribe adds a feed to the store's one watch, which also keeps the
// read cache true (see cache.go): the cache forgets a changed value before
// any feed is told of the change, so a reader woken by a feed reads the
// new value.
func (s *Store) subscribe(ctx context.Context, names bool) *state.Feed {
	f := state.NewFeed(names)
	c := &s.cache
	c.mu.Lock()
	c.subs[f] = struct{}{}
	c.mu.Unlock()
	s.startWatch()
	context.AfterFunc(ctx, func() { s.unsubscribe(f) })
	context.AfterFunc(s.ctx, func() { s.unsubscribe(f) })
	return f
}

func (s *Store) unsubscribe(f *state.Feed) {
	c := &s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.subs[f]; ok {
		delete(c.subs, f)
		f.Close()
	}
}

// startWatch starts the store's watch once and waits until it knows the
// revision it watches from.
func (s *Store) startWatch() {
	s.watchOnce.Do(func() {
		started := make(chan struct{})
		go s.watchLoop(started)
		select {
		case <-started:
		case <-time.After(s.cfg.DialTimeout):
			// etcd is away: the loop goes on trying; the cache stays off
			// until it has started.
		case <-s.ctx.Done():
		}
	})
}

// watchLoop runs the store's watch on its prefix until Close. Names of a
// large change are held back until it ends, when reads see all of it.
func (s *Store) watchLoop(started chan struct{}) {
	ctx := s.ctx
	c := &s.cache
	var (
		rev     int64 // last revision seen; 0 until (re)started
		pending bool
		held    []string
		lost    bool // events were lost: subscribers are told Full once restarted
	)
	start := func() bool {
		r, err := s.cli.Get(ctx, s.root+keyPending, clientv3.WithKeysOnly())
		if err != nil {
			return false
		}
		rev, pending, held = r.Header.Revision, len(r.Kvs) == 1, nil
		c.mu.Lock()
		c.restart(rev)
		// Told only now that the watch resumes from rev: a subscriber
		// reading on Full sees every change up to rev, and is told of
		// every one after it. Told at the loss, it could read before a
		// change made ahead of the restart and never hear of it.
		if lost {
			c.publish(nil, true)
			lost = false
		}
		c.mu.Unlock()
		if started != nil {
			close(started)
			started = nil
		}
		return true
	}
	for ctx.Err() == nil {
		if rev == 0 && !start() {
			sleep(ctx, rewatchDelay)
			continue
		}
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.root, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for wr := range wch {
			if wr.CompactRevision != 0 || wr.Canceled {
				// Events were lost (compacted away) or the watch was
				// refused: anything may have changed.
				c.mu.Lock()
				c.off()
				c.mu.Unlock()
				rev, lost = 0, true
				break
			}
			if err := wr.Err(); err != nil {
				break // resumed from rev below
			}
			var got []string
			signal := false
			c.mu.Lock()
			for _, ev := range wr.Events {
				k := string(ev.Kv.Key)
				c.changed(k, ev.Kv.ModRevision)
				switch {
				case k == s.root+keyPending:
					pending = ev.Type == clientv3.EventTypePut
					if !pending {
						got = append(got, held...)
						held = nil
						signal = true
					}
				case k == s.root+keyRev:
					signal = true
				case strings.HasPrefix(k, s.root+dirFiles):
					name := strings.TrimPrefix(k, s.root+dirFiles)
					if state.IsRuntime(name) {
						continue
					}
					if pending {
						held = append(held, name)
					} else {
						got = append(got, name)
					}
				}
			}
			if len(wr.Events) > 0 {
				rev = wr.Events[len(wr.Events)-1].Kv.ModRevision
				c.seen(rev)
			}
			if len(got) > 0 || signal {
				c.publish(got, false)
			}
			c.mu.Unlock()
		}
		sleep(ctx, rewatchDelay)
	}
	c.mu.Lock()
	c.off()
	c.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
