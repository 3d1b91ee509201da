package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/parallel"
)

// recordsMemo is the memo of the mapping records: each record decoded, by
// the record's file identity, and the listing of mappings/ (see
// memoListing) as of a revision.
//
// Two ways to trust it:
//   - a full load (every reader) lists mappings/, stats each record and
//     reads only those whose identity changed: it sees every edit, a hand
//     edit written in place included;
//   - a change under the lock (Update) trusts the whole memo without
//     listing the directory when the revision (p2ptls.rev) and the
//     identity of mappings/ are the ones the memo was saved with: every
//     p2ptls change moves the first, and a record created, removed or
//     replaced by a rename (mv, cp to a new name, editors that save by
//     renaming, sed -i) moves the second. A record rewritten in place (cat
//     >, nano) is not seen by it; a change never overwrites such a record
//     unseen, since each record a change writes or deletes is checked
//     against its file first (checkCommitted).
const recordsMemo = "records"

// loadMappings reads every record of d, through the memo; quick is the
// lock holder's way (see recordsMemo).
//
// sums, when not nil, says that the records came from the memo unchecked:
// their digests; names are the listener and credential names they
// validated with.
//
// gen is the memo's generation the load saw (see Memo.gen), and listing
// what the records read vouch for (nil: the memo's own, untouched), both
// for memoLoaded: the listing is set once, with the names the config
// validated with, so that a load of an unchanged state leaves the memo
// as it was and does not rewrite it.
func (d *Dir) loadMappings(ctx context.Context, quick bool) (_ []Mapping, sums []uint64, names string, gen uint64, listing *memoListing, err error) {
	m := d.memo(recordsMemo)
	gen = m.generation()
	rev, _, err := readRevFile(d.root)
	if err != nil {
		return nil, nil, "", gen, nil, fmt.Errorf("read %s: %w", RevisionFile, err)
	}
	dirPath := filepath.Join(d.root, RecordsDir)
	dirID, dirOK := statID(dirPath)
	if quick && dirOK {
		if ms, sums, names, ok := m.trustedMappings(rev, dirID); ok {
			return ms, sums, names, gen, nil, nil
		}
	}
	// Each record is stat'ed relative to the state directory, by its
	// name (see StatDir), which is let go once read.
	at := OpenStatDir(d.root)
	out, complete, err := readRecords(ctx, d, func(id string) (Mapping, bool, error) { return d.loadRecordMemo(ctx, m, gen, at, id) })
	at.Close()
	if err != nil {
		return nil, nil, "", gen, &memoListing{}, err
	}
	listed := make(map[string]bool, len(out))
	for i := range out {
		listed[RecordName(out[i].ID)] = true
	}
	m.retainAt(gen, func(name string) bool { return listed[name] })
	// The listing is taken as of the revision and identity read before
	// the directory was: a change since moves one of them. Without the
	// lock, a directory changed too recently to tell (see racyWindow) is
	// not vouched for.
	l := &memoListing{}
	if dirOK && rev.Epoch != "" && (quick || !dirID.racy(time.Now())) && complete {
		l = &memoListing{Valid: true, Epoch: rev.Epoch, Seq: rev.Seq, Dir: dirID}
	}
	return out, nil, "", gen, l, nil
}

// memoLoaded sets the records memo's listing after a load (listing from
// loadMappings) and saves it; after one whose config did not validate, it
// vouches for no listing, so that the next change
// reads every record and refuses too.
func (d *Dir) memoLoaded(gen uint64, listing *memoListing, valid bool, names string) {
	m := d.memo(recordsMemo)
	m.mu.Lock()
	l := m.listing
	m.mu.Unlock()
	if listing != nil {
		l = *listing
	}
	l.Names = names
	if !valid {
		l = memoListing{}
	}
	m.setListingAt(gen, l)
	m.Save()
}

// trustedMappings decodes every record in the memo when its listing is the
// one of revision rev and directory identity dir.
//
// sums are the mappings' digests, taken from the memo's bytes, which are
// what digest hashes.
func (m *Memo) trustedMappings(rev revFile, dir FileID) (_ []Mapping, sums []uint64, names string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.listing
	if !l.Valid || l.Epoch == "" || l.Epoch != rev.Epoch || l.Seq != rev.Seq || l.Dir != dir || len(m.puts) > 0 || m.drop != nil {
		return nil, nil, "", false
	}
	// Room for what the change adds, so that appending does not copy 100k.
	ms := make([]Mapping, len(m.entries), len(m.entries)+appendRoom)
	sums = make([]uint64, len(m.entries))
	// On every core, in blocks: the decoding is most of what a change of
	// one mapping costs at 100k, and a command waits for it.
	n := len(m.entries)
	var bad atomic.Bool
	parallel.Each((n+trustedBlock-1)/trustedBlock, func(b int) bool {
		var hosts hostChunks
		for i := b * trustedBlock; i < min(n, (b+1)*trustedBlock); i++ {
			e := &m.entries[i]
			mp, err := decodeMappingMemoWith(e.val, &hosts)
			if err != nil || !isRecordNameOf(e.name, mp.ID) {
				bad.Store(true)
				return false
			}
			ms[i], sums[i] = mp, maphash.Bytes(digestSeed, e.val)
		}
		return true
	})
	if bad.Load() {
		return nil, nil, "", false
	}
	return ms, sums, l.Names, true
}

// trustedBlock is how many memo entries one worker decodes at a time.
const trustedBlock = 8192

// isRecordNameOf reports whether name is RecordName(id), without making
// that string: a trusted load asks it of 100k entries.
func isRecordNameOf(name, id string) bool {
	rest, ok := strings.CutPrefix(name, RecordsDir+"/")
	return ok && len(rest) == len(id)+len(recordExt) && rest[:len(id)] == id && rest[len(id):] == recordExt
}

func (m *Memo) setListing(l memoListing) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listing != l {
		m.listing, m.dirty = l, true
	}
}

// generation is the number of changes this process committed through the
// memo (memoCommitted). A load that began before one ends up knowing less
// than the memo: what it found is dropped (putAt, retainAt, setListingAt),
// as it may describe records the change has replaced.
func (m *Memo) generation() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}

func (m *Memo) setListingAt(gen uint64, l memoListing) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen == gen && m.listing != l {
		m.listing, m.dirty = l, true
	}
}

func (m *Memo) putAt(gen uint64, name string, id FileID, val []byte) {
	m.mu.Lock()
	stale := m.gen != gen
	m.mu.Unlock()
	if !stale {
		m.Put(name, id, val, false)
	}
}

func (m *Memo) retainAt(gen uint64, keep func(name string) bool) {
	m.mu.Lock()
	stale := m.gen != gen
	m.mu.Unlock()
	if !stale {
		m.Retain(keep)
	}
}

// loadRecordMemo is loadRecord through the memo: a record whose file is
// the one memoized is not read.
func (d *Dir) loadRecordMemo(ctx context.Context, m *Memo, gen uint64, at *StatDir, id string) (Mapping, bool, error) {
	if err := ctx.Err(); err != nil {
		return Mapping{}, false, err
	}
	name := RecordName(id)
	if fid, ok := at.Stat(name); ok {
		if v, ok := m.Get(name, fid); ok {
			if mp, err := decodeMappingMemo(v); err == nil && mp.ID == id {
				return mp, true, nil
			}
		}
	}
	p := filepath.Join(d.root, RecordsDir, id+recordExt)
	b, fid, err := readWithID(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Mapping{}, false, nil
	}
	if err != nil {
		return Mapping{}, false, fmt.Errorf("read %s: %w", name, err)
	}
	mp, err := ParseMapping(id, b)
	if err != nil {
		return Mapping{}, false, &ConfigFileError{Path: Locate(d, name), Err: err}
	}
	m.putAt(gen, name, fid, encodeMappingMemo(&mp))
	return mp, true, nil
}

// statID is the identity of the file at p, symbolic links followed as a
// read follows them.
func statID(p string) (FileID, bool) {
	fi, err := os.Stat(p)
	if err != nil {
		return FileID{}, false
	}
	return fileIDOf(fi)
}

// readWithID reads the file at p and the identity of the file it read.
func readWithID(p string) ([]byte, FileID, error) {
	// Not blocking, and only a regular file: a FIFO or device in place
	// of a record is an error, not a command that hangs or reads forever.
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, FileID{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, FileID{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, FileID{}, fmt.Errorf("%s is not a regular file (%s); replace it with the file it should be", p, fi.Mode().Type())
	}
	id, _ := fileIDOf(fi)
	b := make([]byte, 0, fi.Size()+1)
	for {
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, id, nil
		}
		if err != nil {
			return nil, FileID{}, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// recordsCommit is what one Update wrote of mappings/: the memo learns
// it once the change has its revision.
type recordsCommit struct {
	listed bool   // the memo held the whole listing before the change
	names  string // Config.namesKey of the config committed
}

// memoCommitted tells the records memo what change c, just applied under
// the lock, wrote and deleted. The memo's listing moves to the change's
// revision when bumpOnChange writes it.
func (d *Dir) memoCommitted(c Change, names string) {
	m := d.memo(recordsMemo)
	m.mu.Lock()
	listed := m.listing.Valid
	m.gen++
	m.mu.Unlock()
	for _, name := range c.Deletes {
		if IsRecordName(name) {
			m.Forget(name)
		}
	}
	for _, w := range c.Writes {
		if !IsRecordName(w.Name) {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(w.Name, RecordsDir+"/"), recordExt)
		fid, ok := statID(filepath.Join(d.root, filepath.FromSlash(w.Name)))
		mp, err := ParseMapping(id, w.Data)
		if !ok || err != nil {
			m.Forget(w.Name)
			listed = false
			continue
		}
		m.Put(w.Name, fid, encodeMappingMemo(&mp), true)
	}
	d.memoNext.Store(&recordsCommit{listed: listed, names: names})
}

// memoRevised saves the records memo with the revision a change just got,
// when that change was committed through memoCommitted.
func (d *Dir) memoRevised(epoch string, seq uint64) {
	c := d.memoNext.Swap(nil)
	if c == nil {
		return
	}
	m := d.memo(recordsMemo)
	l := memoListing{}
	if dirID, ok := statID(filepath.Join(d.root, RecordsDir)); ok && c.listed {
		l = memoListing{Valid: true, Epoch: epoch, Seq: seq, Dir: dirID, Names: c.names}
	}
	m.setListing(l)
	m.Save()
}

// IsRecordName reports whether name is a record's: mappings/<id>.toml.
func IsRecordName(name string) bool {
	rest, ok := strings.CutPrefix(name, RecordsDir+"/")
	if !ok || strings.Contains(rest, "/") {
		return false
	}
	_, ok, err := recordID(rest)
	return ok && err == nil
}

// appendRoom is the spare capacity of a loaded list (mappings, memo
// entries) for a change's additions.
const appendRoom = 64

// mappingMemoFields is how many fields encodeMappingMemo writes: a field
// added to Mapping must be added there too (TestMappingMemoHasEveryField).
const mappingMemoFields = 12

// encodeMappingMemo is the memo's form of a mapping: every field, strings
// as length and bytes, in declaration order.
func encodeMappingMemo(m *Mapping) []byte { return appendMappingMemo(make([]byte, 0, 128), m) }

// appendMappingMemo appends the memo's form of m to b.
func appendMappingMemo(b []byte, m *Mapping) []byte {
	b = AppendMemoString(b, m.ID)
	b = AppendMemoString(b, m.Listener)
	b = binary.AppendUvarint(b, uint64(len(m.Hosts)))
	for _, h := range m.Hosts {
		b = AppendMemoString(b, h)
	}
	for _, s := range []string{m.Source, m.Upstream, m.CertFile, m.KeyFile} {
		b = AppendMemoString(b, s)
	}
	b = binary.AppendVarint(b, int64(m.Days))
	for _, s := range []string{m.Challenge, m.DNSCredential, m.KeyType, m.Profile} {
		b = AppendMemoString(b, s)
	}
	return b
}

// decodeMappingMemo reads what encodeMappingMemo wrote. The strings point
// into b, a memo's buffer, which is never written to.
func decodeMappingMemo(b []byte) (Mapping, error) { return decodeMappingMemoWith(b, nil) }

// hostChunks hands out the Hosts of many decoded mappings from a few large
// slices rather than one allocation each; each one's capacity is its
// length, so that an append to it copies rather than runs into the next.
type hostChunks struct{ buf []string }

func (c *hostChunks) take(n int) []string {
	if c == nil {
		return make([]string, n)
	}
	if n > cap(c.buf)-len(c.buf) {
		c.buf = make([]string, 0, max(n, 4096))
	}
	i := len(c.buf)
	c.buf = c.buf[:i+n]
	return c.buf[i : i+n : i+n]
}

// decodeMappingMemoWith is decodeMappingMemo, its hosts from chunks (nil:
// their own allocation).
func decodeMappingMemoWith(b []byte, chunks *hostChunks) (Mapping, error) {
	r := NewMemoReader(b)
	var m Mapping
	m.ID = r.View()
	m.Listener = r.View()
	if n := r.Count(); n > 0 {
		m.Hosts = chunks.take(n)
		for i := range m.Hosts {
			m.Hosts[i] = r.View()
		}
	}
	m.Source, m.Upstream, m.CertFile, m.KeyFile = r.View(), r.View(), r.View(), r.View()
	m.Days = int(r.Varint())
	m.Challenge, m.DNSCredential, m.KeyType, m.Profile = r.View(), r.View(), r.View(), r.View()
	if err := r.Done(); err != nil {
		return Mapping{}, err
	}
	return m, nil
}

// checkCommitted refuses change c, about to be made from records the memo
// vouched for unchecked, when a record it replaces or deletes, or the
// record of a mapping whose files it writes, no longer holds what the memo
// said (rewritten in place since): the change was decided on a stale
// mapping. The memo forgets its listing, so that the
// next command reads every record.
func (d *Dir) checkCommitted(c Change) error {
	m := d.memo(recordsMemo)
	changed := slices.Clone(c.Deletes)
	for _, w := range c.Writes {
		changed = append(changed, w.Name)
	}
	// The records behind the change: each one it writes or deletes, and
	// the record of each mapping whose files it writes (a certificate
	// issued for the hosts the memo said, when the record says others, is
	// as stale as a record overwritten).
	var names []string
	for _, name := range changed {
		if IsRecordName(name) {
			names = append(names, name)
		} else if rest, ok := strings.CutPrefix(name, MappingsDir+"/"); ok {
			id, _, _ := strings.Cut(rest, "/")
			if r := RecordName(id); IsRecordName(r) {
				names = append(names, r)
			}
		}
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		m.mu.Lock()
		e, known := m.lookup(name)
		m.mu.Unlock()
		p := filepath.Join(d.root, filepath.FromSlash(name))
		fid, exists := statID(p)
		if (!known && !exists) || (known && exists && fid == e.id) {
			continue
		}
		if known && exists {
			id := strings.TrimSuffix(strings.TrimPrefix(name, RecordsDir+"/"), recordExt)
			if b, _, err := readWithID(p); err == nil {
				if mp, err := ParseMapping(id, b); err == nil && bytes.Equal(encodeMappingMemo(&mp), e.val) {
					continue // touched, not changed
				}
			}
		}
		m.setListing(memoListing{})
		m.Save()
		return fault.Failf("run the command again: it reads every record then",
			"%s changed on disk since p2ptls last read it (edited in place?), so nothing was changed", Locate(d, name))
	}
	return nil
}
