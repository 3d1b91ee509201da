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
	"os"
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
}

// Create writes an archive of d to w. It holds the state lock from the
// first file read to the last byte written, so that no p2ptls process
// changes the state in between; serve keeps serving meanwhile (it only
// writes run/, which a backup leaves out). A complete backup is recorded in
// RecordFile.
func Create(ctx context.Context, d *state.Dir, w io.Writer, opts CreateOptions) (*Manifest, error) {
	m, err := create(ctx, d, w, opts)
	if err == nil {
		writeRecord(ctx, d, m, "", opts)
	}
	return m, err
}

// create is Create without the record: CreateFile records its backup only
// once the file is in place.
func create(ctx context.Context, d *state.Dir, w io.Writer, opts CreateOptions) (*Manifest, error) {
	// Lock would create a missing directory, and a backup must not.
	if _, err := os.Stat(d.Root()); errors.Is(err, fs.ErrNotExist) {
		return nil, fault.Failf("check --config-dir or CONFIG_DIR", "there is no state directory %s to back up", d.Root())
	} else if err != nil {
		return nil, err
	}
	unlock, err := d.Lock(ctx, "backup")
	if err != nil {
		return nil, err
	}
	defer unlock()
	root, err := filepath.EvalSymlinks(d.Root())
	if err != nil {
		return nil, err
	}
	m, err := scan(root)
	if err != nil {
		return nil, err
	}
	m.CreatedAt = opts.Now.UTC().Truncate(time.Second)
	m.P2PTLSVersion = opts.Version
	if err := write(ctx, root, m, w, opts.Passphrase); err != nil {
		return nil, err
	}
	return m, nil
}

// scan lists the state with every file's checksum. It refuses what a
// restore would refuse, so that every backup can be restored.
func scan(root string) (*Manifest, error) {
	m := &Manifest{FormatVersion: FormatVersion, Dirs: []Dir{}, Files: []File{}}
	var total int64
	var loose, looseShown []string
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if excluded(rel) {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err := checkPath(rel); err != nil {
			return fault.Failf("rename or remove it", "the state holds %v, which a backup cannot carry", err)
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		switch {
		case de.IsDir():
			m.Dirs = append(m.Dirs, Dir{Path: rel, Mode: formatMode(info.Mode())})
		case de.Type().IsRegular():
			if info.Size() > MaxFileSize {
				return fault.Failf("remove it from the state directory", "%s is %d bytes, larger than the %d bytes a backup may hold per file", p, info.Size(), MaxFileSize)
			}
			if total += info.Size(); total > MaxTotalSize {
				return fault.Failf("remove what does not belong in the state directory", "the state in %s is larger than the %d bytes a backup may hold", root, MaxTotalSize)
			}
			sum, size, err := hashFile(p)
			if err != nil {
				return err
			}
			m.Files = append(m.Files, File{Path: rel, Mode: formatMode(info.Mode()), Size: size, SHA256: sum})
			if looseSecret(rel, info.Mode()) {
				loose = append(loose, p)
				looseShown = append(looseShown, fmt.Sprintf("%s (%s)", rel, formatMode(info.Mode())))
			}
		case de.Type()&fs.ModeSymlink != 0:
			return fault.Failf("replace it with the file it points to, or remove it", "the state holds the symbolic link %s; a backup carries only files and directories", p)
		default:
			return fault.Failf("remove it from the state directory", "the state holds %s, which is not a regular file or directory (%s)", p, info.Mode().Type())
		}
		if len(m.Dirs)+len(m.Files) > MaxEntries {
			return fault.Failf("remove what does not belong in the state directory", "the state in %s has more than the %d entries a backup may hold", root, MaxEntries)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(loose) > 0 {
		return nil, refuseLooseSecrets(loose, looseShown)
	}
	if m.HasCA() {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(management.CACertFile)))
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

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// write streams tar → gzip → (age) → w: the manifest first, then every
// directory and file in manifest order (parents before children).
func write(ctx context.Context, root string, m *Manifest, w io.Writer, passphrase string) (err error) {
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
		if err := writeFile(tw, root, f, mtime); err != nil {
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
func writeFile(tw *tar.Writer, root string, f File, mtime time.Time) error {
	p := filepath.Join(root, filepath.FromSlash(f.Path))
	mode, _ := parseMode(f.Mode)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: statePrefix + f.Path, Mode: int64(mode), Size: f.Size, ModTime: mtime}); err != nil {
		return fmt.Errorf("write the backup: %w", err)
	}
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(fh, f.Size))
	if err != nil {
		return fmt.Errorf("back up %s: %w", p, err)
	}
	grew, _ := fh.Read(make([]byte, 1))
	if n != f.Size || grew > 0 || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		return fault.Failf("run the backup again, and do not edit the state directory meanwhile", "%s changed while it was being backed up", p)
	}
	return nil
}

// CreateFile writes the archive to file, 0600, through a temporary file
// beside it: a failed backup leaves no partial file, and an existing file
// is replaced only by a complete archive.
func CreateFile(ctx context.Context, d *state.Dir, file string, opts CreateOptions) (m *Manifest, err error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	if root, err := filepath.Abs(d.Root()); err == nil && (abs == root || strings.HasPrefix(abs, root+string(filepath.Separator))) {
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
	if m, err = create(ctx, d, f, opts); err != nil {
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
	writeRecord(ctx, d, m, abs, opts)
	return m, nil
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
