package etcdstore

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/p2pstream/p2ptls/state"
)

// reconnectMaxDelay caps gRPC's back-off between connection attempts to an
// endpoint that went away. gRPC's default grows to 120 s, so a client
// whose etcd was away a minute or two would wait up to two more minutes
// after it answers again, its watch and serve's snapshot with it.
const reconnectMaxDelay = time.Second

// dialOptions are the gRPC options of every client of the store.
func dialOptions() []grpc.DialOption {
	b := backoff.DefaultConfig
	b.BaseDelay, b.MaxDelay = 100*time.Millisecond, reconnectMaxDelay
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{Backoff: b, MinConnectTimeout: 5 * time.Second})}
}

// closeTimeout bounds the revoke of the session's lease at Close: with
// etcd away it cannot be revoked, and the lease ends by itself within the
// session TTL anyway, so a process stopping does not wait for it.
const closeTimeout = 2 * time.Second

// pinned is the desired state as it was at one etcd revision: what
// Store.Pinned returns. Every read is at that revision, so a reader of
// several files sees them as one change left them, without the state lock
// (a large change in progress is seen as it was before it began, as by
// Store's reads). A directory listed has its files' values fetched with
// it, so reading them costs no further request.
type pinned struct {
	s   *Store
	rev int64

	mu     sync.Mutex
	listed map[string]bool   // key prefixes whose values are all in values
	values map[string][]byte // key -> value at rev
	keys   []string          // of values, sorted
}

// Pinned returns a reader of the desired state at the current etcd
// revision (the one before a large change in progress), and the store's
// revision token of that state (as Revision gives it). state/snapshot
// copies through it without the state lock.
func (s *Store) Pinned(ctx context.Context) (state.Reader, string, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	t, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.root+keyPending, clientv3.WithKeysOnly()), clientv3.OpGet(s.root+keyRev, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return nil, "", s.opError("read the state revision", err)
	}
	rev, revKVs := t.Header.Revision, t.Responses[1].GetResponseRange().Kvs
	if pend := t.Responses[0].GetResponseRange().Kvs; len(pend) == 1 {
		rev = pend[0].CreateRevision - 1
		r, err := s.cli.Get(ctx, s.root+keyRev, clientv3.WithKeysOnly(), clientv3.WithRev(rev))
		if err != nil {
			return nil, "", s.opError("read the state revision before a large change", err)
		}
		revKVs = r.Kvs
	}
	var mod int64
	if len(revKVs) == 1 {
		mod = revKVs[0].ModRevision
	}
	return &pinned{s: s, rev: rev, listed: map[string]bool{}, values: map[string][]byte{}}, revToken(t.Header.ClusterId, mod), nil
}

// value returns key's value at p's revision, from what a List fetched
// when it covers key.
func (p *pinned) value(ctx context.Context, key string) ([]byte, bool, error) {
	p.mu.Lock()
	v, ok := p.values[key]
	covered := p.covered(key)
	p.mu.Unlock()
	if ok || covered {
		return v, ok, nil
	}
	cctx, cancel := p.s.bounded(ctx)
	defer cancel()
	r, err := p.s.cli.Get(cctx, key, clientv3.WithRev(p.rev))
	if err != nil || len(r.Kvs) == 0 {
		return nil, false, err
	}
	return r.Kvs[0].Value, true, nil
}

// covered reports whether a listed prefix holds key; p.mu is held.
func (p *pinned) covered(key string) bool {
	for pfx := range p.listed {
		if strings.HasPrefix(key, pfx) {
			return true
		}
	}
	return false
}

func (p *pinned) Read(ctx context.Context, name string) ([]byte, error) {
	k, err := p.s.key(name)
	if err != nil {
		return nil, err
	}
	v, ok, err := p.value(ctx, k)
	if err != nil {
		return nil, p.s.opError("read "+name, err)
	}
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	data, _, _, err := decodeValue(v)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

func (p *pinned) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	k, err := p.s.key(name)
	if err != nil {
		return nil, err
	}
	v, ok, err := p.value(ctx, k)
	if err != nil {
		return nil, p.s.opError("stat "+name, err)
	}
	if ok {
		data, perm, at, err := decodeValue(v)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", name, err)
		}
		return fileInfo{name: path.Base(name), size: int64(len(data)), mode: perm, mtime: at}, nil
	}
	names, err := p.list(ctx, k+"/")
	if err != nil {
		return nil, p.s.opError("stat "+name, err)
	}
	if len(names) == 0 {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return fileInfo{name: path.Base(name), mode: fs.ModeDir | state.DirMode}, nil
}

// List lists dir as Store.List does, fetching the values under it.
func (p *pinned) List(ctx context.Context, dir string) ([]string, error) {
	pfx, err := p.s.dirKey(dir)
	if err != nil {
		return nil, err
	}
	names, err := p.list(ctx, pfx)
	if err != nil {
		return nil, p.s.opError("list "+dir, err)
	}
	return names, nil
}

// list returns the entries directly under the key prefix pfx, fetching
// every value under it once.
func (p *pinned) list(ctx context.Context, pfx string) ([]string, error) {
	p.mu.Lock()
	done := p.covered(pfx)
	p.mu.Unlock()
	if !done {
		got := map[string][]byte{}
		if err := p.s.scan(ctx, pfx, p.rev, scanPage, func(k string, v []byte) error {
			got[k] = v
			return nil
		}); err != nil {
			return nil, err
		}
		p.mu.Lock()
		for k, v := range got {
			if _, had := p.values[k]; !had {
				p.keys = append(p.keys, k)
			}
			p.values[k] = v
		}
		slices.Sort(p.keys)
		p.listed[pfx] = true
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	i, _ := slices.BinarySearch(p.keys, pfx)
	for ; i < len(p.keys) && strings.HasPrefix(p.keys[i], pfx); i++ {
		first, _, _ := strings.Cut(p.keys[i][len(pfx):], "/")
		if n := len(names); n == 0 || names[n-1] != first {
			names = append(names, first) // sorted keys: a directory's are adjacent
		}
	}
	return names, nil
}
