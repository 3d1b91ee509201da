package doctor

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// A mapping directory (certs/public/<id>) has ONE entry in doctor's memo,
// under its listing's name, holding both what the walk needs (its
// entries, by the directory's identity) and what checkCoverage needs (the
// outcome of loading its pair, by the identities of cert.pem and key.pem):
// 100k mappings are 100k entries and lookups, not twice that. Each half
// carries the identities it was derived from and is used only while they
// are the files' (the entry is read with Memo.Trusted), and each is kept
// only when none of those files changed within the racy window when it
// was derived, as the memo's own rule for an entry would have it.
const mappingDirVersion = 2

// mappingDirEntry is the value: [version] listing outcome, each a
// length-prefixed part, empty when the entry holds none. listing is the
// directory's identity and its entries (sorted); outcome is
// encodePairOutcome's, CertID included.
func mappingDirEntry(listing, outcome []byte) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen32+len(listing)+len(outcome))
	b = append(b, mappingDirVersion)
	b = binary.AppendUvarint(b, uint64(len(listing)))
	b = append(b, listing...)
	b = binary.AppendUvarint(b, uint64(len(outcome)))
	return append(b, outcome...)
}

// splitMappingDir returns the parts of a mappingDirEntry (views into v).
func splitMappingDir(v []byte) (listing, outcome []byte, err error) {
	if len(v) == 0 || v[0] != mappingDirVersion {
		return nil, nil, errors.New("not a mapping directory's entry of this version")
	}
	r := state.NewMemoReader(v[1:])
	listing, outcome = r.Bytes(), r.Bytes()
	if err := r.Done(); err != nil {
		return nil, nil, err
	}
	return listing, outcome, nil
}

// encodeDirListing is a listing part: the identity of the directory the
// entries des (sorted) were read from, after that identity was taken.
func encodeDirListing(id state.FileID, des []dirent) []byte {
	b := make([]byte, 0, 24+len(des)*12)
	b = state.AppendFileID(b, id)
	b = binary.AppendUvarint(b, uint64(len(des)))
	for _, de := range des {
		b = state.AppendMemoString(b, de.name)
		b = append(b, byte(de.typ))
	}
	return b
}

// decodeDirListing reads a listing part; the names point into b.
func decodeDirListing(b []byte) (state.FileID, []dirent, error) {
	r := state.NewMemoReader(b)
	id := r.FileID()
	des := make([]dirent, r.Count())
	for i := range des {
		des[i].name = r.View() // into the memo's value, never written to
		des[i].typ = direntType(r.Byte())
	}
	if err := r.Done(); err != nil {
		return state.FileID{}, nil, err
	}
	return id, des, nil
}

// mappingDirListing returns the memoized entries of mapping directory e
// at rel when e is still the directory they were listed from, and keeps
// the entry's outcome part in f for checkCoverage.
func (w *treeWalk) mappingDirListing(rel string, e walkEntry, f *mappingFiles) ([]dirent, bool) {
	if w.memo == nil || !e.stat {
		return nil, false
	}
	v, ok := w.memo.Trusted(listingName(rel))
	if !ok {
		return nil, false
	}
	listing, outcome, err := splitMappingDir(v)
	if err != nil {
		return nil, false
	}
	f.outcome = outcome
	if len(listing) == 0 {
		return nil, false
	}
	id, des, err := decodeDirListing(listing)
	if err != nil || id != e.id {
		return nil, false
	}
	f.listing = listing
	return des, true
}

// rememberMappingDir keeps the entries of mapping directory f, just
// listed after its identity id was taken, for saveMemo (or checkCoverage)
// to put in the memo with the outcome; not when the directory changed too
// recently to tell a later change by its identity.
func rememberMappingDir(f *mappingFiles, id state.FileID, des []dirent) {
	if id.Racy(time.Now()) {
		return
	}
	f.listing, f.fresh = encodeDirListing(id, des), true
}

// storedOutcome is the outcome memoized for the pair f's walk saw, when
// it was derived from those very files.
func (f *mappingFiles) storedOutcome() (pairOutcome, bool) {
	if f == nil || len(f.outcome) == 0 {
		return pairOutcome{}, false
	}
	o, err := decodePairOutcome(f.outcome)
	if err != nil {
		return pairOutcome{}, false
	}
	cert, ok1 := f.id(storedFiles[0])
	key, ok2 := f.id(storedFiles[1])
	if !ok1 || !ok2 || o.CertID != cert || o.KeyID != key {
		return pairOutcome{}, false
	}
	return o, true
}

// putMappingDir puts mapping directory rel's entry: its listing as f
// has it, and outcome (nil for none).
func putMappingDir(memo *state.Memo, rel string, f *mappingFiles, outcome []byte) {
	var id state.FileID
	if len(f.listing) > 0 {
		id, _, _ = decodeDirListing(f.listing)
	}
	memo.Put(listingName(rel), id, mappingDirEntry(f.listing, outcome), false)
	f.put = true
}

// putMappingDirs puts the entries of the mapping directories whose
// listing was read again and not put since (by checkCoverage, with a new
// outcome), with the outcome they had when it is still the pair's.
func (t *treeScan) putMappingDirs(memo *state.Memo) {
	for k := range t.pubFiles {
		f := &t.pubFiles[k]
		if !f.fresh || f.put {
			continue
		}
		var outcome []byte
		if _, ok := f.storedOutcome(); ok {
			outcome = f.outcome
		}
		putMappingDir(memo, mappings.PublicDir+"/"+t.pubNames[k].name, f, outcome)
	}
}
