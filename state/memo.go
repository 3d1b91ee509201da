package state

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MemoDir holds memos: data derived from the state's files (a mapping
// decoded from its record, a certificate's summary), each kept with the
// identity of the file it came from, so that a command over 100k mappings
// reads and parses only what changed since. A memo is a cache: it is no
// part of the state (under run/, it is not backed up, restored or watched),
// any process may write it without the lock, and a memo that is missing,
// stale or damaged costs time, never correctness.
const MemoDir = RunDir + "/cache"

// memoLimit bounds the memo file read: 100k mappings take about 15 MiB.
const memoLimit = 1 << 30

// memoMagic starts every memo file; its last byte is the format version,
// raised whenever what a memo holds changes meaning.
const memoMagic = "p2ptls-memo\x03"

// racyWindow: a file changed this close to when its memo entry was saved
// may change again within the file system's timestamp granularity without
// its identity changing, so such an entry is re-checked by content (the
// "racy git" problem).
const racyWindow = time.Second

// FileID identifies one version of a file: a rename-replace changes the
// inode, a write in place the size or the times, and the inode change time
// cannot be set back by anyone.
type FileID struct {
	Dev, Ino     uint64
	Size         int64
	Mtime, Ctime int64 // nanoseconds
}

// fileIDOf is the identity of a file that stat or fstat described.
func fileIDOf(fi os.FileInfo) (FileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return FileID{}, false
	}
	return FileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino), Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Ctime: ctimeOf(st)}, true
}

// racy reports whether a file of this identity changed too close to saved
// for its entry to be trusted by identity alone.
func (id FileID) racy(saved time.Time) bool {
	limit := saved.Add(-racyWindow).UnixNano()
	return id.Mtime >= limit || id.Ctime >= limit
}

// memoEntry is what a memo holds for one file.
type memoEntry struct {
	name string
	id   FileID
	// racy: saved within racyWindow of the file's last change (or never
	// checked against it), so only Trusted takes it.
	racy bool
	val  []byte
	// raw is the entry as encoded in the memo file it was read from (or
	// last saved to), so that saving copies it rather than encoding it
	// again.
	raw []byte
	// tail is racy and id as encoded, when not decoded yet: a load of
	// 100k entries decodes only names and values, and a lookup the rest
	// (decodeTail).
	tail []byte
	// at is 1 + the offset of raw in the memo file's bytes (Memo.buf),
	// 0 for an entry not read from it: entries next to each other there
	// are checksummed and written as one span.
	at int
}

// decodeTail decodes e.tail into e.racy and e.id; false when it does not
// decode, an entry to ignore.
func (e *memoEntry) decodeTail() bool {
	if e.tail == nil {
		return true
	}
	r := NewMemoReader(e.tail)
	racy, id := r.Bool(), r.FileID()
	if r.Done() != nil {
		return false
	}
	e.racy, e.id, e.tail = racy, id, nil
	return true
}

// Memo is one memo file (MemoDir/<kind>), loaded once per Dir and kept in
// memory: safe for concurrent use. A Memo of a store that is not a
// directory holds nothing and saves nothing.
type Memo struct {
	file  string // absolute; "" when disabled
	root  string // the state directory
	owner *Dir
	kind  string

	mu      sync.Mutex
	buf     []byte      // the memo file as read, which entries point into
	entries []memoEntry // sorted by name
	puts    map[string]memoEntry
	drop    func(name string) bool
	// listing describes, for the kind that keeps one, the directory
	// whose every entry the memo holds: see recordsMemo.
	listing memoListing
	dirty   bool
	gen     uint64 // see generation
	hint    int    // the entry lookup found last (see find)
}

// memoListing says the memo holds exactly the entries of one directory
// as it was at revision Epoch/Seq with identity Dir, and that they formed,
// with the rest of the config then, a config that validated.
type memoListing struct {
	Valid bool
	Epoch string
	Seq   uint64
	Dir   FileID
	// Names: the listener and credential names the records validated
	// with (Config.namesKey).
	Names string
}

// memo returns the Dir's memo of kind, loading it on first use.
func (d *Dir) memo(kind string) *Memo {
	d.memosMu.Lock()
	defer d.memosMu.Unlock()
	if m := d.memos[kind]; m != nil {
		return m
	}
	if d.memos == nil {
		d.memos = map[string]*Memo{}
	}
	m := loadMemo(filepath.Join(d.root, filepath.FromSlash(MemoDir), kind))
	m.root, m.owner, m.kind = d.root, d, kind
	d.memos[kind] = m
	return m
}

// pinMemos keeps the Dir's memos in memory until the matching unpinMemos:
// a change under the lock uses the records memo from its load to its
// commit (memoCommitted, memoRevised).
func (d *Dir) pinMemos() {
	d.memosMu.Lock()
	defer d.memosMu.Unlock()
	d.memoPins++
}

func (d *Dir) unpinMemos() {
	d.memosMu.Lock()
	defer d.memosMu.Unlock()
	if d.memoPins--; d.memoPins == 0 {
		clear(d.memos)
	}
}

// releaseMemo lets go of m unless the memos are pinned.
func (d *Dir) releaseMemo(m *Memo) {
	d.memosMu.Lock()
	defer d.memosMu.Unlock()
	if d.memoPins == 0 && d.memos[m.kind] == m {
		delete(d.memos, m.kind)
	}
}

// OpenMemo returns the memo of kind kept for s; one that holds nothing
// when s is not a local directory.
func OpenMemo(s Store, kind string) *Memo {
	if d, ok := s.(*Dir); ok {
		return d.memo(kind)
	}
	return &Memo{}
}

// loadMemo reads the memo file at path; a missing or damaged one is an
// empty memo.
func loadMemo(path string) *Memo {
	m := &Memo{file: path}
	// Not blocking: a FIFO put here must not hang every command.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return m
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > memoLimit {
		return m
	}
	// One allocation of the file's size: the entries' names and values
	// point into it, and it is never written to.
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return m
	}
	if entries, listing, err := decodeMemo(b); err == nil {
		m.buf, m.entries, m.listing = b, entries, listing
	}
	return m
}

// Stat returns the identity of name's file (a name in the state, or an
// absolute path), for Get; ok is false when it cannot be had (no such
// file, or a memo that holds nothing).
func (m *Memo) Stat(name string) (FileID, bool) {
	if m.file == "" {
		return FileID{}, false
	}
	return statID(m.abs(name))
}

// Read reads name through s and returns, from a memo that keeps anything,
// the identity of the very file it read (for Put).
func (m *Memo) Read(ctx context.Context, s Reader, name string) ([]byte, FileID, error) {
	if m.file == "" {
		b, err := s.Read(ctx, name)
		return b, FileID{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, FileID{}, err
	}
	return readWithID(m.abs(name))
}

func (m *Memo) abs(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(m.root, filepath.FromSlash(name))
}

// Get returns the value memoized for name (a name in the state, or an
// absolute path) when the file is still the one it was derived from. The
// value is shared: never write to it.
func (m *Memo) Get(name string, id FileID) ([]byte, bool) {
	if m.file == "" {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(name)
	if !ok || e.racy || e.id != id {
		return nil, false
	}
	return e.val, true
}

// Trusted returns the value memoized for name without looking at the file:
// for a caller that knows from elsewhere (the directory's listing, see
// recordsMemo) that it has not been replaced.
func (m *Memo) Trusted(name string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lookup(name)
	return e.val, ok
}

func (m *Memo) lookup(name string) (memoEntry, bool) {
	if e, ok := m.puts[name]; ok {
		return e, e.val != nil
	}
	i, ok := m.find(name)
	if !ok || (m.drop != nil && m.drop(name)) || !m.entries[i].decodeTail() {
		return memoEntry{}, false
	}
	return m.entries[i], true
}

// Put memoizes val, derived from name when its file had identity id (taken
// before or while the file was read: a change after that changes the
// identity, so a stale value is never trusted). exact says the caller
// wrote the file itself and knows its content, so that even a fresh file
// is trusted by identity.
func (m *Memo) Put(name string, id FileID, val []byte, exact bool) {
	if m.file == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.puts == nil {
		m.puts = map[string]memoEntry{}
	}
	if val == nil {
		val = []byte{}
	}
	m.puts[name] = memoEntry{name: name, id: id, val: val, racy: !exact && id.racy(time.Now())}
	m.dirty = true
}

// Forget drops name's entry.
func (m *Memo) Forget(name string) {
	if m.file == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.puts == nil {
		m.puts = map[string]memoEntry{}
	}
	m.puts[name] = memoEntry{name: name}
	m.dirty = true
}

// Retain keeps, at the next save, only the entries whose name keep
// accepts. The memo counts as changed, and is written at the next save,
// only when that drops an entry: a list that prunes on every run rewrites
// nothing when nothing went.
func (m *Memo) Retain(keep func(name string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	drop := slices.ContainsFunc(m.entries, func(e memoEntry) bool {
		return !keep(e.name) && (m.drop == nil || !m.drop(e.name))
	})
	for name, e := range m.puts {
		drop = drop || (e.val != nil && !keep(name))
	}
	if !drop {
		return
	}
	if prev := m.drop; prev != nil {
		m.drop = func(name string) bool { return prev(name) || !keep(name) }
	} else {
		m.drop = func(name string) bool { return !keep(name) }
	}
	m.dirty = true
}

// Save writes the memo when it changed: atomically, without fsync (a memo
// lost in a crash is rebuilt), and silently not at all where the state
// directory cannot be written. Entries of files that changed within
// racyWindow of being read are saved as racy.
//
// Saving ends a use of the memo: unless a change under the lock is in
// progress (see Dir.pinMemos), the Dir lets go of it, so that a long-lived
// process (serve) does not keep 100k entries between its loads; the next
// use reads the file again.
func (m *Memo) Save() {
	if m.file == "" {
		return
	}
	if m.owner != nil {
		defer m.owner.releaseMemo(m)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirty {
		return
	}
	m.merge()
	// Never the first to create the state directory: a command refused
	// on a new one leaves nothing.
	root := filepath.Dir(filepath.Dir(filepath.Dir(m.file)))
	if _, err := os.Stat(root); err != nil {
		return
	}
	// Nor the first to create run/cache in an empty state, which a
	// refused first command takes away again.
	if _, err := os.Lstat(m.file); err != nil && len(m.entries) == 0 {
		m.dirty = false
		return
	}
	if err := MkdirAll(filepath.Dir(m.file)); err != nil {
		return
	}
	_ = writeMemoFile(m.file, m.buf, m.entries, m.listing)
	m.dirty = false
}

// merge folds the puts and drops into the sorted entries: the puts are
// sorted and merged in, as a change puts a few among 100k entries.
func (m *Memo) merge() {
	if len(m.puts) == 0 && m.drop == nil {
		return
	}
	if m.drop == nil && len(m.puts) <= 64 {
		// A change's few puts go in place: each moves the entries after
		// it, which is cheaper than copying all of them.
		for _, p := range m.puts {
			i, found := slices.BinarySearchFunc(m.entries, p.name, func(e memoEntry, n string) int { return strings.Compare(e.name, n) })
			switch {
			case found && p.val == nil:
				m.entries = slices.Delete(m.entries, i, i+1)
			case found:
				m.entries[i] = p
			case p.val != nil:
				m.entries = slices.Insert(m.entries, i, p)
			}
		}
		m.puts = nil
		return
	}
	puts := make([]memoEntry, 0, len(m.puts))
	for _, e := range m.puts {
		puts = append(puts, e)
	}
	slices.SortFunc(puts, func(a, b memoEntry) int { return strings.Compare(a.name, b.name) })
	keep := func(e memoEntry) bool { return e.val != nil && (m.drop == nil || !m.drop(e.name)) }
	out := make([]memoEntry, 0, len(m.entries)+len(puts))
	i := 0
	for _, e := range m.entries {
		for i < len(puts) && puts[i].name < e.name {
			if keep(puts[i]) {
				out = append(out, puts[i])
			}
			i++
		}
		if i < len(puts) && puts[i].name == e.name {
			continue // replaced or forgotten: the put comes next
		}
		if keep(e) {
			out = append(out, e)
		}
	}
	for ; i < len(puts); i++ {
		if keep(puts[i]) {
			out = append(out, puts[i])
		}
	}
	m.entries, m.puts, m.drop = out, nil, nil
}

// writeMemoFile replaces path atomically with the memo of entries and l,
// mode 0600, without fsync. The entries are written as they are (raw)
// through a buffer, rather than copied into one 10 MB slice first.
func writeMemoFile(path string, buf []byte, entries []memoEntry, l memoListing) error {
	head, spans, sum := memoLayout(buf, entries, l)
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	_, werr := w.WriteString(memoMagic)
	_, err = w.Write(binary.LittleEndian.AppendUint32(nil, sum))
	werr = errors.Join(werr, err)
	_, err = w.Write(head)
	werr = errors.Join(werr, err)
	for _, b := range spans {
		if werr != nil {
			break
		}
		_, werr = w.Write(b)
	}
	werr = errors.Join(werr, w.Flush())
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return nil
}

var memoCRC = crc32.MakeTable(crc32.Castagnoli)

// encodeMemo lays out a memo: magic, CRC-32C of the rest, the listing,
// the entry count, then each entry: its name, and the length and bytes of
// the rest (value, racy, file identity), which a load skips over.
func encodeMemo(entries []memoEntry, l memoListing) []byte {
	entries = slices.Clone(entries)
	head, spans, sum := memoLayout(nil, entries, l)
	out := append([]byte(memoMagic), binary.LittleEndian.AppendUint32(nil, sum)...)
	out = append(out, head...)
	for _, b := range spans {
		out = append(out, b...)
	}
	return out
}

// memoLayout encodes what entries lack of their raw form, and returns the
// memo's head (the listing and the entry count), the entries as spans of
// bytes to write in order (entries next to each other in buf, the memo file
// they were read from, as one span), and the checksum of it all.
func memoLayout(buf []byte, entries []memoEntry, l memoListing) (head []byte, spans [][]byte, sum uint32) {
	head = AppendMemoBool(nil, l.Valid)
	head = AppendMemoString(head, l.Epoch)
	head = binary.AppendUvarint(head, l.Seq)
	head = AppendFileID(head, l.Dir)
	head = AppendMemoString(head, l.Names)
	head = binary.AppendUvarint(head, uint64(len(entries)))
	sum = crc32.Update(0, memoCRC, head)
	var body []byte
	start, end := -1, -1 // the span of buf being gathered
	for i := range entries {
		e := &entries[i]
		if e.raw == nil {
			body = AppendMemoString(body[:0], string(e.val))
			body = AppendMemoBool(body, e.racy)
			body = AppendFileID(body, e.id)
			raw := AppendMemoString(make([]byte, 0, len(e.name)+len(body)+8), e.name)
			raw = binary.AppendUvarint(raw, uint64(len(body)))
			e.raw = append(raw, body...)
		}
		if at := e.at - 1; at >= 0 && at <= len(buf)-len(e.raw) {
			if at == end {
				end += len(e.raw)
				continue
			}
			if start >= 0 {
				spans = append(spans, buf[start:end])
			}
			start, end = at, at+len(e.raw)
			continue
		}
		if start >= 0 {
			spans = append(spans, buf[start:end])
			start, end = -1, -1
		}
		spans = append(spans, e.raw)
	}
	if start >= 0 {
		spans = append(spans, buf[start:end])
	}
	for _, b := range spans {
		sum = crc32.Update(sum, memoCRC, b)
	}
	return head, spans, sum
}

// decodeMemo reads what encodeMemo wrote; anything else is an error.
func decodeMemo(b []byte) ([]memoEntry, memoListing, error) {
	var l memoListing
	if !bytes.HasPrefix(b, []byte(memoMagic)) || len(b) < len(memoMagic)+4 {
		return nil, l, errors.New("not a memo of this version")
	}
	sum := binary.LittleEndian.Uint32(b[len(memoMagic):])
	body := b[len(memoMagic)+4:]
	if crc32.Checksum(body, memoCRC) != sum {
		return nil, l, errors.New("checksum mismatch")
	}
	r := NewMemoReader(body)
	l.Valid = r.Bool()
	l.Epoch = r.Str()
	l.Seq = r.Uvarint()
	l.Dir = r.FileID()
	l.Names = r.Str()
	n := r.Count()
	entries := make([]memoEntry, 0, n+appendRoom)
	for range n {
		var e memoEntry
		start := r.b
		e.name = r.View()
		rest := r.Bytes()
		if r.Err() != nil {
			break
		}
		br := NewMemoReader(rest)
		e.val = br.Bytes()
		if br.Err() != nil || br.Len() == 0 {
			return nil, l, ErrMemoDamaged
		}
		e.tail = rest[len(rest)-br.Len():]
		e.raw = start[: len(start)-r.Len() : len(start)-r.Len()]
		e.at = 1 + len(b) - len(start)
		if len(entries) > 0 && entries[len(entries)-1].name >= e.name {
			return nil, l, errors.New("entries out of order")
		}
		entries = append(entries, e)
	}
	if r.Err() != nil {
		return nil, l, r.Err()
	}
	if r.Len() != 0 {
		return nil, l, fmt.Errorf("%d bytes after the last entry", r.Len())
	}
	return entries, l, nil
}
