package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

// CreateOptions tune Create.
type CreateOptions struct {
	// Passphrase, when set, age-encrypts the archive (scrypt).
	Passphrase string
	// Version is the p2ptls version recorded in the manifest.
	Version string
	// Now is the creation time recorded in the manifest.
	Now time.Time
	// NoRecord only reads the state: neither the management CA record
	// nor the record of the backup is written (a store copy, which hands
	// the state on exactly as it is).
	NoRecord bool
}

// Create writes an archive of s to w. It holds the state lock from the
// first file read to the last byte written, so that no p2ptls process
// changes the state in between; serve keeps serving meanwhile (it only
// writes run/, which a backup leaves out). A complete backup is recorded in
// RecordFile.
func Create(ctx context.Context, s state.Store, w io.Writer, opts CreateOptions) (*Manifest, error) {
	m, err := create(ctx, s, w, opts)
	if err == nil && !opts.NoRecord {
		writeRecord(ctx, s, m, "", opts)
	}
	return m, err
}

// create is Create without the record: CreateFile records its backup only
// once the file is in place.
func create(ctx context.Context, s state.Store, w io.Writer, opts CreateOptions) (*Manifest, error) {
	local, isLocal := s.(state.Local)
	if isLocal {
		// Lock would create a missing directory, and a backup must not.
		if _, err := os.Stat(local.Root()); errors.Is(err, fs.ErrNotExist) {
			return nil, fault.Failf("check --config-dir or CONFIG_DIR", "there is no state directory %s to back up", local.Root())
		} else if err != nil {
			return nil, err
		}
	}
	// A CA this backup archives is one agents may be given from it: the
	// state records it, if it did not yet, and the archive carries the
	// record (see management.CARecordFile). A failure is no failed backup.
	if !opts.NoRecord {
		if err := management.RecordCA(ctx, s, management.RecordByBackup, false, opts.Now); err != nil {
			slog.Warn("the management CA was not recorded", "file", management.CARecordFile, "err", err)
		}
	}
	unlock, err := s.Lock(ctx, "backup")
	if err != nil {
		return nil, err
	}
	defer unlock()
	t, err := newTree(s)
	if err != nil {
		return nil, err
	}
	m, err := t.scan(ctx)
	if err != nil {
		return nil, err
	}
	m.CreatedAt = opts.Now.UTC().Truncate(time.Second)
	m.P2PTLSVersion = opts.Version
	if err := t.write(ctx, m, w, opts.Passphrase); err != nil {
		return nil, err
	}
	return m, nil
}

// newTree reads s; a local directory's files are named by their paths,
// and their types are checked (see tree.kind).
func newTree(s state.Store) (tree, error) {
	t := tree{s: s, where: func(rel string) string { return rel }}
	local, ok := s.(state.Local)
	if !ok {
		return t, nil
	}
	root, err := filepath.EvalSymlinks(local.Root())
	if err != nil {
		return t, err
	}
	t.where = func(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }
	t.kind = func(rel string) (fs.FileMode, error) {
		info, err := os.Lstat(t.where(rel))
		if err != nil {
			return 0, err
		}
		return info.Mode().Type(), nil
	}
	return t, nil
}

// tree is the state a backup reads, through the Store.
type tree struct {
	s state.Store
	// where names a state path for messages: the file's path in a local
	// directory.
	where func(rel string) string
	// kind, for a local directory, is the type of rel itself, not of what
	// a symbolic link points to (Stat follows links): a backup refuses
	// links and special files rather than read through them.
	kind func(rel string) (fs.FileMode, error)
}

// scan lists the state with every file's checksum, walking it through
// List and Stat in lexical order, parents before children. It refuses
// what a restore would refuse, so that every backup can be restored.
func (t tree) scan(ctx context.Context) (*Manifest, error) {
	m := &Manifest{FormatVersion: FormatVersion, Dirs: []Dir{}, Files: []File{}}
	var total int64
	var loose, looseShown []string
	var walk func(dir string) error
	walk = func(dir string) error {
		names, err := t.s.List(ctx, dir)
		if err != nil {
			return err
		}
		for _, n := range names {
			rel := path.Join(dir, n)
			if excluded(rel) {
				continue
			}
			if err := checkPath(rel); err != nil {
				return fault.Failf("rename or remove it", "the state holds %v, which a backup cannot carry", err)
			}
			p := t.where(rel)
			if t.kind != nil {
				typ, err := t.kind(rel)
				if err != nil {
					return err
				}
				switch {
				case typ&fs.ModeSymlink != 0:
					return fault.Failf("replace it with the file it points to, or remove it", "the state holds the symbolic link %s; a backup carries only files and directories", p)
				case typ != 0 && typ != fs.ModeDir:
					return fault.Failf("remove it from the state directory", "the state holds %s, which is not a regular file or directory (%s)", p, typ)
				}
			}
			info, err := t.s.Stat(ctx, rel)
			if err != nil {
				return err
			}
			switch {
			case info.IsDir():
				m.Dirs = append(m.Dirs, Dir{Path: rel, Mode: formatMode(info.Mode())})
			case info.Mode().IsRegular():
				if info.Size() > MaxFileSize {
					return fault.Failf("remove it from the state directory", "%s is %d bytes, larger than the %d bytes a backup may hold per file", p, info.Size(), MaxFileSize)
				}
				if total += info.Size(); total > MaxTotalSize {
					return fault.Failf("remove what does not belong in the state directory", "the state in %s is larger than the %d bytes a backup may hold", t.where(""), MaxTotalSize)
				}
				b, err := t.s.Read(ctx, rel)
				if err != nil {
					return err
				}
				if int64(len(b)) > MaxFileSize {
					return fault.Failf("run the backup again, and do not edit the state directory meanwhile", "%s changed while it was being backed up", p)
				}
				sum := sha256.Sum256(b)
				m.Files = append(m.Files, File{Path: rel, Mode: formatMode(info.Mode()), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
				if looseSecret(rel, info.Mode()) {
					loose = append(loose, p)
					looseShown = append(looseShown, fmt.Sprintf("%s (%s)", rel, formatMode(info.Mode())))
				}
			default:
				return fault.Failf("remove it from the state directory", "the state holds %s, which is not a regular file or directory (%s)", p, info.Mode().Type())
			}
			if len(m.Dirs)+len(m.Files) > MaxEntries {
				return fault.Failf("remove what does not belong in the state directory", "the state in %s has more than the %d entries a backup may hold", t.where(""), MaxEntries)
			}
			if info.IsDir() {
				if err := walk(rel); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	if len(loose) > 0 {
		return nil, refuseLooseSecrets(loose, looseShown)
	}
	if m.HasCA() {
		b, err := t.s.Read(ctx, management.CACertFile)
		if err != nil {
			return nil, err
		}
		certs, err := pki.ParseCertChain(b)
		if err != nil {
			return nil, fault.Failf("restore certs/management from an older backup", "the management CA certificate %s is damaged: %v", management.CACertFile, err)
		}
		m.CAFingerprintSHA256 = pki.Fingerprint(certs[0])
	}
	return m, nil
}

// write streams tar → gzip → (age) → w: the manifest first, then every
// directory and file in manifest order (parents before children).
func (t tree) write(ctx context.Context, m *Manifest, w io.Writer, passphrase string) (err error) {
	out := w
	var enc io.WriteCloser
	if passphrase != "" {
		rcpt, err := age.NewScryptRecipient(passphrase)
		if err != nil {
			return fault.AsInvalid(err, "give a passphrase file that is not empty")
		}
		rcpt.SetWorkFactor(ScryptWorkFactor)
		if enc, err = age.Encrypt(w, rcpt); err != nil {
			return fmt.Errorf("encrypt the backup: %w", err)
		}
		out = enc
	}
	gz := gzip.NewWriter(out)
	tw := tar.NewWriter(gz)
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	mtime := m.CreatedAt
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: ManifestName, Mode: 0o600, Size: int64(len(mb)), ModTime: mtime}); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	if _, err := tw.Write(mb); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	for _, d := range m.Dirs {
		mode, _ := parseMode(d.Mode)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: statePrefix + d.Path + "/", Mode: int64(mode), ModTime: mtime}); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
	}
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := t.writeFile(ctx, tw, f, mtime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return fmt.Errorf("write the backup: %w", err)
		}
	}
	return nil
}

// writeFile adds one file, checking it against the manifest: the lock keeps
// p2ptls from changing it, but not a hand edit.
func (t tree) writeFile(ctx context.Context, tw *tar.Writer, f File, mtime time.Time) error {
	p := t.where(f.Path)
	mode, _ := parseMode(f.Mode)
	b, err := t.s.Read(ctx, f.Path)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	if int64(len(b)) != f.Size || hex.EncodeToString(sum[:]) != f.SHA256 {
		return fault.Failf("run the backup again, and do not edit the state directory meanwhile", "%s changed while it was being backed up", p)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: statePrefix + f.Path, Mode: int64(mode), Size: f.Size, ModTime: mtime}); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("back up %s: %w", p, err)
	}
	return nil
}

// CreateFile writes the archive to file, 0600, through a temporary file
// beside it: a failed backup leaves no partial file, and an existing file
// is replaced only by a complete archive.
func CreateFile(ctx context.Context, s state.Store, file string, opts CreateOptions) (m *Manifest, err error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if inside(s, abs) {
		return nil, fault.Invalidf("write it outside the state directory, e.g. --out /var/backups/p2ptls.tar.gz", "the backup file %s would be inside the state directory it backs up", file)
	}
	dir := filepath.Dir(abs)
	f, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".tmp-*")
	if err != nil {
		return nil, fault.Failf("check that the directory exists and is writable", "cannot write the backup into %s: %v", dir, unwrapPath(err))
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// The archive holds private keys: never readable by others, whatever
	// the umask.
	if err := f.Chmod(state.SecretMode); err != nil {
		return nil, err
	}
	if m, err = create(ctx, s, f, opts); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("write %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", file, err)
	}
	if err := os.Rename(f.Name(), abs); err != nil {
		return nil, fmt.Errorf("write %s: %w", file, err)
	}
	if err := syncDir(dir); err != nil {
		return m, err
	}
	writeRecord(ctx, s, m, abs, opts)
	return m, nil
}

// inside reports whether abs is in the directory of a local store.
func inside(s state.Store, abs string) bool {
	local, ok := s.(state.Local)
	if !ok {
		return false // a remote store has no directory to write into
	}
	root, err := filepath.Abs(local.Root())
	return err == nil && (abs == root || strings.HasPrefix(abs, root+string(filepath.Separator)))
}

// unwrapPath drops the path from an fs.PathError whose message names it.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
