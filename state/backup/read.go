package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"filippo.io/age"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
)

// ageMagic starts every (binary) age file.
const ageMagic = "age-encryption.org/v1"

// hintDamaged goes with every refusal of the archive itself.
const hintDamaged = "give the complete file that 'p2ptls backup' wrote; nothing was changed"

// damaged is the refusal of an archive that is not a p2ptls backup or was
// damaged on its way.
func damaged(format string, args ...any) error {
	return fault.Invalidf(hintDamaged, "not a p2ptls backup or damaged: "+format, args...)
}

// sink receives the verified parts of an archive: the staging directory of a
// restore, or nothing for a dry run.
type sink interface {
	// mkdir makes a directory; mode is its final mode.
	mkdir(rel string, mode fs.FileMode) error
	// create returns a writer for a new file with its final mode.
	create(rel string, mode fs.FileMode) (io.WriteCloser, error)
}

// manifestSink is a sink told the (verified) manifest before any entry.
type manifestSink interface{ sawManifest(*Manifest) }

// keep lists the files a restore reads beyond checking them: the desired
// state (with the mapping records, state.IsRecordFile) and the CA, to
// report what changes.
var keep = map[string]bool{state.ConfigFile: true, management.CACertFile: true}

// archive is what reading a whole archive found.
type archive struct {
	manifest  *Manifest
	encrypted bool
	kept      map[string][]byte
	// tightened lists the files whose archived mode opened them to group
	// or others more than a restore does ("ca.key (0644)"): see
	// restoredMode.
	tightened []string
}

// readArchive reads and verifies r to its end, handing every entry to out:
// the layers (age, gzip, tar) must be intact, the manifest first and sane,
// and every entry exactly as the manifest says (type, mode, size, SHA-256),
// in order (parents first), once, and nothing missing or extra.
//
// maxLogN caps the scrypt work factor of an encrypted archive: Restore
// passes ScryptWorkFactor; the fuzz target less, so that a mutated header
// cannot make each run cost a second.
func readArchive(ctx context.Context, r io.Reader, passphrase string, maxLogN int, out sink) (*archive, error) {
	a := &archive{kept: map[string][]byte{}}
	br := bufio.NewReader(r)
	var plain io.Reader = br
	if head, _ := br.Peek(len(ageMagic)); string(head) == ageMagic {
		a.encrypted = true
		if passphrase == "" {
			return nil, fault.Invalidf("give the file that holds its passphrase with --passphrase-file", "the backup is encrypted and needs its passphrase")
		}
		if err := checkWorkFactor(br, maxLogN); err != nil {
			return nil, err
		}
		dec, err := decrypt(br, passphrase, maxLogN)
		if err != nil {
			return nil, err
		}
		plain = dec
	} else if head, _ := br.Peek(2); !bytes.Equal(head, []byte{0x1f, 0x8b}) {
		return nil, damaged("it is neither a gzip archive nor age-encrypted")
	}
	// gzip reads through a ByteReader without reading ahead, so that what
	// follows its stream is still there to be refused.
	pr, ok := plain.(*bufio.Reader)
	if !ok {
		pr = bufio.NewReader(plain)
	}
	gz, err := gzip.NewReader(pr)
	if err != nil {
		return nil, damaged("%v", err)
	}
	// A second gzip member would be data that no manifest describes.
	gz.Multistream(false)
	tr := tar.NewReader(gz)
	if a.manifest, err = readManifest(tr); err != nil {
		return nil, err
	}
	if ms, ok := out.(manifestSink); ok {
		ms.sawManifest(a.manifest)
	}
	if err := readEntries(ctx, tr, a, out); err != nil {
		return nil, err
	}
	// The rest of the stream carries gzip's CRC and length and age's last
	// authenticated chunk: a truncated or altered end shows only here.
	// Nothing may follow the tar end-of-archive blocks, the gzip stream or
	// the age stream (age itself refuses data after its last chunk).
	switch n, err := io.ReadFull(gz, make([]byte, 1)); {
	case n > 0:
		return nil, damaged("it holds data after the end of its tar archive")
	case err != io.EOF:
		return nil, damaged("%v", err)
	}
	switch _, err := pr.ReadByte(); {
	case err == nil:
		return nil, damaged("it holds data after the end of its gzip stream")
	case err != io.EOF:
		return nil, damaged("%v", err)
	}
	return a, nil
}

// ScryptWorkFactor is the scrypt work factor (log2 N) of the archives
// backup writes, and the most a restore accepts: the header of an
// encrypted archive chooses the cost of decrypting it, and at 22 that is
// 4 GiB of memory and a minute of CPU before the passphrase is even
// checked. Lower factors (other age tools) are accepted.
const ScryptWorkFactor = 18

// maxAgeHeader is how much of an age header checkWorkFactor looks at; a
// p2ptls header (one scrypt stanza) takes about 200 bytes.
const maxAgeHeader = 4096

// checkWorkFactor refuses an age header whose scrypt stanza asks for more
// than ScryptWorkFactor, before any scrypt work, by peeking at the header's
// text lines ("-> scrypt SALT LOGN").
func checkWorkFactor(br *bufio.Reader, maxLogN int) error {
	head, _ := br.Peek(maxAgeHeader)
	if i := bytes.Index(head, []byte("\n--- ")); i >= 0 {
		head = head[:i]
	}
	for _, line := range strings.Split(string(head), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "->" || f[1] != "scrypt" {
			continue
		}
		if n, err := strconv.Atoi(f[3]); err == nil && n > maxLogN {
			return fault.Invalidf("if you trust it, decrypt it with 'age -d' (which pays that cost) and restore the decrypted archive",
				"the encrypted backup asks for an scrypt work factor of %d; a restore accepts at most %d, which is what 'p2ptls backup' writes", n, maxLogN)
		}
	}
	return nil
}

// decrypt opens the age layer; a wrong passphrase gets its own sentence.
func decrypt(r io.Reader, passphrase string, maxLogN int) (io.Reader, error) {
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, fault.AsInvalid(err, "give a passphrase file that is not empty")
	}
	// checkWorkFactor says it in our words; this is the backstop for a
	// header it could not see whole.
	id.SetMaxWorkFactor(maxLogN)
	dec, err := age.Decrypt(r, id)
	var nomatch *age.NoIdentityMatchError
	switch {
	case err == nil:
		return dec, nil
	case errors.As(err, &nomatch) && !strings.Contains(strings.Join(nomatch.StanzaTypes, " "), "scrypt"):
		return nil, fault.Invalidf("decrypt it with its key ('age -d'), then restore the result", "the backup is encrypted to a key, not with a passphrase")
	case errors.Is(err, age.ErrIncorrectIdentity):
		return nil, fault.Invalidf("check the passphrase file: it must hold the passphrase the backup was made with", "wrong passphrase for the encrypted backup")
	}
	return nil, damaged("%v", err)
}

// next returns the next tar header. With GODEBUG=tarinsecurepath=0 the
// reader flags unsafe names itself; checkPath says the same in our words.
func next(tr *tar.Reader) (*tar.Header, error) {
	hdr, err := tr.Next()
	if errors.Is(err, tar.ErrInsecurePath) {
		err = nil
	}
	return hdr, err
}

func readManifest(tr *tar.Reader) (*Manifest, error) {
	hdr, err := next(tr)
	switch {
	case err == io.EOF:
		return nil, damaged("the archive is empty")
	case err != nil:
		return nil, damaged("%v", err)
	case hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg:
		return nil, damaged("its first entry is %q, not the manifest %s", hdr.Name, ManifestName)
	case hdr.Size > maxManifestLen:
		return nil, damaged("its manifest is %d bytes, more than the %d a restore accepts", hdr.Size, maxManifestLen)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, damaged("%v", err)
	}
	// Strictly: a key this build does not know is a manifest it cannot
	// vouch for, and nothing may follow the one JSON object.
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, damaged("its manifest does not parse: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, damaged("its manifest holds more than one JSON object")
	}
	if err := m.validate(); err != nil {
		return nil, damaged("%v", err)
	}
	return &m, nil
}

// readEntries checks every state entry against the manifest while handing
// it to out.
func readEntries(ctx context.Context, tr *tar.Reader, a *archive, out sink) error {
	m := a.manifest
	dirs := make(map[string]Dir, len(m.Dirs))
	for _, d := range m.Dirs {
		dirs[d.Path] = d
	}
	files := make(map[string]File, len(m.Files))
	for _, f := range m.Files {
		files[f.Path] = f
	}
	done := make(map[string]bool, len(dirs)+len(files))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := next(tr)
		if err == io.EOF {
			break
		}
		if err != nil {
			return damaged("%v", err)
		}
		rel, err := entryPath(hdr)
		if err != nil {
			return err
		}
		if done[rel] {
			return damaged("it holds %s twice", rel)
		}
		if parent := path.Dir(rel); parent != "." && !done[parent] {
			return damaged("it holds %s before its directory", rel)
		}
		if d, ok := dirs[rel]; ok && hdr.Typeflag == tar.TypeDir {
			if err := sameMode(hdr, rel, d.Mode); err != nil {
				return err
			}
			mode, _ := parseMode(d.Mode) // validated with the manifest
			if err := out.mkdir(rel, mode); err != nil {
				return err
			}
		} else if f, ok := files[rel]; ok && hdr.Typeflag == tar.TypeReg {
			if err := sameMode(hdr, rel, f.Mode); err != nil {
				return err
			}
			if hdr.Size != f.Size {
				return damaged("%s is %d bytes, its manifest says %d", rel, hdr.Size, f.Size)
			}
			if err := copyFile(tr, rel, f, a, out); err != nil {
				return err
			}
		} else {
			return damaged("it holds %s, which its manifest does not list as such", rel)
		}
		done[rel] = true
	}
	for _, d := range m.Dirs {
		if !done[d.Path] {
			return damaged("it lacks the directory %s that its manifest lists (is it truncated?)", d.Path)
		}
	}
	for _, f := range m.Files {
		if !done[f.Path] {
			return damaged("it lacks the file %s that its manifest lists (is it truncated?)", f.Path)
		}
	}
	return nil
}

// entryPath returns the state path of a tar entry, refusing unsafe names
// and anything but files and directories.
func entryPath(hdr *tar.Header) (string, error) {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeDir {
		name = strings.TrimSuffix(name, "/")
	}
	if err := checkPath(name); err != nil {
		return "", fault.Invalidf(hintDamaged, "the backup holds %v; a p2ptls backup never does", err)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeSymlink:
		return "", fault.Invalidf(hintDamaged, "the backup holds the symbolic link %s -> %s; a p2ptls backup never holds links", hdr.Name, hdr.Linkname)
	case tar.TypeLink:
		return "", fault.Invalidf(hintDamaged, "the backup holds the hard link %s -> %s; a p2ptls backup never holds links", hdr.Name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return "", fault.Invalidf(hintDamaged, "the backup holds the device or special file %s; a p2ptls backup never does", hdr.Name)
	default:
		return "", damaged("it holds %s of unsupported tar type %q", hdr.Name, hdr.Typeflag)
	}
	rel, ok := strings.CutPrefix(name, statePrefix)
	if !ok {
		return "", damaged("it holds %s, outside %s", hdr.Name, statePrefix)
	}
	return rel, nil
}

func sameMode(hdr *tar.Header, rel, want string) error {
	if got := fmt.Sprintf("%04o", hdr.Mode); got != want {
		return damaged("%s has mode %s, its manifest says %s", rel, got, want)
	}
	return nil
}

// copyFile hands one file's content to out, checking its SHA-256; the
// files in keep are also kept in memory.
func copyFile(r io.Reader, rel string, f File, a *archive, out sink) error {
	archived, _ := parseMode(f.Mode)
	mode := restoredMode(rel, archived)
	if archived&0o077&^mode != 0 {
		a.tightened = append(a.tightened, fmt.Sprintf("%s (%s)", rel, f.Mode))
	}
	w, err := out.create(rel, mode)
	if err != nil {
		return err
	}
	h := sha256.New()
	dst := io.MultiWriter(w, h)
	var kept *bytes.Buffer
	if keep[rel] || state.IsRecordFile(rel) {
		kept = &bytes.Buffer{}
		dst = io.MultiWriter(dst, kept)
	}
	n, err := io.Copy(dst, r)
	if cerr := w.Close(); err == nil && cerr != nil {
		return cerr
	}
	var we *writeError
	switch {
	case errors.As(err, &we):
		return we.err
	case err != nil:
		return damaged("%s: %v", rel, err)
	case n != f.Size:
		return damaged("%s is cut short", rel)
	case hex.EncodeToString(h.Sum(nil)) != f.SHA256:
		return damaged("%s does not match its SHA-256 in the manifest", rel)
	}
	if kept != nil {
		a.kept[rel] = kept.Bytes()
	}
	return nil
}

// writeError marks a failure to write the extracted state (a full disk),
// which is not the archive's fault.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
