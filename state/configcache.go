package state

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ConfigCache keeps the desired state a long-lived reader loaded (the
// management API answers from it), so that a read costs a few stats
// instead of a load of every record (0.4–0.9 s at 100k mappings).
//
// Every Load first takes a cheap token of the state and returns the kept
// config only when the token is the one it was loaded under; otherwise it
// loads again — on a Dir, when only records changed under the lock, only
// those records (see load). What the token sees is visible to the very
// next Load:
//
//   - every change made under the lock (state.Update, from this process or
//     another one: the API, the CLI, serve's renewal), since each writes a
//     new p2ptls.rev, and a restore, whose root is another directory;
//   - a hand edit of p2ptls.toml (its identity, size and times).
//
// A hand edit of a record (mappings/ID.toml) writes no p2ptls.rev: it is
// seen once the store's change feed (Store.Watch) signals it, as serve's
// own reload sees it — within milliseconds with fsnotify (a second at
// most while another process holds the lock), at the next poll without
// (a second on a small state, up to 30 s at 100k records).
//
// For a Dir the token is p2ptls.rev's content, the stat of p2ptls.toml
// (and its content while it is newer than racyWindow), the identities of
// the root and of mappings/, and the count of the feed's signals that the
// kept config does not hold already (see holds). For any other
// store (etcd) it is the store's Revision, which covers every change by
// its contract and is one read on etcd.
//
// The *Config a Load returns is shared by every caller until the state
// changes: callers must not modify it (nor anything it holds); one that
// needs to change a config goes through Update. It is safe for
// concurrent use; only one load runs at a time, and callers that asked
// at the same token share its result.
type ConfigCache struct {
	s   Store
	ctx context.Context // the cache's life: its feed and its loads end with it
	// signals counts the feed's signals that the kept config does not
	// hold (see holds): a hand edit of a record changes no token, only
	// this.
	signals atomic.Uint64

	mu     sync.Mutex
	kept   *keptConfig
	flight *configLoad // the load running, nil when none
}

// cacheKey is what a config was loaded under.
type cacheKey struct {
	signals uint64
	// frame is what a Dir's token holds but p2ptls.rev (see cacheToken);
	// "" for another store.
	frame string
	// rev is p2ptls.rev's content for a Dir, the store's Revision for
	// another store.
	rev string
}

type keptConfig struct {
	key cacheKey
	cfg *Config
}

// configLoad is one load of the state, shared by the callers at its key.
type configLoad struct {
	key cacheKey
	// from, when not nil, is the kept config, which differs from the
	// state at key only in the records named (see changedRecords).
	from  *Config
	names []string
	done  chan struct{} // closed once cfg and err are set
	cfg   *Config
	err   error
}

// cacheWaits bounds how many loads made at other tokens a Load waits for
// before it loads by itself: a state that changes faster than it loads.
const cacheWaits = 3

// NewConfigCache returns a cache of s's desired state that lives until ctx
// ends; after that Load is LoadConfig. Nothing is loaded until the first
// Load.
func NewConfigCache(ctx context.Context, s Store) *ConfigCache {
	c := &ConfigCache{s: s, ctx: ctx}
	if d, ok := s.(*Dir); ok {
		// Subscribed before any load: an edit made after it is signalled.
		feed := d.WatchChanges(ctx)
		go func() {
			for range feed.C { // closed when ctx ends
				if !c.holds(d, feed.Take()) {
					c.signals.Add(1)
				}
			}
		}()
	}
	return c
}

// holdsMax bounds the records holds reads; past it the config is loaded
// again.
const holdsMax = 64

// holds reports whether the feed's news needs no signal: each record it
// names is held by the kept config already (compared with what the
// record holds now), or a change under the lock named it in p2ptls.rev
// since the kept config was loaded, so that the next Load, whose token
// differs, reads it again. A change under the lock is signalled too,
// before or after the Load that its p2ptls.rev makes, and loading 100k
// records a second time for it is what the cache is there to spare.
// p2ptls.toml is in the token.
func (c *ConfigCache) holds(d *Dir, ch Changed) bool {
	if ch.Full || len(ch.Names) > holdsMax {
		return false
	}
	c.mu.Lock()
	l := c.flight
	c.mu.Unlock()
	if l != nil {
		// Begun before the change, it may have read either version:
		// what it keeps is compared with the files as they are now.
		select {
		case <-l.done:
		case <-c.ctx.Done():
			return false
		}
	}
	c.mu.Lock()
	k := c.kept
	c.mu.Unlock()
	if k == nil {
		return true // the next Load loads, after the change
	}
	rereads := k.key.rereads(d)
	for _, name := range ch.Names {
		if name == ConfigFile || rereads[name] {
			continue
		}
		dir, file := path.Split(name)
		id, ok, err := recordID(file)
		if dir != RecordsDir+"/" || err != nil {
			return false
		}
		if !ok {
			continue // not a record: no load reads it
		}
		m, found, err := loadRecord(c.ctx, d, id)
		if err != nil {
			return false
		}
		had, ok := k.cfg.Mapping(id)
		if found != ok {
			return false
		}
		if found {
			// Put as a load puts it; a record valid only against the
			// rest of the config differs and is loaded again.
			now := []Mapping{m}
			if valid, _ := normalizeHosts(now); !valid || !reflect.DeepEqual(now[0], *had) {
				return false
			}
		}
	}
	return true
}

// Load returns the desired state as LoadConfig would read it now (but for
// a hand edit of a record the feed has not signalled yet; see
// ConfigCache). A load that fails is not kept: the next Load tries again.
func (c *ConfigCache) Load(ctx context.Context) (*Config, error) {
	if c.ctx.Err() != nil {
		return LoadConfig(ctx, c.s) // no feed any more to trust
	}
	key, ok := c.key(ctx)
	if !ok {
		return LoadConfig(ctx, c.s)
	}
	for range cacheWaits {
		c.mu.Lock()
		if k := c.kept; k != nil && k.key == key {
			c.mu.Unlock()
			return k.cfg, nil
		}
		l := c.flight
		if l == nil {
			l = &configLoad{key: key, done: make(chan struct{})}
			if k := c.kept; k != nil {
				if names, ok := changedRecords(k.key, key); ok {
					l.from, l.names = k.cfg, names
				}
			}
			c.flight = l
			go c.load(l)
		}
		c.mu.Unlock()
		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if l.key == key {
			return l.cfg, l.err
		}
		// A load begun at another token: it may be stale for this
		// caller, who looks again.
	}
	return LoadConfig(ctx, c.s)
}

// load runs l with the cache's context, so that a caller who leaves does
// not fail the others waiting for it, and keeps what it loaded. A load
// from the kept config reads only the records changed since (and checks
// them against the others as a whole load would): 100k records are not
// read again for one changed; a change of no record (a certificate
// renewed) reads nothing.
func (c *ConfigCache) load(l *configLoad) {
	switch {
	case l.from != nil && len(l.names) == 0:
		l.cfg = l.from
	case l.from != nil:
		// On a copy of its own: LoadChanged may put the hosts of the
		// mappings it checks in canonical form, in place, while other
		// requests read the kept config.
		l.cfg, l.err = l.from.privateCopy().LoadChanged(c.ctx, c.s, l.names)
	default:
		l.cfg, l.err = LoadConfig(c.ctx, c.s)
	}
	c.mu.Lock()
	c.flight = nil
	if l.err == nil {
		c.kept = &keptConfig{key: l.key, cfg: l.cfg}
	}
	c.mu.Unlock()
	close(l.done)
}

// key is the state's key now; ok is false when it cannot be had (then the
// caller loads by itself and LoadConfig reports the trouble).
func (c *ConfigCache) key(ctx context.Context) (cacheKey, bool) {
	// The signals first: a hand edit after this is signalled after it,
	// and a load begun after this reads what the key describes or newer.
	k := cacheKey{signals: c.signals.Load()}
	var err error
	if d, ok := c.s.(*Dir); ok {
		k.frame, k.rev, err = d.cacheToken(time.Now())
	} else {
		k.rev, err = c.s.Revision(ctx)
	}
	return k, err == nil
}

// changedRecords returns the records changed between the state of key
// from and that of key to, when from is a Dir's and nothing else that a
// load reads changed in between: only changes under the lock (p2ptls.rev
// names their files), none of p2ptls.toml, no hand edit the feed told.
func changedRecords(from, to cacheKey) (names []string, ok bool) {
	if from.frame == "" || from.frame != to.frame || from.signals != to.signals {
		return nil, false
	}
	var was, now revFile
	if json.Unmarshal([]byte(from.rev), &was) != nil || was.Epoch == "" ||
		json.Unmarshal([]byte(to.rev), &now) != nil || now.Epoch != was.Epoch {
		return nil, false
	}
	all, ok := now.since(was.Seq)
	if !ok {
		return nil, false
	}
	for _, n := range all {
		rest, record := strings.CutPrefix(n, RecordsDir+"/")
		switch {
		case n == ConfigFile || n == RecordsDir || record && strings.Contains(rest, "/"):
			return nil, false
		case record:
			names = append(names, n)
		}
		// Anything else (certificates, secrets, accounts) is not read by
		// a load.
	}
	return names, true
}

// rereads is the set of names that changes under the lock made in d
// since k (p2ptls.rev's log since k's); nil when it cannot tell.
func (k cacheKey) rereads(d *Dir) map[string]bool {
	var was revFile
	if k.frame == "" || json.Unmarshal([]byte(k.rev), &was) != nil || was.Epoch == "" {
		return nil
	}
	now, ok, err := readRevFile(d.root)
	if err != nil || !ok || now.Epoch != was.Epoch {
		return nil
	}
	names, ok := now.since(was.Seq)
	if !ok {
		return nil
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set
}

// privateCopy is c with mappings of its own, hosts included; it shares
// nothing another goroutine may write.
func (c *Config) privateCopy() *Config {
	cp := *c
	cp.Listeners = slices.Clone(c.Listeners)
	cp.DNSCredentials = slices.Clone(c.DNSCredentials)
	cp.Mappings = make([]Mapping, len(c.Mappings))
	for i, m := range c.Mappings {
		m.Hosts = slices.Clone(m.Hosts)
		cp.Mappings[i] = m
	}
	return &cp
}

// errSwapping stops the cache while a restore's swap is unfinished: the
// load that LoadConfig makes then finishes it first.
var errSwapping = errors.New("a restore is being swapped in")

// cacheToken is d's token for ConfigCache: p2ptls.rev's content (every
// locked change writes a new one, with a higher sequence number), and as
// frame the identities of the root and of mappings/ and the stat of
// p2ptls.toml. A p2ptls.toml changed within racyWindow of now may be
// edited in place again without its stat changing: its content is part of
// the frame then (it is small in schema_version 2).
func (d *Dir) cacheToken(now time.Time) (frame, rev string, err error) {
	if _, err := os.Lstat(filepath.Join(d.root, SwapJournalFile)); err == nil {
		return "", "", errSwapping
	}
	var b []byte
	for _, p := range []string{d.root, filepath.Join(d.root, RecordsDir)} {
		id, err := identify(p)
		if err != nil {
			return "", "", err
		}
		b = binary.LittleEndian.AppendUint64(b, id.Dev)
		b = binary.LittleEndian.AppendUint64(b, id.Ino)
	}
	top, err := identify(filepath.Join(d.root, ConfigFile))
	if err != nil {
		return "", "", err
	}
	enc := top.encode()
	b = append(b, enc[:]...)
	if top.racy(now) {
		content, err := os.ReadFile(filepath.Join(d.root, ConfigFile))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", "", err
		}
		b = append(b, content...)
	}
	r, err := os.ReadFile(filepath.Join(d.root, RevisionFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", "", err
	}
	return string(b), string(r), nil
}
