// Package backup writes the whole state directory to one archive and
// restores it, so that a machine can be rebuilt with the same management CA
// (every agent keeps trusting it), mappings, certificates and credentials.
//
// An archive is a tar stream, gzip-compressed and, with a passphrase,
// age-encrypted (scrypt). Its first entry is the manifest
// (p2ptls-backup.json): format version, creation time, p2ptls version, the
// management CA fingerprint and every directory and file with its mode, and
// for files size and SHA-256. The state follows under "state/". Restore
// checks every entry against the manifest while staging it (beside the
// target for a directory), and only then has the store swap it in
// (state.Store.Replace). Both read and write through the Store, so that an
// archive moves between backends (a directory, etcd) unchanged; Verify
// reads a restored state back against the manifest.
package backup

import (
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/management"
)

// ManifestName is the archive's first entry.
const ManifestName = "p2ptls-backup.json"

// FormatVersion is the only archive format this build writes and reads.
const FormatVersion = 1

// statePrefix holds the state's files in the archive, apart from the
// manifest, so that no state file name can collide with it and "tar x"
// gives a directory one can look into.
const statePrefix = "state/"

// Limits a restore enforces before writing anything, so that a hostile or
// broken archive cannot fill the disk or the memory. A real state is far
// smaller: 100k mappings take a few hundred MB. Create refuses a state that
// exceeds them, so that every backup it writes can be restored.
const (
	MaxFileSize    = 64 << 20 // one file
	MaxTotalSize   = 1 << 30  // all files together
	MaxEntries     = 1_000_000
	maxManifestLen = 256 << 20
	maxPathLen     = 4096
)

// Manifest describes an archive.
type Manifest struct {
	FormatVersion int       `json:"format_version"`
	CreatedAt     time.Time `json:"created_at"`
	P2PTLSVersion string    `json:"p2ptls_version"`
	// CAFingerprintSHA256 is the management CA's (pki.Fingerprint), "" when
	// the state had none.
	CAFingerprintSHA256 string `json:"ca_fingerprint_sha256"`
	Dirs                []Dir  `json:"dirs"`
	Files               []File `json:"files"`
}

// Dir is one directory of the state, relative to its root.
type Dir struct {
	Path string `json:"path"`
	Mode string `json:"mode"` // octal permission bits, "0700"
}

// File is one regular file of the state, relative to its root.
type File struct {
	Path   string `json:"path"`
	Mode   string `json:"mode"` // octal permission bits, "0600"
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lower-case hex
}

// HasCA reports whether the archive holds a management CA: the CA exists
// exactly when its certificate does (see management.CACertFile).
func (m *Manifest) HasCA() bool {
	for _, f := range m.Files {
		if f.Path == management.CACertFile {
			return true
		}
	}
	return false
}

// TotalSize is the size of all files together.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// formatMode writes permission bits the way chmod takes them.
func formatMode(m fs.FileMode) string { return fmt.Sprintf("%04o", m.Perm()) }

// parseMode reads what formatMode wrote; anything beyond the permission
// bits (setuid, sticky, a type) has no place in a state directory.
func parseMode(s string) (fs.FileMode, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || len(s) != 4 || v > 0o777 {
		return 0, fmt.Errorf("mode %q is not permission bits such as 0600", s)
	}
	return fs.FileMode(v), nil
}

// excluded reports whether a state path stays out of backups: serve's
// runtime status, the lock, the revision (a restore writes a new one so that
// a running serve reloads), a restore's staging marker, the journal of an
// unfinished change, and temporary names: files of atomic writes and of
// changes, and what a change put aside, which belong to a write that never
// finished (a backup takes the lock, which finishes a journaled change
// first).
func excluded(rel string) bool {
	if rel == state.RunDir || strings.HasPrefix(rel, state.RunDir+"/") || rel == state.LockFile || rel == state.RevisionFile || rel == state.RestoreStagingMarker || rel == state.JournalFile {
		return true
	}
	// A restore into a mount point stages, swaps and keeps the previous
	// state inside the directory: none of it is this state.
	if top, _, _ := strings.Cut(rel, "/"); state.IsRestoreEntry(top) {
		return true
	}
	return isTemp(path.Base(rel))
}

// isTemp reports whether a file name is a temporary file of
// state.WriteFileAtomic (".NAME.tmp-RANDOM").
func isTemp(base string) bool {
	return strings.HasPrefix(base, ".") && strings.Contains(base, ".tmp-")
}

// checkPath refuses a path that could land outside the directory it is
// extracted into or that p2ptls would never write: absolute, with "..",
// not in clean slash form, or too long.
func checkPath(p string) error {
	switch {
	case p == "" || p == ".":
		return fmt.Errorf("an empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("a path longer than %d bytes", maxPathLen)
	case path.IsAbs(p):
		return fmt.Errorf("the absolute path %q", p)
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Errorf("the path %q, which leads out of the state directory", p)
	case path.Clean(p) != p || strings.ContainsRune(p, 0):
		return fmt.Errorf("the path %q, which is not in clean form", p)
	}
	return nil
}

// validate checks the manifest on its own before anything is extracted:
// sane paths, no duplicates, every parent listed as a directory, sane modes,
// sizes and checksums, within the limits.
func (m *Manifest) validate() error {
	if m.FormatVersion != FormatVersion {
		return fmt.Errorf("its format version is %d; this p2ptls reads version %d (restore it with the p2ptls version that wrote it, %q, or a newer one)",
			m.FormatVersion, FormatVersion, m.P2PTLSVersion)
	}
	if n := len(m.Dirs) + len(m.Files); n > MaxEntries {
		return fmt.Errorf("it lists %d entries, more than the %d a restore accepts", n, MaxEntries)
	}
	dirs := make(map[string]bool, len(m.Dirs))
	seen := make(map[string]bool, len(m.Dirs)+len(m.Files))
	check := func(p, mode string) error {
		if err := checkPath(p); err != nil {
			return fmt.Errorf("its manifest lists %v", err)
		}
		if excluded(p) {
			return fmt.Errorf("its manifest lists %q, which a backup never holds", p)
		}
		if seen[p] {
			return fmt.Errorf("its manifest lists %q twice", p)
		}
		seen[p] = true
		if _, err := parseMode(mode); err != nil {
			return fmt.Errorf("its manifest gives %q the %v", p, err)
		}
		return nil
	}
	for _, d := range m.Dirs {
		if err := check(d.Path, d.Mode); err != nil {
			return err
		}
		dirs[d.Path] = true
	}
	var total int64
	for _, f := range m.Files {
		if err := check(f.Path, f.Mode); err != nil {
			return err
		}
		if f.Size < 0 || f.Size > MaxFileSize {
			return fmt.Errorf("its manifest gives %q a size of %d bytes; a restore accepts up to %d", f.Path, f.Size, MaxFileSize)
		}
		if total += f.Size; total > MaxTotalSize {
			return fmt.Errorf("its files add up to more than the %d bytes a restore accepts", MaxTotalSize)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 || strings.ToLower(f.SHA256) != f.SHA256 {
			return fmt.Errorf("its manifest gives %q no valid SHA-256", f.Path)
		}
	}
	for p := range seen {
		if parent := path.Dir(p); parent != "." && !dirs[parent] {
			return fmt.Errorf("its manifest lists %q but not its directory %q", p, parent)
		}
	}
	if m.HasCA() != (m.CAFingerprintSHA256 != "") {
		return fmt.Errorf("its manifest's CA fingerprint does not agree with its files")
	}
	return nil
}
