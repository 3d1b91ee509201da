package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// session returns the store's live session, granting a new lease when
// there is none or the last one ended (a stall past its TTL). Lock and
// claims hang on it: a process that dies frees them within the TTL.
func (s *Store) session(ctx context.Context) (*concurrency.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess != nil {
		select {
		case <-s.sess.Done():
			s.sess = nil
		default:
			return s.sess, nil
		}
	}
	if err := s.ctx.Err(); err != nil {
		return nil, errors.New("the etcd store is closed")
	}
	ttl := int64((s.cfg.SessionTTL + time.Second - 1) / time.Second)
	gctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	// Granted here, bounded by ctx; the session keeps it alive until Close.
	lease, err := s.cli.Grant(gctx, ttl)
	if err != nil {
		return nil, s.opError("take an etcd lease", err)
	}
	sess, err := concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(s.ctx))
	if err != nil {
		return nil, s.opError("start an etcd session", err)
	}
	s.sess = sess
	return sess, nil
}

// lockOnSession takes the mutex at key with take (Lock or TryLock) on the
// live session. A lease that etcd no longer has (revoked, or expired in a
// stall before the keep-alive noticed) gets a new session, once.
func (s *Store) lockOnSession(ctx context.Context, key string, take func(*concurrency.Mutex, context.Context) error) (*concurrency.Session, *concurrency.Mutex, error) {
	for attempt := 0; ; attempt++ {
		sess, err := s.session(ctx)
		if err != nil {
			return nil, nil, err
		}
		m := concurrency.NewMutex(sess, s.root+key)
		err = take(m, ctx)
		if attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.dropSession(sess)
			continue
		}
		return sess, m, err
	}
}

// dropSession forgets sess, whose lease is gone.
func (s *Store) dropSession(sess *concurrency.Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == sess {
		sess.Orphan()
		s.sess = nil
	}
}

// mark writes the prefix's marker if it is not known to be there, before
// the first key of a lock or claim: Open takes keys under the prefix
// without it for another tool's.
func (s *Store) mark(ctx context.Context) error {
	if s.isMarked() {
		return nil
	}
	m, _ := json.Marshal(meta{Tool: toolName, Layout: Layout})
	k := s.root + keyMeta
	if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, string(m))).Commit(); err != nil {
		return s.opError("mark the etcd prefix as p2ptls's", err)
	}
	s.setMarked()
	return nil
}

// Lock takes the state lock: an etcd mutex on the session's lease, so a
// holder that dies frees it within the TTL. It waits up to the lock
// timeout, then fails with fault.Locked naming the holder. Taking it
// finishes a large change that a crash cut short, and removes values a
// change staged before it was cut short.
func (s *Store) Lock(ctx context.Context, purpose string) (func() error, error) {
	lctx, cancel := context.WithTimeout(ctx, s.wait)
	defer cancel()
	select {
	case s.lockSem <- struct{}{}:
	case <-lctx.Done():
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, s.lockedError(ctx)
	}
	fail := func(err error) (func() error, error) {
		<-s.lockSem
		return nil, err
	}
	if err := s.mark(lctx); err != nil {
		return fail(err)
	}
	sess, m, err := s.lockOnSession(lctx, dirLock, (*concurrency.Mutex).Lock)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fail(ctxErr)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fail(s.lockedError(ctx))
		}
		return fail(s.opError("take the state lock", err))
	}
	// What the previous holder wrote may not have reached the watch yet.
	s.cache.lockTaken(m.Header().Revision)
	host, _ := os.Hostname()
	rec, _ := json.Marshal(state.Holder{PID: os.Getpid(), Host: host, Since: time.Now().UTC().Truncate(time.Second), Purpose: purpose})
	holderKey := s.root + dirHolders + strconv.FormatInt(int64(sess.Lease()), 16)
	s.mu.Lock()
	s.held = m
	s.mu.Unlock()
	var once sync.Once
	var unlockErr error
	unlock := func() error {
		once.Do(func() {
			s.mu.Lock()
			s.held = nil
			s.mu.Unlock()
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
			defer cancel()
			_, err := s.cli.Delete(uctx, holderKey)
			unlockErr = errors.Join(err, m.Unlock(uctx))
			if unlockErr != nil {
				unlockErr = s.opError("release the state lock", unlockErr)
			}
			<-s.lockSem
		})
		return unlockErr
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*commitTimeout)
	defer ccancel()
	if _, err := s.cli.Txn(cctx).If(m.IsOwner()).Then(clientv3.OpPut(holderKey, string(rec), clientv3.WithLease(sess.Lease()))).Commit(); err != nil {
		return nil, errors.Join(s.opError("record the lock holder", err), unlock())
	}
	if err := s.recover(cctx); err != nil {
		return nil, errors.Join(err, unlock())
	}
	return unlock, nil
}

// recover finishes a pending large change, or removes what a change that
// never became pending staged. The lock is held.
func (s *Store) recover(ctx context.Context) error {
	r, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.root+keyPending),
		clientv3.OpGet(s.root+dirStaging, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1)),
	).Commit()
	if err != nil {
		return s.opError("check for an interrupted change", err)
	}
	pend := r.Responses[0].GetResponseRange().Kvs
	if len(pend) == 1 {
		var rec pendingRecord
		if err := json.Unmarshal(pend[0].Value, &rec); err != nil {
			return fmt.Errorf("read the interrupted change in %s: %w", s, err)
		}
		if err := s.finish(ctx, rec); err != nil {
			return fmt.Errorf("finish the change a crash interrupted: %w", err)
		}
		return nil
	}
	if len(r.Responses[1].GetResponseRange().Kvs) > 0 {
		return s.commit(ctx, []clientv3.Op{clientv3.OpDelete(s.root+dirStaging, clientv3.WithPrefix())}, false)
	}
	return nil
}

// lockedError names the holder of the lock, or says that etcd does not
// answer when that is why the lock could not be taken.
func (s *Store) lockedError(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DialTimeout)
	defer cancel()
	holder := "another process"
	r, err := s.cli.Get(hctx, s.root+dirLock+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return s.opError("take the state lock", err)
	}
	if len(r.Kvs) == 1 {
		lease := strings.TrimPrefix(string(r.Kvs[0].Key), s.root+dirLock+"/")
		if hr, err := s.cli.Get(hctx, s.root+dirHolders+lease); err == nil && len(hr.Kvs) == 1 {
			var h state.Holder
			if json.Unmarshal(hr.Kvs[0].Value, &h) == nil {
				holder = h.String()
			}
		}
	}
	return &fault.Error{
		Kind: fault.Locked,
		Msg:  fmt.Sprintf("the etcd store %s is locked by %s", s, holder),
		Hint: fmt.Sprintf("wait for that process to finish, or wait longer with --lock-timeout (now %s); a holder that died frees the lock within %s", s.wait, s.cfg.SessionTTL),
	}
}

// claimCatchUp bounds the wait of a new claim for the watch to reach it.
const claimCatchUp = time.Second

// TryClaim takes the claim name without waiting: an etcd mutex under
// claims/NAME on the session's lease. While this process holds claims,
// each of its changes of the desired state is guarded in its Txn by every
// claim still being its own, so a holder that stalled past the lease (its
// claim taken by another) cannot overwrite what the next holder wrote.
func (s *Store) TryClaim(ctx context.Context, name string) (func(), bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	name = state.ClaimKey(name)
	s.mu.Lock()
	if _, taken := s.claims[name]; taken {
		s.mu.Unlock()
		return nil, false, nil
	}
	s.claims[name] = nil // reserved while it is taken
	s.mu.Unlock()
	drop := func() {
		s.mu.Lock()
		delete(s.claims, name)
		s.mu.Unlock()
	}
	if err := s.mark(ctx); err != nil {
		drop()
		return nil, false, err
	}
	_, m, err := s.lockOnSession(ctx, dirClaims+name, (*concurrency.Mutex).TryLock)
	if err != nil {
		drop()
		if errors.Is(err, concurrency.ErrLocked) {
			return nil, false, nil
		}
		return nil, false, s.opError("claim "+name, err)
	}
	// What the previous holder wrote may not have reached the watch yet:
	// the holder re-reads the mapping under the claim.
	s.cache.caughtUp(m.Header().Revision, claimCatchUp)
	s.mu.Lock()
	s.claims[name] = m
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			drop()
			uctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			defer cancel()
			_ = m.Unlock(uctx) // a lost claim is gone already
		})
	}, true, nil
}
