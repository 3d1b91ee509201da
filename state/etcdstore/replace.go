package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state"
)

// keptInfix names the prefix the old content of a Replace is kept under:
// /PREFIX.pre-restore-<UTC time>/, beside the store's own.
const keptInfix = ".pre-restore-"

// Replace (restore's swap) makes the store's content what fill stages, in
// one step for readers and crash-safe: fill writes into memory, the files
// are checked against the limits, then under the lock Check runs, the old
// content is copied to /PREFIX.pre-restore-<time>/ when Check says keep,
// and the swap is one large change (see the package doc) that deletes
// every file but serve's runtime status and writes the new ones.
func (s *Store) Replace(ctx context.Context, fill func(state.Staging) error, opts state.ReplaceOptions) (*state.Replaced, error) {
	st := &memStaging{s: s, files: map[string]state.FileWrite{}, dry: opts.DryRun}
	if err := fill(st); err != nil {
		return nil, err
	}
	if opts.DryRun {
		return &state.Replaced{}, nil
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	c := state.Change{}
	for _, name := range st.order {
		c.Writes = append(c.Writes, st.files[name])
	}
	p, err := s.plan(c, opts.Now)
	if err != nil {
		return nil, err
	}
	p.desired = true // a new revision makes a running serve reload everything
	unlock, err := s.Lock(ctx, "restore")
	if err != nil {
		return nil, err
	}
	defer func() { _ = unlock() }()
	keep := false
	if opts.Check != nil {
		if keep, err = opts.Check(ctx, s); err != nil {
			return nil, err
		}
	}
	kept := ""
	if keep {
		if kept, err = s.keepAside(ctx, opts.Now); err != nil {
			return nil, err
		}
	}
	if err := s.applyLarge(ctx, p, true); err != nil {
		return nil, err
	}
	return &state.Replaced{Kept: kept}, unlock()
}

// keepAside copies every file (serve's status aside) to a sibling prefix
// and returns its URL. The marker is written last: a copy cut short by a
// crash has none, and so is recognisable as incomplete.
func (s *Store) keepAside(ctx context.Context, now time.Time) (string, error) {
	base := strings.TrimSuffix(s.base, "/") + keptInfix + now.UTC().Format("20060102T150405Z")
	name := base
	for i := 2; ; i++ {
		r, err := s.cli.Get(ctx, name+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil {
			return "", s.opError("keep the current state", err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
	to := name + "/v1/"
	b := s.batcher(ctx, false)
	files := s.root + dirFiles
	err := s.scan(ctx, files, 0, scanPage, func(k string, v []byte) error {
		rel := strings.TrimPrefix(k, files)
		if state.IsRuntime(rel) {
			return nil
		}
		return b.add(clientv3.OpPut(to+dirFiles+rel, string(v)), len(k)+len(v))
	})
	if err == nil {
		m, _ := json.Marshal(meta{Tool: toolName, Layout: Layout})
		if err = b.flush(); err == nil {
			err = b.add(clientv3.OpPut(to+keyMeta, string(m)), len(m))
		}
	}
	if err == nil {
		err = b.flush()
	}
	if err != nil {
		return "", fmt.Errorf("keep the current state under %s: %w", name, err)
	}
	return Scheme + strings.Join(s.cfg.Endpoints, ",") + name, nil
}

// memStaging gathers a Replace's new content in memory; a dry run checks
// names and sizes and keeps nothing.
type memStaging struct {
	s     *Store
	dry   bool
	files map[string]state.FileWrite
	order []string
}

func (m *memStaging) Target() string { return m.s.String() }

// Mkdir checks the name: etcd has no directories.
func (m *memStaging) Mkdir(name string, _ fs.FileMode) error {
	_, err := m.s.key(name)
	return err
}

func (m *memStaging) Create(name string, perm fs.FileMode) (io.WriteCloser, error) {
	if _, err := m.s.key(name); err != nil {
		return nil, err
	}
	return &memFile{m: m, name: name, perm: perm}, nil
}

type memFile struct {
	m    *memStaging
	name string
	perm fs.FileMode
	buf  bytes.Buffer
}

func (f *memFile) Write(p []byte) (int, error) {
	if f.buf.Len()+len(p) > MaxValue {
		return 0, checkSize(f.name, f.buf.Len()+len(p))
	}
	return f.buf.Write(p)
}

func (f *memFile) Close() error {
	if f.m.dry {
		return nil
	}
	if _, ok := f.m.files[f.name]; !ok {
		f.m.order = append(f.m.order, f.name)
	}
	f.m.files[f.name] = state.FileWrite{Name: f.name, Data: f.buf.Bytes(), Perm: f.perm}
	return nil
}
