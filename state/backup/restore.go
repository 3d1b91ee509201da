package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

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
	// Force replaces a state that is not empty; the old one is kept beside
	// it as <dir>.pre-restore-<time>.
	Force bool
	// AllowMissingCA restores an archive without a management CA.
	AllowMissingCA bool
	// Passphrase decrypts an encrypted archive.
	Passphrase string
	// Now names the directory the old state is kept in.
	Now time.Time

	// unmark ends the staging directory's life as such, just before it
	// becomes the state (see staging.go).
	unmark func() error
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
// the state in d, then replaces that state in one atomic step: a crash
// leaves the old state or the new one at d's path, never a mix. The archive
// is extracted into <dir>.restore-tmp-<random> beside the target, so the
// swap is a rename on one filesystem; a failure removes it again.
func Restore(ctx context.Context, d *state.Dir, r io.Reader, opts RestoreOptions) (*Result, error) {
	target, exists, err := resolveTarget(d.Root())
	if err != nil {
		return nil, err
	}
	res := &Result{Target: target, DryRun: opts.DryRun, Warnings: []string{}}
	// Before this restore makes its own staging directory: those of dead
	// restores go (a dry run only looks), the rest is pointed out.
	var left []Leftover
	if opts.DryRun {
		for _, l := range Leftovers(target) {
			if l.Kind != LeftoverActive {
				left = append(left, l)
			}
		}
	} else {
		removed, unknown, warns := cleanStaging(target)
		res.Warnings = append(res.Warnings, warns...)
		for _, p := range removed {
			res.Warnings = append(res.Warnings, fmt.Sprintf("removed %s, left from an interrupted restore", p))
		}
		left = unknown
	}
	for _, l := range left {
		if l.Kind == LeftoverStaging {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is left from an interrupted restore that died while extracting; the next restore removes it, or remove it now: rm -rf %s", l.Path, l.Path))
		} else {
			res.Warnings = append(res.Warnings, leftoverWarning(l, target))
		}
	}
	cur, err := inspect(ctx, target, exists)
	if err != nil {
		return nil, err
	}
	var out sink = discard{}
	var staged string
	if !opts.DryRun {
		st, err := makeStaging(target, exists)
		if err != nil {
			return nil, err
		}
		defer st.release()
		staged = st.dir
		defer func() {
			if staged != "" {
				_ = os.RemoveAll(staged)
			}
		}()
		out = stage(staged)
		opts.unmark = st.unmark
	}
	a, err := readArchive(ctx, r, opts.Passphrase, ScryptWorkFactor, out)
	if err != nil {
		return nil, err
	}
	if err := res.describe(a, cur); err != nil {
		return nil, err
	}
	if res.CA == CANone && !opts.AllowMissingCA && !opts.DryRun {
		return nil, fault.Invalidf("restore a backup that has one, or pass --allow-missing-management-ca and then give every agent the new CA ('p2ptls agent env')",
			"the backup holds no management CA (certs/management): serve would create a new one, which no agent trusts")
	}
	if opts.DryRun {
		return res, nil
	}
	if res.ReplacesState && !opts.Force {
		return nil, refuseReplace(target)
	}
	if err := finish(staged, a.manifest); err != nil {
		return nil, err
	}
	prev, warns, err := swapIn(ctx, d, target, staged, exists, opts)
	staged = "" // swapped in, or already removed by swapIn
	if err != nil {
		return nil, err
	}
	res.PreviousState = prev
	res.Warnings = append(res.Warnings, warns...)
	return res, nil
}

func refuseReplace(target string) error {
	return fault.Failf("pass --force to replace it; the current state is then kept beside it as "+filepath.Base(target)+".pre-restore-<time>",
		"the state directory %s is not empty", target)
}

// resolveTarget returns the state directory's real path (a symlinked
// CONFIG_DIR is restored where it points) and whether it exists.
func resolveTarget(root string) (string, bool, error) {
	real, err := filepath.EvalSymlinks(root)
	if errors.Is(err, fs.ErrNotExist) {
		if dest, dangling := danglingLink(root); dangling {
			// Restoring "into" it would replace the link, which is not what
			// a symlinked CONFIG_DIR asks for, and fails the same way each time.
			return "", false, fault.Failf(fmt.Sprintf("create the directory it points to (mkdir -p -m 700 %s) and restore again, or point --config-dir or CONFIG_DIR at a real directory", dest),
				"the state directory %s is a symbolic link to %s, which does not exist", root, dest)
		}
		return root, false, nil
	}
	if err != nil {
		return "", false, err
	}
	info, err := os.Stat(real)
	if err != nil {
		return "", false, err
	}
	if !info.IsDir() {
		return "", false, fault.Failf("check --config-dir or CONFIG_DIR", "the state directory %s is not a directory", root)
	}
	return real, true, nil
}

// danglingLink reports whether p is a symbolic link whose chain ends at a
// path that does not exist, and that path.
func danglingLink(p string) (string, bool) {
	for range 40 { // the kernel's own limit on a chain
		info, err := os.Lstat(p)
		if err != nil {
			return p, false
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			return p, false
		}
		dest, err := os.Readlink(p)
		if err != nil {
			return p, false
		}
		if !filepath.IsAbs(dest) {
			dest = filepath.Join(filepath.Dir(p), dest)
		}
		if _, err := os.Lstat(dest); errors.Is(err, fs.ErrNotExist) {
			return dest, true
		}
		p = dest
	}
	return p, false
}

// current is what the target holds now, for the report.
type current struct {
	hasState bool
	cfg      *state.Config
	cfgErr   error
	caFP     string
}

// inspect reads the target without changing it.
func inspect(ctx context.Context, target string, exists bool) (*current, error) {
	c := &current{cfg: &state.Config{}}
	if !exists {
		return c, nil
	}
	var err error
	if c.hasState, err = hasState(target); err != nil {
		return nil, err
	}
	s := state.OpenDir(target, 0)
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

// hasState reports whether dir holds anything a backup would carry other
// than directories: what a restore would throw away.
func hasState(dir string) (bool, error) {
	found := false
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if p == dir {
			return nil
		}
		if excluded(filepath.ToSlash(rel)) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !de.IsDir() {
			found = true
			return filepath.SkipAll
		}
		return nil
	})
	return found, err
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

// sameFilesystem refuses a target that is a mount point (a Docker volume
// mounted at CONFIG_DIR): it cannot be replaced by a rename.
func sameFilesystem(target, parent string) error {
	var ts, ps syscall.Stat_t
	if err := syscall.Stat(target, &ts); err != nil {
		return err
	}
	if err := syscall.Stat(parent, &ps); err != nil {
		return err
	}
	if ts.Dev != ps.Dev {
		return fault.Failf("mount the volume one level up and keep the state in a directory inside it (e.g. CONFIG_DIR=/data/p2ptls), or restore into an empty directory and copy it over while serve is stopped",
			"the state directory %s is a mount point, and restore replaces the directory with a rename, which a mount point does not allow", target)
	}
	return nil
}

// stage is the sink that writes into the staging directory. Files get
// their final mode at creation and are synced, so the swap publishes
// durable content.
type stage string

func (s stage) mkdir(rel string) error {
	return os.Mkdir(filepath.Join(string(s), filepath.FromSlash(rel)), state.DirMode)
}

func (s stage) create(rel string, mode fs.FileMode) (io.WriteCloser, error) {
	f, err := os.OpenFile(filepath.Join(string(s), filepath.FromSlash(rel)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return nil, err
	}
	// Explicitly: the umask must not decide the mode.
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return nil, err
	}
	return stagedFile{f}, nil
}

type stagedFile struct{ f *os.File }

func (w stagedFile) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

func (w stagedFile) Close() error { return errors.Join(w.f.Sync(), w.f.Close()) }

// discard is the sink of a dry run: it checks and keeps nothing.
type discard struct{}

func (discard) mkdir(string) error { return nil }

func (discard) create(string, fs.FileMode) (io.WriteCloser, error) { return nopCloser{io.Discard}, nil }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// finish gives the staged directories their modes (children first, since a
// restrictive mode could block writing into one) and syncs them.
func finish(staged string, m *Manifest) error {
	dirs := slices.Clone(m.Dirs)
	slices.SortFunc(dirs, func(a, b Dir) int { return strings.Compare(b.Path, a.Path) })
	for _, d := range dirs {
		p := filepath.Join(staged, filepath.FromSlash(d.Path))
		mode, _ := parseMode(d.Mode)
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
		if err := syncDir(p); err != nil {
			return err
		}
	}
	return syncDir(staged)
}

// swapIn puts the staged state at target. An existing target is exchanged
// with it in one rename while holding its lock, so that no p2ptls command
// is half-way through a change; the old state then moves to
// <target>.pre-restore-<time>, or is removed when it held nothing. It
// returns where the old state is kept and warnings.
func swapIn(ctx context.Context, d *state.Dir, target, staged string, exists bool, opts RestoreOptions) (string, []string, error) {
	// A new revision makes a running serve reload everything.
	rev := fmt.Sprintf("%d %d restore\n", opts.Now.UnixNano(), os.Getpid())
	if err := state.WriteFileAtomic(filepath.Join(staged, state.RevisionFile), []byte(rev), state.SecretMode); err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(staged))
	}
	parent := filepath.Dir(target)
	if !exists {
		if err := opts.unmark(); err != nil {
			return "", nil, errors.Join(err, os.RemoveAll(staged))
		}
		if err := state.Commit(func() error { return os.Rename(staged, target) }); err != nil {
			return "", nil, errors.Join(fault.Failf("if another process created it meanwhile, restore again with --force to replace it; otherwise fix what the error names and restore again",
				"cannot move the restored state to %s: %v", target, err), os.RemoveAll(staged))
		}
		return "", nil, syncDir(parent)
	}
	unlockOld, err := d.Lock(ctx, "restore")
	if err != nil {
		return "", nil, errors.Join(err, os.RemoveAll(staged))
	}
	// The state may have changed while the archive was read.
	had, err := hasState(target)
	if err == nil && had && !opts.Force {
		err = refuseReplace(target)
	}
	if err == nil {
		err = copyRun(target, staged)
	}
	// Lock the staged state too: after the exchange its lock file is the
	// one at the target path, so no other process can lock the new state
	// before both unlocks ran, and each unlock removes a lock file that is
	// still its own.
	var unlockNew func() error
	if err == nil {
		unlockNew, err = state.OpenDir(staged, 0).Lock(ctx, "restore")
	}
	if err == nil {
		err = opts.unmark()
	}
	var kept string
	var warns []string
	if err == nil {
		// The exchange and what follows it are one commit: a restore told
		// to stop by a signal finishes them before it exits, so the old
		// state is kept aside under its name, not left in the staging
		// directory.
		err = state.Commit(func() error {
			if err := swap(target, staged); err != nil {
				return err
			}
			kept, warns = afterSwap(parent, target, staged, had, opts.Now, unlockOld, unlockNew)
			return nil
		})
	}
	if err != nil {
		if unlockNew != nil {
			_ = unlockNew()
		}
		_ = unlockOld()
		return "", nil, errors.Join(err, os.RemoveAll(staged))
	}
	return kept, warns, nil
}

// afterSwap finishes a restore whose exchange is done: what fails now is
// reported, not undone. The old state, now at staged, is kept aside as
// <target>.pre-restore-<time>, or removed when it held nothing.
func afterSwap(parent, target, staged string, had bool, now time.Time, unlockOld, unlockNew func() error) (string, []string) {
	var warns []string
	warn := func(err error) {
		if err != nil {
			warns = append(warns, err.Error())
		}
	}
	warn(syncDir(parent))
	warn(unlockOld())
	warn(unlockNew())
	if !had {
		warn(os.RemoveAll(staged))
		return "", warns
	}
	kept, err := keepAside(staged, target, now)
	if err != nil {
		return staged, append(warns, fmt.Sprintf("the previous state is in %s: %v", staged, err))
	}
	warn(syncDir(parent))
	return kept, warns
}

// keepAside renames the old state to <target>.pre-restore-<UTC time>, with a
// counter when a restore in the same second already used that name.
func keepAside(old, target string, now time.Time) (string, error) {
	base := target + ".pre-restore-" + now.UTC().Format("20060102T150405Z")
	name := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name, os.Rename(old, name)
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// copyRun carries serve's runtime status over, so that "p2ptls status"
// keeps seeing a running serve across the swap.
func copyRun(from, to string) error {
	src := filepath.Join(from, state.RunDir)
	entries, err := os.ReadDir(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dst := filepath.Join(to, state.RunDir)
	if err := state.MkdirAll(dst); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || isTemp(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // serve replaced it meanwhile
		}
		if err != nil {
			return err
		}
		if err := state.WriteFileAtomic(filepath.Join(dst, e.Name()), b, state.SecretMode); err != nil {
			return err
		}
	}
	return nil
}

// errNoExchange says that exchange is not available here.
var errNoExchange = errors.New("atomic exchange of directories is not supported")

// swap exchanges target and staged. Where the kernel or filesystem cannot
// exchange atomically it falls back to two renames, with a moment in which
// target does not exist.
func swap(target, staged string) error {
	err := exchange(target, staged)
	if !errors.Is(err, errNoExchange) {
		return err
	}
	return renameSwap(target, staged)
}

// renameSwap exchanges target and staged with two renames, going back
// when the second fails.
func renameSwap(target, staged string) error {
	aside := staged + ".old"
	if err := os.Rename(target, aside); err != nil {
		return err
	}
	if err := os.Rename(staged, target); err != nil {
		return errors.Join(err, os.Rename(aside, target))
	}
	return os.Rename(aside, staged)
}
