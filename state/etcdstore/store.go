package etcdstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// Layout is the version of the key layout this build reads and writes.
const Layout = 1

// Key names under /PREFIX/v1/.
const (
	keyMeta    = "meta"
	keyRev     = "rev"
	keyPending = "pending"
	dirFiles   = "files/"
	dirStaging = "staging/"
	dirLock    = "lock"
	dirHolders = "holders/"
	dirClaims  = "claims/"
)

// MaxValue bounds one file: etcd refuses a request over its
// --max-request-bytes (1.5 MiB by default), and a file with its header
// and key must fit one request. Certificates, keys and mapping records are
// a few KiB.
const MaxValue = 1 << 20

// Txn bounds: etcd's --max-txn-ops defaults to 128, and a batch stays
// below the request size limit with room for one MaxValue file.
const (
	maxTxnOps   = 120
	maxTxnBytes = MaxValue + 256<<10
)

// meta is the marker that says a prefix is p2ptls's.
type meta struct {
	Tool   string `json:"tool"`
	Layout int    `json:"layout"`
}

const toolName = "p2ptls"

// Store is the state kept in etcd. It is safe for use by several
// goroutines; its lock and claims exclude other processes and other
// callers in this one.
type Store struct {
	cfg    Config
	cli    *clientv3.Client
	root   string // "/PREFIX/v1/"
	base   string // "/PREFIX/"
	wait   time.Duration
	ctx    context.Context // ends with Close
	stop   context.CancelFunc
	marked chan struct{} // closed once the marker is known to be written

	lockSem chan struct{} // one lock holder per Store

	cache     cache // values of listed directories, kept true by the watch
	watchOnce sync.Once

	mu     sync.Mutex
	sess   *concurrency.Session
	held   *concurrency.Mutex            // the state lock, while held
	claims map[string]*concurrency.Mutex // claims held, by name
}

var (
	_ state.Store   = (*Store)(nil)
	_ state.Claimer = (*Store)(nil)
)

// OpenURL opens the store named by an etcd:// URL, with TLS and
// credentials from the environment (see ConfigFromEnv).
func OpenURL(ctx context.Context, rawURL string, getenv func(string) string, lockTimeout time.Duration) (*Store, error) {
	cfg, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if cfg, err = ConfigFromEnv(cfg, getenv); err != nil {
		return nil, err
	}
	return Open(ctx, cfg, lockTimeout)
}

// Open connects to etcd, checks that the cluster answers within the dial
// timeout and that the prefix is p2ptls's (or empty), and returns the
// store. lockTimeout is how long Lock waits for another holder.
func Open(ctx context.Context, cfg Config, lockTimeout time.Duration) (*Store, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	eps := strings.Join(cfg.Endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tc,
		Username:    cfg.User,
		Password:    cfg.Password,
		Logger:      zap.NewNop(),
		DialOptions: dialOptions(),
		Context:     context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, connectError(cfg, eps, tlsCause(cfg, tc, err))
	}
	base := "/" + cfg.Prefix + "/"
	sctx, stop := context.WithCancel(context.Background())
	s := &Store{cfg: cfg, cli: cli, base: base, root: base + "v1/", wait: lockTimeout,
		ctx: sctx, stop: stop, marked: make(chan struct{}), lockSem: make(chan struct{}, 1), claims: map[string]*concurrency.Mutex{},
		cache: newCache()}
	if err := s.checkPrefix(ctx, eps, tc); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// tlsCause finds why a TLS connection timed out: gRPC retries a failed
// handshake until the deadline and reports only that. A direct handshake
// with the same settings says what is wrong (an unknown CA, a missing
// client certificate).
func tlsCause(cfg Config, tc *tls.Config, err error) error {
	if tc == nil || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	for _, ep := range cfg.Endpoints {
		host, _, _ := net.SplitHostPort(ep)
		c := tc.Clone()
		c.ServerName = host
		conn, herr := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", ep, c)
		if herr == nil {
			// The server may still refuse the client's certificate after
			// the handshake: a read tells.
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			_, herr = conn.Read(make([]byte, 1))
			_ = conn.Close()
			var ne net.Error
			if herr == nil || errors.As(herr, &ne) && ne.Timeout() {
				continue
			}
		}
		var ne *net.OpError
		if errors.As(herr, &ne) && ne.Op == "dial" {
			continue // nothing listens there: not a TLS matter
		}
		return &tlsError{ep: ep, err: herr}
	}
	return err
}

// tlsError is a failed handshake with an endpoint.
type tlsError struct {
	ep  string
	err error
}

func (e *tlsError) Error() string {
	if errors.Is(e.err, io.EOF) {
		return fmt.Sprintf("the TLS handshake with %s was cut off (does it serve TLS?)", e.ep)
	}
	return fmt.Sprintf("the TLS handshake with %s failed: %v", e.ep, e.err)
}

func (e *tlsError) Unwrap() error { return e.err }

// connectError is the one sentence for a cluster that does not answer.
func connectError(cfg Config, eps string, err error) error {
	msg := err.Error()
	var te *tlsError
	switch {
	case strings.Contains(msg, "user name is empty"):
		return fault.Failf(fmt.Sprintf("set %s and %s", EnvUser, EnvPasswordFile),
			"etcd at %s requires a user and password", eps)
	case errors.As(err, &te):
		return fault.Failf(fmt.Sprintf("check %s (the CA of etcd's server certificate) and %s/%s", EnvCAFile, EnvCertFile, EnvKeyFile),
			"cannot talk TLS to etcd at %s: %v", eps, err)
	case strings.Contains(msg, "authentication failed") || strings.Contains(msg, "invalid auth token") || strings.Contains(msg, "permission denied"):
		return fault.Failf(fmt.Sprintf("check %s and the password in %s", EnvUser, EnvPasswordFile),
			"etcd at %s refused the credentials of user %q: %v", eps, cfg.User, err)
	case strings.Contains(msg, "certificate") || strings.Contains(msg, "tls:") || strings.Contains(msg, "x509"):
		return fault.Failf(fmt.Sprintf("check %s (the CA of etcd's server certificate) and %s/%s", EnvCAFile, EnvCertFile, EnvKeyFile),
			"cannot talk TLS to etcd at %s: %v", eps, err)
	}
	// Only a cluster that does not answer is unreachable: one that refused
	// the credentials or the TLS settings answered.
	if errors.Is(err, context.DeadlineExceeded) {
		return unreachable(fault.Failf("check that etcd runs there and answers; if it serves TLS, set "+EnvCAFile,
			"cannot reach etcd at %s: no answer within %s", eps, cfg.DialTimeout))
	}
	return unreachable(fault.Failf("check that etcd runs there and answers; if it serves TLS, set "+EnvCAFile,
		"cannot reach etcd at %s: %v", eps, err))
}

// checkPrefix refuses a prefix that holds other keys than p2ptls's, or a
// layout this build does not know.
func (s *Store) checkPrefix(ctx context.Context, eps string, tc *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.root+keyMeta),
		clientv3.OpGet(s.base, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1)),
	).Commit()
	if err != nil {
		return connectError(s.cfg, eps, tlsCause(s.cfg, tc, err))
	}
	metaKVs := resp.Responses[0].GetResponseRange().Kvs
	anyKVs := resp.Responses[1].GetResponseRange().Kvs
	if len(metaKVs) == 0 {
		if len(anyKVs) > 0 {
			return fault.Invalidf("choose another prefix in the store URL",
				"etcd prefix %s holds keys that are not p2ptls's", strings.TrimSuffix(s.base, "/"))
		}
		return nil // the marker is written with the first change
	}
	var m meta
	if err := json.Unmarshal(metaKVs[0].Value, &m); err != nil || m.Tool != toolName {
		return fault.Invalidf("choose another prefix in the store URL",
			"etcd prefix %s holds keys that are not p2ptls's", strings.TrimSuffix(s.base, "/"))
	}
	if m.Layout != Layout {
		return fault.Invalidf("use the p2ptls version that wrote it, or a newer one",
			"etcd prefix %s has key layout %d, which this p2ptls (layout %d) does not know", strings.TrimSuffix(s.base, "/"), m.Layout, Layout)
	}
	close(s.marked)
	return nil
}

// Close ends the store's watches, gives up its lease (freeing a lock or
// claims still held) and closes the connection.
func (s *Store) Close() error { return s.close(true) }

// CloseAway is Close for a caller that knows etcd is away (serve's
// snapshot serving its copy): it does not ask etcd to revoke the lease,
// which could only wait out closeTimeout; the lease ends by itself within
// the session TTL.
func (s *Store) CloseAway() error { return s.close(false) }

func (s *Store) close(revoke bool) error {
	s.mu.Lock()
	sess := s.sess
	s.sess = nil
	s.mu.Unlock()
	var err error
	if sess != nil {
		sess.Orphan()
	}
	if sess != nil && revoke {
		// Revoked under s.ctx (before stop), within closeTimeout: with etcd
		// away the lease ends by itself within its TTL.
		rctx, cancel := context.WithTimeout(s.ctx, closeTimeout)
		_, err = s.cli.Revoke(rctx, sess.Lease())
		cancel()
		if err != nil {
			err = s.opError("give up the etcd lease", err)
		}
	}
	s.stop()
	return errors.Join(err, s.cli.Close())
}

// String is the store's URL, for messages; it holds no credentials.
func (s *Store) String() string { return s.cfg.URL() }

// key is the etcd key of a store name, refusing names that would escape.
func (s *Store) key(name string) (string, error) {
	clean := path.Clean(name)
	if name == "" || path.IsAbs(name) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("invalid state file name %q", name)
	}
	return s.root + dirFiles + clean, nil
}

// dirKey is the key prefix of the entries under dir ("" for the root).
func (s *Store) dirKey(dir string) (string, error) {
	if dir == "" || path.Clean(dir) == "." {
		return s.root + dirFiles, nil
	}
	k, err := s.key(dir)
	if err != nil {
		return "", err
	}
	return k + "/", nil
}

// A value is a header line, then the file's bytes:
// "p2ptls-file 1 <mode octal> <modtime unix nanoseconds>\n".
const valueMagic = "p2ptls-file 1 "

func encodeValue(data []byte, perm fs.FileMode, at time.Time) string {
	var b strings.Builder
	b.Grow(len(data) + 40)
	b.WriteString(valueMagic)
	b.WriteString(strconv.FormatUint(uint64(perm.Perm()), 8))
	b.WriteByte(' ')
	b.WriteString(strconv.FormatInt(at.UnixNano(), 10))
	b.WriteByte('\n')
	b.Write(data)
	return b.String()
}

func decodeValue(v []byte) (data []byte, perm fs.FileMode, at time.Time, err error) {
	rest, ok := bytes.CutPrefix(v, []byte(valueMagic))
	head, body, ok2 := bytes.Cut(rest, []byte{'\n'})
	fields := strings.Fields(string(head))
	if !ok || !ok2 || len(fields) != 2 {
		return nil, 0, time.Time{}, errors.New("not a p2ptls file value")
	}
	m, err1 := strconv.ParseUint(fields[0], 8, 32)
	ns, err2 := strconv.ParseInt(fields[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, 0, time.Time{}, errors.New("not a p2ptls file value")
	}
	return body, fs.FileMode(m).Perm(), time.Unix(0, ns), nil
}

// get reads key (with opts) as readers must see it: while a large change
// is pending, at the etcd revision before it began, so that a reader never
// sees half of it. Runtime names are read as they are now.
func (s *Store) get(ctx context.Context, key string, runtime bool, opts ...clientv3.OpOption) ([]*mvccpb.KeyValue, int64, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if runtime {
		r, err := s.cli.Get(ctx, key, opts...)
		if err != nil {
			return nil, 0, err
		}
		return r.Kvs, r.Header.Revision, nil
	}
	t, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.root+keyPending, clientv3.WithKeysOnly()), clientv3.OpGet(key, opts...)).Commit()
	if err != nil {
		return nil, 0, err
	}
	pend := t.Responses[0].GetResponseRange().Kvs
	if len(pend) == 0 {
		return t.Responses[1].GetResponseRange().Kvs, t.Header.Revision, nil
	}
	before := pend[0].CreateRevision - 1
	r, err := s.cli.Get(ctx, key, append(opts, clientv3.WithRev(before))...)
	if err != nil {
		return nil, 0, fmt.Errorf("read while a large change is being applied: %w", err)
	}
	return r.Kvs, before, nil
}

// Read returns the content of name; a missing file gives an error
// matching fs.ErrNotExist.
func (s *Store) Read(ctx context.Context, name string) ([]byte, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v, ok := s.cache.get(k)
	if !ok {
		kvs, _, err := s.get(ctx, k, state.IsRuntime(name))
		if err != nil {
			return nil, s.opError("read "+name, err)
		}
		if len(kvs) == 0 {
			return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
		}
		v = kvs[0].Value
	}
	data, _, _, err := decodeValue(v)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// fileInfo describes a file (or an implied directory) of the store.
type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return i.mode }
func (i fileInfo) ModTime() time.Time { return i.mtime }
func (i fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i fileInfo) Sys() any           { return nil }

// Stat describes name: its size, mode and modification time as written.
// A name with files under it is a directory (etcd has no directories:
// they exist while they hold files).
func (s *Store) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	k, err := s.key(name)
	if err != nil {
		return nil, err
	}
	kvs, _, err := s.get(ctx, k, state.IsRuntime(name))
	if err != nil {
		return nil, s.opError("stat "+name, err)
	}
	if len(kvs) == 1 {
		data, perm, at, err := decodeValue(kvs[0].Value)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", name, err)
		}
		return fileInfo{name: path.Base(name), size: int64(len(data)), mode: perm, mtime: at}, nil
	}
	kvs, _, err = s.get(ctx, k+"/", state.IsRuntime(name+"/"), clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	if err != nil {
		return nil, s.opError("stat "+name, err)
	}
	if len(kvs) == 0 {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return fileInfo{name: path.Base(name), mode: fs.ModeDir | state.DirMode}, nil
}

// List returns the sorted names of the entries directly under dir ("" for
// the root), files and directories alike; a missing directory lists as
// empty.
func (s *Store) List(ctx context.Context, dir string) ([]string, error) {
	pfx, err := s.dirKey(dir)
	if err != nil {
		return nil, err
	}
	runtime := dir != "" && state.IsRuntime(dir+"/")
	kvs, rev, err := s.get(ctx, pfx, runtime, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, s.opError("list "+dir, err)
	}
	names := make([]string, 0, len(kvs))
	flat := true
	for _, kv := range kvs {
		first, _, sub := strings.Cut(strings.TrimPrefix(string(kv.Key), pfx), "/")
		flat = flat && !sub
		if n := len(names); n == 0 || names[n-1] != first {
			names = append(names, first) // keys come sorted: a directory's keys are adjacent
		}
	}
	if flat && !runtime && s.cache.missing(kvs) >= prefetchMin {
		s.prefetch(ctx, pfx, rev)
	}
	return slices.Compact(names), nil
}

// prefetchMin is the fewest files of a directory whose values List
// fetches for the cache: below it, reading them one by one costs as much.
const prefetchMin = 2

// prefetchPage is how many values one request of prefetch reads: the
// values of a flat directory are records of a few hundred bytes (a flat
// directory of large files is not p2ptls's), so few requests suffice.
const prefetchPage = 10_000

// prefetch caches the values under pfx as they were at rev (see cache.go).
// It is an optimisation: when it fails, reads go to etcd.
func (s *Store) prefetch(ctx context.Context, pfx string, rev int64) {
	s.startWatch()
	vals := map[string][]byte{}
	if err := s.scan(ctx, pfx, rev, prefetchPage, func(k string, v []byte) error {
		vals[k] = v
		return nil
	}); err == nil {
		s.cache.put(vals, rev)
	}
}

// bounded is ctx limited to one request's time.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// opError names the endpoints of a request that failed for want of etcd.
func (s *Store) opError(what string, err error) error {
	if ctxErr := context.Cause(s.ctx); ctxErr != nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: the store is closed", what)
	}
	var fe *fault.Error
	if errors.As(err, &fe) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return unreachable(fault.Failf("check that etcd runs there and answers",
			"%s: etcd at %s does not answer", what, strings.Join(s.cfg.Endpoints, ",")))
	}
	if strings.Contains(err.Error(), "Unavailable") || strings.Contains(err.Error(), "no leader") {
		return unreachable(fault.Failf("check that etcd runs there and answers",
			"%s: etcd at %s does not answer: %v", what, strings.Join(s.cfg.Endpoints, ","), err))
	}
	return fmt.Errorf("%s in etcd at %s: %w", what, strings.Join(s.cfg.Endpoints, ","), err)
}

// unreachableError is a request etcd did not answer: it is also
// state.ErrUnreachable, so that a reader keeping a copy of the state
// (state/snapshot) serves from it.
type unreachableError struct{ err error }

func unreachable(err error) error           { return &unreachableError{err} }
func (e *unreachableError) Error() string   { return e.err.Error() }
func (e *unreachableError) Unwrap() []error { return []error{e.err, state.ErrUnreachable} }

// checkSize refuses a file too large for one etcd value.
func checkSize(name string, n int) error {
	if n > MaxValue {
		return fault.Invalidf("keep files within the etcd store's limit; certificates, keys and records are a few KiB",
			"%s is over the etcd store's limit of %s per file", name, userfile.Size(MaxValue))
	}
	return nil
}
