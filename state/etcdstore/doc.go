// Package etcdstore keeps the p2ptls state in etcd (v3), so that several
// replicas of serve and any number of CLI runs share one state. It
// implements state.Store and state.Claimer.
//
// The store is named by a URL, etcd://HOST:PORT[,HOST:PORT…]/PREFIX
// (ParseURL); TLS to etcd, a client certificate and a user whose password
// is read from a file come from the environment (ConfigFromEnv, the
// Env* constants), never from argv. OpenURL does both and Open.
//
// # Keys
//
//	/PREFIX/v1/meta              {"tool":"p2ptls","layout":1}, written with the first change;
//	                             keys under /PREFIX/ without it are another tool's: refused
//	/PREFIX/v1/rev               put by every change of the desired state (Revision is
//	                             the cluster id and its ModRevision)
//	/PREFIX/v1/files/<name>      one state file: "p2ptls-file 1 <mode> <mtime ns>\n" + bytes
//	/PREFIX/v1/lock/<lease>      the state lock (concurrency.Mutex on the session's lease)
//	/PREFIX/v1/holders/<lease>   who holds it: pid, host, since, purpose (on the lease)
//	/PREFIX/v1/claims/<name>/<lease>  claims (TryClaim), on the lease
//	/PREFIX/v1/staging/<id>/<name>    values of a large change being made
//	/PREFIX/v1/pending           the large change being applied: {"id","deletes",…}
//	/PREFIX.pre-restore-<time>/  what a Replace kept (same layout; no meta: cut short)
//
// Directories are implied by the names of the files under them.
//
// # Limits
//
// One file is at most MaxValue (1 MiB): etcd refuses requests over its
// --max-request-bytes (1.5 MiB by default), and a file must fit one
// request with its key and header. A larger file is refused as bad input,
// naming the file, and nothing is written. A change fits one Txn when it
// has fewer than 120 operations (etcd's --max-txn-ops is 128) and about
// 1.25 MiB of values; a cluster configured below those defaults is not
// supported.
//
// # Changes
//
// An Apply that fits is one Txn. Every write Txn is guarded: while this
// store holds the state lock, by the lock still being its own
// (Mutex.IsOwner); and, for a change of the desired state, by every claim
// this process holds still being its own. Lock and claims hang on one
// session lease, so a process that stalled past the TTL (or whose lease was
// revoked) writes nothing until it takes them again: its late result
// cannot overwrite what the next claimer wrote. Runtime files (run/,
// acme/challenges/) are no part of the desired state: they bump no
// revision and are not guarded by claims.
//
// A larger change (a mapping import of thousands of records, a restore)
// is made under the state lock (taken for it when the caller does not hold
// it) in four steps:
//
//  1. stage: every new value is put under staging/<id>/ in batches;
//  2. commit: one Txn puts pending, naming the change (its deletes, or
//     "replace everything but run/"); from here on the change is made;
//  3. apply: the deletes, then the staged values copied to files/, in
//     batches;
//  4. end: one Txn deletes pending and staging/ and puts rev.
//
// While pending exists, every read of the desired state (Read, Stat, List)
// is served at the etcd revision just before pending was put (MVCC), so a
// reader sees the old state until step 4 and the whole new one after it;
// watchers get the change's names at step 4. A crash between steps leaves
// staged values (removed by the next Lock) or a pending change, which the
// next Lock applies again from its staged values (steps 3 and 4 can be
// done twice). A read at the old revision fails if etcd compacted it
// meanwhile; the change lasts seconds, far less than any compaction
// retention worth having.
//
// # Lock, claims, watch
//
// Lock is a concurrency.Mutex on a session lease of Config.SessionTTL
// (10 s by default): a holder that dies frees it within the TTL. It waits
// up to the lock timeout, then fails with fault.Locked naming the holder,
// as the directory's lock does (exit 3). Within one process a Store admits
// one holder at a time, like the directory's flock.
//
// Watch and WatchChanges run one etcd watch on the prefix per
// subscription, reporting the names of the files changed; a compaction
// that lost events or a refused watch reports Full, and a watch that etcd
// ended is resumed from the last revision seen, losing nothing.
//
// Pinned is a reader of the desired state at one etcd revision (the one
// before a large change in progress): serve's snapshot copies the state
// through it, consistent without taking the lock, so that no replica
// holds up a writer. It fetches the values of a directory with its list.
//
// # When etcd goes away
//
// gRPC's back-off between connection attempts is capped at 1 s (its
// default grows to 120 s), so the client, its watches and serve's
// snapshot find a returning cluster within about a second. Close revokes
// the session's lease within 2 s: with etcd away the lease ends by
// itself within the TTL.
//
// A non-directory store has no memos of the records (state/memo.go):
// every load reads the records from etcd.
package etcdstore
