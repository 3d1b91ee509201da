package doctor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// pairMemoKind is doctor's memo (state.MemoDir/doctor): what loading each
// mapping's certificate and key found (mappings.coverage's cost at 100k
// mappings: two x509 parses, a PKCS#8 parse and a key match each), kept
// by the identities of BOTH files, so that a key replaced alone is checked
// again. The entry is named by the certificate; the key's identity is in
// the value.
const pairMemoKind = "doctor"

// pairMemoVersion is the first byte of every value; raise it when what a
// value holds changes meaning.
const pairMemoVersion = 1

// pairOutcome is what checkCoverage needs of one mapping's loaded pair.
type pairOutcome struct {
	// MappingID, Source, CertPath and Key are what the outcome was derived
	// under: a value is used only for the same mapping (two file mappings
	// may share files), read the same way, with the error naming the
	// certificate where it is now (a state directory moved keeps its
	// files' identities).
	MappingID string
	Source    string
	CertPath  string
	Key       string       // the key's name in the state, or its path
	KeyID     state.FileID // the key file the outcome was derived from
	// Err is mappings.Load's error, "" when the pair loaded.
	Err string
	// DNSNames and Covers are the leaf's: what it covers, and how the
	// finding names it.
	DNSNames []string
	Covers   string
}

// pairOutcomeFields is how many fields encodePairOutcome writes; a test
// fails when pairOutcome has another number.
const pairOutcomeFields = 8

func encodePairOutcome(o *pairOutcome) []byte {
	b := make([]byte, 0, 160)
	b = append(b, pairMemoVersion)
	for _, s := range []string{o.MappingID, o.Source, o.CertPath, o.Key} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, o.KeyID.Dev)
	b = binary.AppendUvarint(b, o.KeyID.Ino)
	b = binary.AppendVarint(b, o.KeyID.Size)
	b = binary.AppendVarint(b, o.KeyID.Mtime)
	b = binary.AppendVarint(b, o.KeyID.Ctime)
	b = appendString(b, o.Err)
	b = binary.AppendUvarint(b, uint64(len(o.DNSNames)))
	for _, n := range o.DNSNames {
		b = appendString(b, n)
	}
	return appendString(b, o.Covers)
}

func decodePairOutcome(b []byte) (pairOutcome, error) {
	var o pairOutcome
	if len(b) == 0 || b[0] != pairMemoVersion {
		return o, errors.New("not a value of this version")
	}
	r := &reader{b: b[1:]}
	o.MappingID, o.Source, o.CertPath, o.Key = r.string(), r.string(), r.string(), r.string()
	o.KeyID = state.FileID{Dev: r.uvarint(), Ino: r.uvarint(), Size: r.varint(), Mtime: r.varint(), Ctime: r.varint()}
	o.Err = r.string()
	n := r.uvarint()
	if n > uint64(len(r.b)) { // every name takes at least a byte
		return pairOutcome{}, errors.New("name count out of range")
	}
	if n > 0 {
		o.DNSNames = make([]string, n)
		for i := range o.DNSNames {
			o.DNSNames[i] = r.string()
		}
	}
	o.Covers = r.string()
	if r.err != nil {
		return pairOutcome{}, r.err
	}
	if len(r.b) != 0 {
		return pairOutcome{}, fmt.Errorf("%d bytes after the value", len(r.b))
	}
	return o, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader decodes with bounds checks; the first problem sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("value truncated or damaged")
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// pairFiles are a mapping's certificate and key: their names in the state
// (or paths, for source file), and where the user finds them.
type pairFiles struct {
	cert, key         string // memo names
	certPath, keyPath string // absolute
	where             string // how Load's errors name the certificate
}

func (e *env) pairFiles(m state.Mapping) pairFiles {
	if m.Source == state.SourceFile {
		return pairFiles{cert: m.CertFile, key: m.KeyFile, certPath: m.CertFile, keyPath: m.KeyFile, where: m.CertFile}
	}
	cert := mappings.MappingDir(m.ID) + "/" + mappings.CertFileName
	key := mappings.MappingDir(m.ID) + "/" + mappings.KeyFileName
	return pairFiles{cert: cert, key: key, certPath: e.where(cert), keyPath: e.where(key), where: state.Locate(e.s, cert)}
}

// pairIdentity is the identity of a mapping's file (name, at path) for
// the memo: only a regular file's (a symlink's own identity does not
// change with what it points to), from what the walk of the state
// directory saw, else from an lstat.
func (e *env) pairIdentity(name, p string) (state.FileID, bool) {
	fi, ok := e.walked[name]
	if !ok {
		var err error
		if fi, err = os.Lstat(p); err != nil {
			return state.FileID{}, false
		}
	}
	if !fi.Mode().IsRegular() {
		return state.FileID{}, false
	}
	return state.FileIDOf(fi)
}

// loadPair is mappings.Load of m's pair as checkCoverage needs it: through
// the memo when both files are the ones an outcome was derived from.
func (e *env) loadPair(ctx context.Context, memo *state.Memo, m state.Mapping) (names []string, covers string, err error) {
	files := e.pairFiles(m)
	var certID, keyID state.FileID
	usable := e.local != nil
	if usable {
		// Both identities are taken before Load reads the files: a change
		// after this changes them, so the value is never trusted for it.
		var ok1, ok2 bool
		certID, ok1 = e.pairIdentity(files.cert, files.certPath)
		keyID, ok2 = e.pairIdentity(files.key, files.keyPath)
		usable = ok1 && ok2
	}
	if usable {
		if v, ok := memo.Get(files.cert, certID); ok {
			if o, derr := decodePairOutcome(v); derr == nil && o.MappingID == m.ID && o.Source == m.Source &&
				o.CertPath == files.where && o.Key == files.key && o.KeyID == keyID {
				if o.Err != "" {
					return nil, "", errors.New(o.Err)
				}
				return o.DNSNames, o.Covers, nil
			}
		}
	}
	c, err := loadMapping(ctx, e.s, m)
	o := pairOutcome{MappingID: m.ID, Source: m.Source, CertPath: files.where, Key: files.key, KeyID: keyID}
	if err != nil {
		o.Err = err.Error()
	} else {
		o.DNSNames, o.Covers = c.Chain[0].DNSNames, coverList(c.Chain[0])
	}
	if usable && memoizable(ctx, err) && !keyID.Racy(time.Now()) {
		memo.Put(files.cert, certID, encodePairOutcome(&o), false)
	}
	return o.DNSNames, o.Covers, err
}

// loadMapping is mappings.Load; tests count its calls to tell a warm memo.
var loadMapping = mappings.Load

// memoizable reports whether Load's outcome is the files' content's: a
// pair that loaded, or one that does not parse or match. A file that could
// not be read (missing, no permission, an I/O error) or a cancelled read
// says nothing about the content, and is looked at again next time.
func memoizable(ctx context.Context, err error) bool {
	if err == nil {
		return true
	}
	var pe *fs.PathError
	return ctx.Err() == nil && !errors.Is(err, fs.ErrNotExist) && !errors.As(err, &pe) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// retainPairs keeps, at the memo's next save, only the entries of the
// mappings in ms.
func (e *env) retainPairs(memo *state.Memo, ms []state.Mapping) {
	keep := make(map[string]bool, len(ms))
	for _, m := range ms {
		keep[e.pairFiles(m).cert] = true
	}
	memo.Retain(func(name string) bool { return keep[name] })
}
