package etcdstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// commitTimeout bounds one commit request. A change once begun is
// finished whatever the caller's context says (see state.Store).
const commitTimeout = 30 * time.Second

// errLost is a write refused because this process no longer holds the
// lock or a claim it took (its session's lease expired).
var errLost = fault.Failf("run the command again; if it keeps happening, check that the etcd cluster answers promptly",
	"nothing was written: this process lost its etcd lease (the state lock or a claim it held expired)")

// Write replaces name with data.
func (s *Store) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	return s.Apply(ctx, state.Change{Writes: []state.FileWrite{{Name: name, Data: data, Perm: perm}}})
}

// Delete removes name (a file, or a directory with everything in it);
// removing what is not there is not an error.
func (s *Store) Delete(ctx context.Context, name string) error {
	return s.Apply(ctx, state.Change{Deletes: []string{name}})
}

// plan is a Change checked and turned into keys.
type plan struct {
	deletes []string          // keys; each also deletes key+"/" and below
	writes  map[string]string // key -> encoded value
	order   []string          // of writes
	desired bool              // touches the desired state: bumps the revision
	leased  map[string]bool   // keys of challenge answers: on the session lease
	bytes   int
}

// challengeDir holds in-flight ACME challenge answers. They are put on
// the process's session lease, so that the answers of a process that dies
// mid-order (a replica killed) vanish with its lease instead of staying
// in etcd for good.
var challengeDir = state.ChallengesDir + "/"

func (s *Store) plan(c state.Change, now time.Time) (*plan, error) {
	p := &plan{writes: map[string]string{}}
	for _, d := range c.Deletes {
		k, err := s.key(d)
		if err != nil {
			return nil, err
		}
		p.deletes = append(p.deletes, k)
		p.desired = p.desired || !state.IsRuntime(d)
	}
	for _, w := range c.Writes {
		k, err := s.key(w.Name)
		if err != nil {
			return nil, err
		}
		if err := checkSize(w.Name, len(w.Data)); err != nil {
			return nil, err
		}
		if _, ok := p.writes[k]; !ok {
			p.order = append(p.order, k)
		}
		v := encodeValue(w.Data, w.Perm, now)
		p.writes[k] = v
		p.bytes += len(k) + len(v)
		p.desired = p.desired || !state.IsRuntime(w.Name)
		if strings.HasPrefix(path.Clean(w.Name), challengeDir) {
			if p.leased == nil {
				p.leased = map[string]bool{}
			}
			p.leased[k] = true
		}
	}
	return p, nil
}

// Apply makes every delete and write of c as one change: one etcd Txn
// when it fits etcd's limits, else the large change of the package doc.
func (s *Store) Apply(ctx context.Context, c state.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.Empty() {
		return nil
	}
	p, err := s.plan(c, time.Now())
	if err != nil {
		return err
	}
	// A change of the desired state once begun is finished, whatever ctx
	// says from here on. Runtime status alone (one Txn, no part of the
	// desired state) keeps ctx: its caller bounds it so as not to wait on
	// an etcd that went away (serve's last status as it stops), and a
	// status cut off may be lost.
	base := context.WithoutCancel(ctx)
	if !p.desired {
		base = ctx
	}
	cctx, cancel := context.WithTimeout(base, commitTimeout)
	defer cancel()
	dels, err := s.deleteOps(cctx, p)
	if err != nil {
		return err
	}
	if len(dels)+len(p.writes)+2 <= maxTxnOps && p.bytes <= maxTxnBytes {
		if len(p.leased) == 0 {
			return s.commit(cctx, append(dels, puts(p, 0)...), p.desired)
		}
		// A lease that etcd no longer has (expired in a stall) gets a new
		// session, once, as a lock does.
		for attempt := 0; ; attempt++ {
			sess, err := s.session(cctx)
			if err != nil {
				return err
			}
			err = s.commit(cctx, append(slices.Clone(dels), puts(p, sess.Lease())...), p.desired)
			if attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
				s.dropSession(sess)
				continue
			}
			return err
		}
	}
	if len(p.leased) > 0 {
		return fault.Invalidf("write challenge answers on their own", "a change too large for one etcd transaction cannot hold ACME challenge answers")
	}
	return s.applyLarge(ctx, p, false)
}

// puts are the writes of p, the leased ones on lease.
func puts(p *plan, lease clientv3.LeaseID) []clientv3.Op {
	ops := make([]clientv3.Op, 0, len(p.order))
	for _, k := range p.order {
		if p.leased[k] {
			ops = append(ops, clientv3.OpPut(k, p.writes[k], clientv3.WithLease(lease)))
		} else {
			ops = append(ops, clientv3.OpPut(k, p.writes[k]))
		}
	}
	return ops
}

// deleteOps turns deletes into ops that do not overlap the writes (etcd
// refuses a Txn that puts a key it also deletes): a delete with writes
// under it deletes the keys it finds there one by one, the written ones
// left to their put.
func (s *Store) deleteOps(ctx context.Context, p *plan) ([]clientv3.Op, error) {
	var ops []clientv3.Op
	for _, d := range p.deletes {
		covers := false
		for k := range p.writes {
			if k == d || strings.HasPrefix(k, d+"/") {
				covers = true
				break
			}
		}
		if !covers {
			ops = append(ops, clientv3.OpDelete(d), clientv3.OpDelete(d+"/", clientv3.WithPrefix()))
			continue
		}
		r, err := s.cli.Get(ctx, d+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, s.opError("delete "+d, err)
		}
		for _, kv := range r.Kvs {
			if _, written := p.writes[string(kv.Key)]; !written {
				ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			}
		}
	}
	return ops, nil
}

// guards are the conditions of every write: the state lock, while this
// store holds it, and, for a change of the desired state, every claim
// this process holds. All share the session's lease, so a process that
// stalled past the lease writes nothing until it takes them again.
func (s *Store) guards(desired bool) []clientv3.Cmp {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cmps []clientv3.Cmp
	if s.held != nil {
		cmps = append(cmps, s.held.IsOwner())
	}
	if desired {
		cmps = append(cmps, s.claimGuardsLocked()...)
	}
	return cmps
}

// claimGuards are the conditions that every claim this process holds is
// still its own; s.mu is held.
func (s *Store) claimGuardsLocked() []clientv3.Cmp {
	var cmps []clientv3.Cmp
	for _, m := range s.claims {
		if m != nil { // nil: being taken
			cmps = append(cmps, m.IsOwner())
		}
	}
	return cmps
}

// commit runs ops as one Txn under the guards, bumping the revision when
// the desired state changes and writing the prefix's marker with the
// first change.
func (s *Store) commit(ctx context.Context, ops []clientv3.Op, desired bool) error {
	return s.commitIf(ctx, ops, desired, nil)
}

func (s *Store) commitIf(ctx context.Context, ops []clientv3.Op, desired bool, extra []clientv3.Cmp) error {
	cmps := append(s.guards(desired), extra...)
	if desired {
		ops = append(ops, clientv3.OpPut(s.root+keyRev, strconv.FormatInt(time.Now().UnixNano(), 10)))
	}
	marking := !s.isMarked()
	if marking {
		m, _ := json.Marshal(meta{Tool: toolName, Layout: Layout})
		ops = append(ops, clientv3.OpPut(s.root+keyMeta, string(m)))
	}
	r, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		// The commit may or may not have been made: forget the values.
		s.cache.lockTaken(0)
		return s.opError("write", err)
	}
	if !r.Succeeded {
		return errLost
	}
	var keys, prefixes []string
	for _, op := range ops {
		if len(op.RangeBytes()) > 0 {
			prefixes = append(prefixes, string(op.KeyBytes()))
		} else {
			keys = append(keys, string(op.KeyBytes()))
		}
	}
	s.cache.committed(r.Header.Revision, keys, prefixes)
	if marking {
		s.setMarked()
	}
	return nil
}

func (s *Store) isMarked() bool {
	select {
	case <-s.marked:
		return true
	default:
		return false
	}
}

func (s *Store) setMarked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.isMarked() {
		close(s.marked)
	}
}

// crashAt, when a test sets it, is called at each step of a large
// change ("staged", "pending", "applied"); an error stops the change
// there, as a crash of the process would.
var crashAt func(step string) error

func crashPoint(step string) error {
	if crashAt == nil {
		return nil
	}
	return crashAt(step)
}

// pendingRecord names a large change that is being applied.
type pendingRecord struct {
	ID      string   `json:"id"`
	Deletes []string `json:"deletes,omitempty"` // keys, as plan.deletes
	// ReplaceAll deletes every file but the runtime ones (a restore).
	ReplaceAll bool `json:"replace_all,omitempty"`
	Desired    bool `json:"desired"`
}

// applyLarge makes a change too large for one Txn, all or nothing for
// readers and crash-safe: the values are staged, one Txn records the
// change as pending, then the change is applied in batches and one Txn
// ends it (see the package doc). It holds the state lock throughout,
// taking it when the caller does not hold it.
func (s *Store) applyLarge(ctx context.Context, p *plan, replaceAll bool) error {
	s.mu.Lock()
	held := s.held != nil
	s.mu.Unlock()
	if !held {
		unlock, err := s.Lock(ctx, "apply a large change")
		if err != nil {
			return err
		}
		defer func() { _ = unlock() }()
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	rec := pendingRecord{ID: hex.EncodeToString(id[:]), Deletes: p.deletes, ReplaceAll: replaceAll, Desired: p.desired}
	staging := s.root + dirStaging + rec.ID + "/"
	// Staging may stop with the caller: nothing is pending yet, and the
	// next Lock removes what was staged.
	b := s.batcher(ctx, false)
	for _, k := range p.order {
		if err := b.add(clientv3.OpPut(staging+strings.TrimPrefix(k, s.root+dirFiles), p.writes[k]), len(k)+len(p.writes[k])); err != nil {
			return err
		}
	}
	if err := b.flush(); err != nil {
		return err
	}
	if err := crashPoint("staged"); err != nil {
		return err
	}
	recJSON, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if len(recJSON) > maxTxnBytes {
		return fault.Invalidf("make the change in smaller parts", "the change deletes too many names to be applied at once (%d)", len(p.deletes))
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*commitTimeout)
	defer cancel()
	// Once pending, the change is made, by this process or by the next
	// Lock: so a lost claim must stop it here.
	s.mu.Lock()
	cmps := append(s.claimGuardsLocked(), clientv3.Compare(clientv3.CreateRevision(s.root+keyPending), "=", 0))
	s.mu.Unlock()
	if err := s.commitIf(cctx, []clientv3.Op{clientv3.OpPut(s.root+keyPending, string(recJSON))}, false, cmps); err != nil {
		if errors.Is(err, errLost) {
			return fmt.Errorf("record the large change: %w", err)
		}
		return err
	}
	if err := crashPoint("pending"); err != nil {
		return err
	}
	return s.finish(cctx, rec)
}

// finish applies a pending change from its staged values and ends it. It
// is idempotent as a whole, so the next Lock after a crash runs it again.
func (s *Store) finish(ctx context.Context, rec pendingRecord) error {
	files := s.root + dirFiles
	b := s.batcher(ctx, false)
	if rec.ReplaceAll {
		// Everything under files/ but files/run/: the ranges before
		// "run/" and after it ('0' follows '/').
		run := files + state.RunDir + "/"
		if err := b.add(clientv3.OpDelete(files, clientv3.WithRange(run)), 0); err != nil {
			return err
		}
		if err := b.add(clientv3.OpDelete(files+state.RunDir+"0", clientv3.WithRange(clientv3.GetPrefixRangeEnd(files))), 0); err != nil {
			return err
		}
	}
	for _, d := range rec.Deletes {
		if err := b.add(clientv3.OpDelete(d), 0); err != nil {
			return err
		}
		if err := b.add(clientv3.OpDelete(d+"/", clientv3.WithPrefix()), 0); err != nil {
			return err
		}
	}
	if err := b.flush(); err != nil {
		return err
	}
	staging := s.root + dirStaging + rec.ID + "/"
	err := s.scan(ctx, staging, 0, scanPage, func(k string, v []byte) error {
		return b.add(clientv3.OpPut(files+strings.TrimPrefix(k, staging), string(v)), len(k)+len(v))
	})
	if err == nil {
		err = b.flush()
	}
	if err == nil {
		err = crashPoint("applied")
	}
	if err != nil {
		return fmt.Errorf("apply the large change %s: %w", rec.ID, err)
	}
	return s.commit(ctx, []clientv3.Op{
		clientv3.OpDelete(s.root + keyPending),
		clientv3.OpDelete(s.root+dirStaging, clientv3.WithPrefix()),
	}, rec.Desired)
}

// scanPage is how many values of up to MaxValue one request of scan
// reads.
const scanPage = 100

// scan calls fn for every key under prefix, in key order, at revision rev
// (0: the current one, fixed by the first request). It lists the keys
// first, then reads the values page by page over explicit key ranges:
// etcd counts every remaining key of a range for each request that has a
// limit, which made a paged read of 100k keys take 85 s; a range without
// a limit visits only its own keys.
func (s *Store) scan(ctx context.Context, prefix string, rev int64, page int, fn func(k string, v []byte) error) error {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	pctx, cancel := s.bounded(ctx)
	r, err := s.cli.Get(pctx, prefix, opts...)
	cancel()
	if err != nil {
		return s.opError("read "+prefix, err)
	}
	if rev == 0 {
		// The header names the store's revision now, not the one read
		// at: only an unpinned scan takes it.
		rev = r.Header.Revision
	}
	keys := r.Kvs
	for len(keys) > 0 {
		n := min(page, len(keys))
		first, last := string(keys[0].Key), string(keys[n-1].Key)
		keys = keys[n:]
		pctx, cancel := s.bounded(ctx)
		r, err := s.cli.Get(pctx, first, clientv3.WithRange(last+"\x00"), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return s.opError("read "+prefix, err)
		}
		for _, kv := range r.Kvs {
			if err := fn(string(kv.Key), kv.Value); err != nil {
				return err
			}
		}
	}
	return nil
}

// batcher gathers ops into Txns within etcd's limits.
type batcher struct {
	s       *Store
	ctx     context.Context
	desired bool
	ops     []clientv3.Op
	bytes   int
}

func (s *Store) batcher(ctx context.Context, desired bool) *batcher {
	return &batcher{s: s, ctx: ctx, desired: desired}
}

func (b *batcher) add(op clientv3.Op, size int) error {
	if len(b.ops) > 0 && (len(b.ops)+1 > maxTxnOps-2 || b.bytes+size > maxTxnBytes) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.ops = append(b.ops, op)
	b.bytes += size
	return nil
}

func (b *batcher) flush() error {
	if len(b.ops) == 0 {
		return nil
	}
	if err := b.ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := b.s.bounded(b.ctx)
	defer cancel()
	err := b.s.commit(ctx, b.ops, b.desired)
	b.ops, b.bytes = nil, 0
	return err
}
