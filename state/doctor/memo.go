package doctor

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// pairMemoKind is doctor's memo (state.MemoDir/doctor): what loading each
// mapping's certificate and key found (mappings.coverage's cost at 100k
// mappings: two x509 parses, a PKCS#8 parse and a key match each), kept
// by the identities of BOTH files, so that a key replaced alone is checked
// again. A stored mapping's outcome is part of its directory's entry (see
// mappingDirVersion); a file mapping's entry is named by its
// certificate's path, the key's identity in the value. The memo also
// keeps the directory listings of the walk (see scanTree).
const pairMemoKind = "doctor"

// pairMemoVersion is the first byte of every value; raise it when what a
// value holds changes meaning, and when mappings.Load or pki come to
// accept or refuse other pairs (key strength, parsing): an outcome is the
// verdict of the code that derived it.
const pairMemoVersion = 2

// pairOutcome is what checkCoverage needs of one mapping's loaded pair.
type pairOutcome struct {
	// MappingID, Source and Key are what the outcome was derived under: a
	// value is used only for the same mapping (two file mappings may
	// share files), read the same way.
	MappingID string
	Source    string
	Key       string // the key's name in the state, or its path
	// CertPath is where Err names the certificate ("" without an error):
	// an error is used only while it is still there (a state directory
	// moved keeps its files' identities).
	CertPath string
	KeyID    state.FileID // the key file the outcome was derived from
	// CertID is the certificate file's, for the entry of a mapping
	// directory (see mappingDirVersion), read without the memo's check
	// of the identity it is kept by.
	CertID state.FileID
	// Err is mappings.Load's error, "" when the pair loaded.
	Err string
	// DNSNames (coverNames: IP SANs too) and Covers are the leaf's: what
	// it covers, and how the finding names it.
	DNSNames []string
	Covers   string
}

// pairOutcomeFields is how many fields encodePairOutcome writes; a test
// fails when pairOutcome has another number.
const pairOutcomeFields = 9

func encodePairOutcome(o *pairOutcome) []byte {
	b := make([]byte, 0, 160)
	b = append(b, pairMemoVersion)
	for _, s := range []string{o.MappingID, o.Source, o.Key, o.CertPath} {
		b = state.AppendMemoString(b, s)
	}
	b = state.AppendFileID(b, o.KeyID)
	b = state.AppendFileID(b, o.CertID)
	b = state.AppendMemoString(b, o.Err)
	b = binary.AppendUvarint(b, uint64(len(o.DNSNames)))
	for _, n := range o.DNSNames {
		b = state.AppendMemoString(b, n)
	}
	return state.AppendMemoString(b, o.Covers)
}

func decodePairOutcome(b []byte) (pairOutcome, error) {
	var o pairOutcome
	if len(b) == 0 || b[0] != pairMemoVersion {
		return o, errors.New("not a value of this version")
	}
	// The strings point into b, a memo's value, which is never written
	// to: 100k outcomes copied would be 600k allocations.
	r := state.NewMemoReader(b[1:])
	o.MappingID, o.Source, o.Key, o.CertPath = r.View(), r.View(), r.View(), r.View()
	o.KeyID = r.FileID()
	o.CertID = r.FileID()
	o.Err = r.View()
	if n := r.Count(); n > 0 {
		o.DNSNames = make([]string, n)
		for i := range o.DNSNames {
			o.DNSNames[i] = r.View()
		}
	}
	o.Covers = r.View()
	if err := r.Done(); err != nil {
		return pairOutcome{}, err
	}
	return o, nil
}

// pairFiles are a mapping's certificate and key: their names in the state,
// or their paths for source file (the memo's names).
func pairFiles(m state.Mapping) (cert, key string) {
	if m.Source == state.SourceFile {
		return m.CertFile, m.KeyFile
	}
	dir := mappings.MappingDir(m.ID) + "/"
	return dir + mappings.CertFileName, dir + mappings.KeyFileName
}

// certWhere is how Load's errors name m's certificate cert.
func (e *env) certWhere(m state.Mapping, cert string) string {
	if m.Source == state.SourceFile {
		return cert
	}
	return state.Locate(e.s, cert)
}

// pairIdentity is the identity of a mapping's file for the memo: only a
// regular file's (a symlink's own identity does not change with what it
// points to), from what the walk of the state directory saw in the
// mapping's directory (seen, when it ran), else from an lstat.
func (e *env) pairIdentity(seen *mappingFiles, m state.Mapping, name string) (state.FileID, bool) {
	if m.Source != state.SourceFile {
		if id, ok := seen.id(path.Base(name)); ok {
			return id, true
		}
	}
	p := name
	if m.Source != state.SourceFile {
		p = e.where(name)
	}
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return state.FileID{}, false
	}
	return state.FileIDOf(fi)
}

// loadPair is mappings.Load of m's pair as checkCoverage needs it: through
// the memo when both files are the ones an outcome was derived from.
// stored says its outcome went into the memo. hint is m's position in
// the config (see treeScan.filesOf).
func (e *env) loadPair(ctx context.Context, memo *state.Memo, scan *treeScan, m state.Mapping, hint int) (names []string, covers string, stored bool, err error) {
	cert, key := pairFiles(m)
	var certID, keyID state.FileID
	usable := e.local != nil
	var seen *mappingFiles // what the walk saw in m's directory
	if usable {
		// Both identities are taken before Load reads the files: a change
		// after this changes them, so the value is never trusted for it.
		if m.Source != state.SourceFile {
			seen = scan.filesOf(m.ID, hint)
		}
		var ok1, ok2 bool
		certID, ok1 = e.pairIdentity(seen, m, cert)
		keyID, ok2 = e.pairIdentity(seen, m, key)
		usable = ok1 && ok2
	}
	if usable {
		// A mapping directory the walk saw has its outcome in the
		// directory's entry; a file mapping's is by its certificate.
		var o pairOutcome
		var found bool
		if seen != nil {
			o, found = seen.storedOutcome()
		} else if v, ok := memo.Get(cert, certID); ok {
			var derr error
			o, derr = decodePairOutcome(v)
			found = derr == nil && o.KeyID == keyID
		}
		if found && o.MappingID == m.ID && o.Source == m.Source && o.Key == key {
			if o.Err == "" {
				return o.DNSNames, o.Covers, false, nil
			}
			if o.CertPath == e.certWhere(m, cert) {
				return nil, "", false, errors.New(o.Err)
			}
		}
	}
	c, err := loadMapping(ctx, e.s, m)
	o := pairOutcome{MappingID: m.ID, Source: m.Source, Key: key, KeyID: keyID, CertID: certID}
	if err != nil {
		o.Err, o.CertPath = err.Error(), e.certWhere(m, cert)
	} else {
		o.DNSNames, o.Covers = coverNames(c.Chain[0]), coverList(c.Chain[0])
	}
	if now := time.Now(); usable && memoizable(ctx, err) && !keyID.Racy(now) && !certID.Racy(now) {
		if seen != nil {
			putMappingDir(memo, mappings.MappingDir(m.ID), seen, encodePairOutcome(&o))
		} else {
			memo.Put(cert, certID, encodePairOutcome(&o), false)
		}
		stored = true
	}
	return o.DNSNames, o.Covers, stored, err
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
