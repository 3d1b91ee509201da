package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// DryRun reads and verifies the whole archive and reports what would
	// change, writing nothing at all.
	DryRun bool
	// Force replaces a state that is not empty; the old one is kept aside
	// (a directory's beside it as <dir>.pre-restore-<time>; Result.
	// PreviousState says where).
	Force bool
	// AllowMissingCA restores an archive without a management CA.
	AllowMissingCA bool
	// Passphrase decrypts an encrypted archive.
	Passphrase string
	// Now names the directory the old state is kept in.
	Now time.Time
}

// What happens to the management CA, in Result.CA.
const (
	CASame      = "same"      // the archive's CA is the current one
	CADifferent = "different" // agents must be given the archive's CA
	CARestored  = "restored"  // the current state has none; the archive's comes back
	CANone      = "none"      // the archive has none (AllowMissingCA)
)

// Change lists what a restore adds, removes and changes, by name or id.
type Change struct {
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
	Changed []string `json:"changed"`
}

// Result is what a restore did, or with DryRun would do.
type Result struct {
	Target        string    `json:"target"`
	DryRun        bool      `json:"dry_run"`
	Encrypted     bool      `json:"encrypted"`
	CreatedAt     time.Time `json:"created_at"`
	P2PTLSVersion string    `json:"p2ptls_version"`
	Files         int       `json:"files"`
	Bytes         int64     `json:"bytes"`
	// CA is one of CASame, CADifferent, CARestored, CANone.
	CA                         string `json:"ca"`
	CAFingerprintSHA256        string `json:"ca_fingerprint_sha256"`
	CurrentCAFingerprintSHA256 string `json:"current_ca_fingerprint_sha256"`
	// ReplacesState is true when the target holds a state (so a restore
	// needs Force); PreviousState is where that state was kept.
	ReplacesState bool     `json:"replaces_state"`
	PreviousState string   `json:"previous_state"`
	Listeners     Change   `json:"listeners"`
	Mappings      Change   `json:"mappings"`
	Warnings      []string `json:"warnings"`
}

// Restore reads r to its end and verifies it completely before it touches
// the state in s, then has the store replace its whole content with the
// archive's (Store.Replace): a crash leaves the old state or the new one,
// never a mix. For a state directory the archive is extracted beside it
// and the directories are swapped in one rename (see state.Dir.Replace).
func Restore(ctx context.Context, s state.Store, r io.Reader, opts RestoreOptions) (*Result, error) {
	res := &Result{DryRun: opts.DryRun, Warnings: []string{}}
	fill := func(st state.Staging) error {
		res.Target = st.Target()
		cur, err := inspect(ctx, s)
		if err != nil {
			return err
		}
		var out sink = discard{}
		into := &staged{st: st, allowMissingCA: opts.AllowMissingCA}
		if !opts.DryRun {
			out = into
		}
		a, err := readArchive(ctx, r, opts.Passphrase, ScryptWorkFactor, out)
		if err != nil {
			return err
		}
		if opts.AllowMissingCA && !a.manifest.HasCA() && slices.ContainsFunc(a.manifest.Files, func(f File) bool { return f.Path == management.CARecordFile }) {
			fp := into.dropped
			if fp == "" { // a dry run reads the record nowhere
				fp = "that " + management.CARecordFile + " names"
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("the backup records the management CA %s but does not hold it; with --allow-missing-management-ca that record is not restored, so serve creates a new CA, which every agent must be given ('p2ptls agent env')", fp))
		}
		if err := res.describe(a, cur); err != nil {
			return err
		}
		if res.CA == CANone && !opts.AllowMissingCA && !opts.DryRun {
			return fault.Invalidf("restore a backup that has one, or pass --allow-missing-management-ca and then give every agent the new CA ('p2ptls agent env')",
				"the backup holds no management CA (certs/management): serve would create a new one, which no agent trusts")
		}
		if res.ReplacesState && !opts.Force && !opts.DryRun {
			return refuseReplace(s, res.Target)
		}
		return nil
	}
	rep, err := s.Replace(ctx, fill, state.ReplaceOptions{
		DryRun: opts.DryRun,
		Now:    opts.Now,
		Warn:   func(w string) { res.Warnings = append(res.Warnings, w) },
		// The state may have changed while the archive was read.
		Check: func(ctx context.Context, cur state.Store) (bool, error) {
			had, err := HasState(ctx, cur)
			if err == nil && had && !opts.Force {
				err = refuseReplace(s, res.Target)
			}
			return had, err
		},
	})
	if err != nil {
		return nil, err
	}
	res.PreviousState = rep.Kept
	return res, nil
}

// refuseReplace is the refusal to replace target, the state in s, without
// Force: a directory says where its state would be kept.
func refuseReplace(s state.Store, target string) error {
	if _, ok := s.(state.Local); ok {
		return state.RefuseReplace(target)
	}
	return fault.Failf("pass --force to replace it; the current state is then kept aside, and the message says where",
		"the store %s is not empty", target)
}

// current is what the target holds now, for the report.
type current struct {
	hasState bool
	cfg      *state.Config
	cfgErr   error
	caFP     string
}

// inspect reads the store without changing it.
func inspect(ctx context.Context, s state.Store) (*current, error) {
	c := &current{cfg: &state.Config{}}
	var err error
	if c.hasState, err = HasState(ctx, s); err != nil {
		return nil, err
	}
	if c.cfg, c.cfgErr = state.LoadConfig(ctx, s); c.cfgErr != nil {
		c.cfg = &state.Config{}
	}
	if b, err := s.Read(ctx, management.CACertFile); err == nil {
		if certs, err := pki.ParseCertChain(b); err == nil {
			c.caFP = pki.Fingerprint(certs[0])
		}
	}
	return c, nil
}

// HasState reports whether s holds anything a backup would carry other
// than directories: what a restore would throw away.
func HasState(ctx context.Context, s state.Store) (bool, error) {
	var walk func(dir string) (bool, error)
	walk = func(dir string) (bool, error) {
		names, err := s.List(ctx, dir)
		if err != nil {
			return false, err
		}
		for _, n := range names {
			rel := path.Join(dir, n)
			if excluded(rel) {
				continue
			}
			info, err := s.Stat(ctx, rel)
			if errors.Is(err, fs.ErrNotExist) {
				return true, nil // listed but not there: a dangling link
			}
			if err != nil {
				return false, err
			}
			if !info.IsDir() {
				return true, nil
			}
			if found, err := walk(rel); found || err != nil {
				return found, err
			}
		}
		return false, nil
	}
	return walk("")
}

// describe fills the report from the verified archive and the current
// state, and checks that the CA agrees with the manifest.
func (res *Result) describe(a *archive, cur *current) error {
	m := a.manifest
	res.Encrypted = a.encrypted
	res.CreatedAt = m.CreatedAt
	res.P2PTLSVersion = m.P2PTLSVersion
	res.Files = len(m.Files)
	res.Bytes = m.TotalSize()
	res.CAFingerprintSHA256 = m.CAFingerprintSHA256
	res.CurrentCAFingerprintSHA256 = cur.caFP
	res.ReplacesState = cur.hasState
	if m.HasCA() {
		certs, err := pki.ParseCertChain(a.kept[management.CACertFile])
		if err != nil || pki.Fingerprint(certs[0]) != m.CAFingerprintSHA256 {
			return damaged("its management CA does not match the fingerprint in its manifest")
		}
	}
	switch {
	case !m.HasCA():
		res.CA = CANone
	case cur.caFP == "":
		res.CA = CARestored
	case cur.caFP == m.CAFingerprintSHA256:
		res.CA = CASame
	default:
		res.CA = CADifferent
	}
	next := &state.Config{}
	if _, ok := a.kept[state.ConfigFile]; ok {
		// The same parse and validation as every command's: a state that
		// would not load must not replace one that does.
		cfg, err := state.ParseState(a.kept)
		if err != nil {
			file, cfe := state.ConfigFile, (*state.ConfigFileError)(nil)
			if errors.As(err, &cfe) {
				file, err = cfe.Path, cfe.Err
			}
			return fault.Invalidf("nothing was changed; restore an older backup, or extract this one (tar xzf FILE), fix state/"+file+", back that up (CONFIG_DIR=state p2ptls backup --out fixed.tar.gz) and restore fixed.tar.gz",
				"the backup's %s does not load: %v", file, err)
		}
		next = cfg
	}
	if n := len(a.tightened); n > 0 {
		shown := a.tightened
		if n > 10 {
			shown = append(shown[:10:10], fmt.Sprintf("and %d more", n-10))
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("the backup gives files modes that open them to group or others; they were restored 0600 (certificates 0644 at most): %s", strings.Join(shown, ", ")))
	}
	if cur.cfgErr != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the current state cannot be read (%v); listeners and mappings are compared with an empty state", cur.cfgErr))
	}
	res.Listeners = diff(cur.cfg.Listeners, next.Listeners, func(l state.Listener) string { return l.Name })
	res.Mappings = diff(cur.cfg.Mappings, next.Mappings, func(m state.Mapping) string { return m.ID })
	return nil
}

// diff compares two lists of named items.
func diff[T any](before, after []T, key func(T) string) Change {
	c := Change{Added: []string{}, Removed: []string{}, Changed: []string{}}
	old := make(map[string]T, len(before))
	for _, b := range before {
		old[key(b)] = b
	}
	for _, a := range after {
		b, ok := old[key(a)]
		switch {
		case !ok:
			c.Added = append(c.Added, key(a))
		case !reflect.DeepEqual(a, b):
			c.Changed = append(c.Changed, key(a))
		}
		delete(old, key(a))
	}
	for k := range old {
		c.Removed = append(c.Removed, k)
	}
	slices.Sort(c.Added)
	slices.Sort(c.Removed)
	slices.Sort(c.Changed)
	return c
}

// staged is the sink that writes into the store's staging area.
//
// A backup without the management CA that still records one (the CA was
// lost before it was taken) restores that record only without
// AllowMissingCA: the flag accepts a new CA, and the record would make
// serve refuse to create it (management.CARecordFile). dropped is then
// the fingerprint it named.
type staged struct {
	st             state.Staging
	allowMissingCA bool
	drop           bool
	dropped        string
}

func (s *staged) sawManifest(m *Manifest) { s.drop = s.allowMissingCA && !m.HasCA() }

func (s *staged) mkdir(rel string, mode fs.FileMode) error { return s.st.Mkdir(rel, mode) }

func (s *staged) create(rel string, mode fs.FileMode) (io.WriteCloser, error) {
	if s.drop && rel == management.CARecordFile {
		return &recordCatcher{s: s}, nil
	}
	w, err := s.st.Create(rel, mode)
	if err != nil {
		return nil, err
	}
	return stagedFile{w}, nil
}

// stagedFile marks its write errors as the disk's, not the archive's.
type stagedFile struct{ io.WriteCloser }

func (w stagedFile) Write(p []byte) (int, error) {
	n, err := w.WriteCloser.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

// recordCatcher takes the dropped record's content, for the warning.
type recordCatcher struct {
	s   *staged
	buf bytes.Buffer
}

func (c *recordCatcher) Write(p []byte) (int, error) {
	if c.buf.Len() < 4096 {
		c.buf.Write(p)
	}
	return len(p), nil
}

func (c *recordCatcher) Close() error {
	var rec management.CARecord
	c.s.dropped = "(unreadable)"
	if toml.Unmarshal(c.buf.Bytes(), &rec) == nil && rec.FingerprintSHA256 != "" {
		c.s.dropped = rec.FingerprintSHA256
	}
	return nil
}

// discard is the sink of a dry run: it checks and keeps nothing.
type discard struct{}

func (discard) mkdir(string, fs.FileMode) error { return nil }

func (discard) create(string, fs.FileMode) (io.WriteCloser, error) { return nopCloser{io.Discard}, nil }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
