package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

// Every field of Mapping must survive the memo: a field added to Mapping
// and not to encodeMappingMemo would silently vanish from every load.
func TestMappingMemoHasEveryField(t *testing.T) {
	typ := reflect.TypeFor[Mapping]()
	if typ.NumField() != mappingMemoFields {
		t.Fatalf("Mapping has %d fields, encodeMappingMemo writes %d: add the new field to encodeMappingMemo and decodeMappingMemo", typ.NumField(), mappingMemoFields)
	}
	var m Mapping
	v := reflect.ValueOf(&m).Elem()
	for i := range typ.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("value of " + typ.Field(i).Name)
		case reflect.Int:
			f.SetInt(int64(1000 + i))
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"a.example.com", "*.b.example.com"}))
		default:
			t.Fatalf("field %s has kind %s, which this test does not fill", typ.Field(i).Name, f.Kind())
		}
	}
	got, err := decodeMappingMemo(encodeMappingMemo(&m))
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, m)
	}
}

// A damaged memo is no memo: every truncation and every flipped byte is
// refused (the checksum), never a panic or a wrong entry.
func TestMemoDecodeRefusesDamage(t *testing.T) {
	entries := []memoEntry{
		{name: "mappings/a.toml", id: FileID{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5}, val: []byte("x")},
		{name: "mappings/b.toml", id: FileID{Ino: 9}, racy: true, val: []byte{}},
	}
	l := memoListing{Valid: true, Epoch: "e", Seq: 7, Dir: FileID{Ino: 1}}
	b := encodeMemo(entries, l)
	got, gotL, err := decodeMemo(b)
	if err != nil || gotL != l || len(got) != 2 || got[1].name != "mappings/b.toml" || !bytes.Equal(got[0].val, []byte("x")) {
		t.Fatalf("round trip = %+v, %+v, %v", got, gotL, err)
	}
	// The rest of an entry is decoded on first use.
	for i := range got {
		if !got[i].decodeTail() || got[i].id != entries[i].id || got[i].racy != entries[i].racy {
			t.Fatalf("entry %d decodes as %+v, want %+v", i, got[i], entries[i])
		}
	}
	for n := range len(b) {
		if _, _, err := decodeMemo(b[:n]); err == nil {
			t.Fatalf("a memo cut to %d of %d bytes decodes", n, len(b))
		}
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, _, err := decodeMemo(c); err == nil {
			t.Fatalf("a memo with byte %d flipped decodes", i)
		}
	}
}

func FuzzDecodeMemo(f *testing.F) {
	f.Add(encodeMemo([]memoEntry{{name: "mappings/a.toml", val: encodeMappingMemo(&Mapping{ID: "a", Hosts: []string{"a.example.com"}})}}, memoListing{}))
	f.Add([]byte(memoMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, l, err := decodeMemo(b)
		if err != nil {
			return
		}
		if again, l2, err := decodeMemo(encodeMemo(entries, l)); err != nil || l2 != l || len(again) != len(entries) {
			t.Fatalf("a decoded memo does not encode back: %v", err)
		}
		for _, e := range entries {
			_, _ = decodeMappingMemo(e.val)
			_ = e.decodeTail()
		}
	})
}

// memoState is a state of three self-signed mappings, loaded once so that
// the memo holds them and vouches for the listing.
func memoState(t *testing.T) *Dir {
	t.Helper()
	d := OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	ctx := context.Background()
	err := Update(ctx, d, "test", func(tx *Tx) error {
		tx.Config.Listeners = []Listener{{Name: "web", Addr: "127.0.0.1:8443"}}
		for _, id := range []string{"a", "b", "c"} {
			tx.Config.Mappings = append(tx.Config.Mappings, Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: SourceSelfSigned})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Past racyWindow, so that the entries are trusted by identity and an
	// edit made now changes the identity whatever the clock's granularity.
	time.Sleep(racyWindow + 100*time.Millisecond)
	if _, err := LoadConfig(ctx, OpenDir(d.Root(), time.Second)); err != nil {
		t.Fatal(err)
	}
	return OpenDir(d.Root(), time.Second)
}

func hostsOf(t *testing.T, s Reader) map[string]string {
	t.Helper()
	cfg, err := LoadConfig(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range cfg.Mappings {
		out[m.ID] = strings.Join(m.Hosts, ",")
	}
	return out
}

// Every load sees every hand edit of a record, whatever the memo holds:
// written in place (same size, modification time set back: the change time
// still moves), replaced by a rename, removed, added.
func TestLoadSeesEveryHandEdit(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, root string)
		want map[string]string
	}{
		{"in place, same size, old mtime", func(t *testing.T, root string) {
			p := filepath.Join(root, "mappings", "b.toml")
			fi, _ := os.Stat(p)
			b, _ := os.ReadFile(p)
			writeInPlace(t, p, bytes.Replace(b, []byte("b.example.com"), []byte("x.example.com"), 1))
			_ = os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}, map[string]string{"a": "a.example.com", "b": "x.example.com", "c": "c.example.com"}},
		{"replaced by a rename", func(t *testing.T, root string) {
			p := filepath.Join(root, "mappings", "b.toml")
			b, _ := os.ReadFile(p)
			tmp := filepath.Join(root, "b.new")
			_ = os.WriteFile(tmp, bytes.Replace(b, []byte("b.example.com"), []byte("renamed.example.com"), 1), 0o600)
			_ = os.Rename(tmp, p)
		}, map[string]string{"a": "a.example.com", "b": "renamed.example.com", "c": "c.example.com"}},
		{"a symlinked record's target rewritten in place", func(t *testing.T, root string) {
			p := filepath.Join(root, "mappings", "b.toml")
			b, _ := os.ReadFile(p)
			target := filepath.Join(root, "b-target.toml")
			_ = os.WriteFile(target, b, 0o600)
			_ = os.Remove(p)
			_ = os.Symlink(target, p)
			if got := hostsOf(t, OpenDir(root, time.Second)); got["b"] != "b.example.com" {
				t.Fatalf("through the link: %v", got)
			}
			time.Sleep(racyWindow + 100*time.Millisecond)
			writeInPlace(t, target, bytes.Replace(b, []byte("b.example.com"), []byte("l.example.com"), 1))
		}, map[string]string{"a": "a.example.com", "b": "l.example.com", "c": "c.example.com"}},
		{"removed", func(t *testing.T, root string) {
			_ = os.Remove(filepath.Join(root, "mappings", "c.toml"))
		}, map[string]string{"a": "a.example.com", "b": "b.example.com"}},
		{"added", func(t *testing.T, root string) {
			b, _ := os.ReadFile(filepath.Join(root, "mappings", "c.toml"))
			for _, q := range []string{`'`, `"`} {
				b = bytes.ReplaceAll(b, []byte(q+"c"), []byte(q+"d"))
			}
			_ = os.WriteFile(filepath.Join(root, "mappings", "d.toml"), b, 0o600)
		}, map[string]string{"a": "a.example.com", "b": "b.example.com", "c": "c.example.com", "d": "d.example.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := memoState(t)
			tc.edit(t, d.Root())
			if got := hostsOf(t, d); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("load = %v, want %v", got, tc.want)
			}
			// A change sees it too, unless it was written in place (see
			// recordsMemo), and it keeps the edit.
			if !strings.Contains(tc.name, "in place") {
				d2 := OpenDir(d.Root(), time.Second)
				if err := Update(context.Background(), d2, "test", func(tx *Tx) error {
					if got := len(tx.Config.Mappings); got != len(tc.want) {
						t.Errorf("the change sees %d mappings, want %d", got, len(tc.want))
					}
					tx.Config.Listeners[0].Addr = "127.0.0.1:9443"
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if got := hostsOf(t, OpenDir(d.Root(), time.Second)); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("after a change: %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// writeInPlace rewrites p without a new inode, as nano or "cat >" do.
func writeInPlace(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// A change trusts the memo without looking at each record (that is what
// makes it O(1)), so a record rewritten in place is not seen by it; but a
// change that would replace or delete that record is refused, the state
// left as it is, and the next command reads every record and goes through.
func TestChangeRefusesToOverwriteARecordEditedInPlace(t *testing.T) {
	d := memoState(t)
	ctx := context.Background()
	p := filepath.Join(d.Root(), "mappings", "b.toml")
	b, _ := os.ReadFile(p)
	edited := bytes.Replace(b, []byte("b.example.com"), []byte("nano.example.com"), 1)
	writeInPlace(t, p, edited)
	before := stateFiles(t, d)
	upstream := func(tx *Tx) error {
		for i := range tx.Config.Mappings {
			if tx.Config.Mappings[i].ID == "b" {
				tx.Config.Mappings[i].Upstream = "http://127.0.0.1:8080"
			}
		}
		return nil
	}
	err := Update(ctx, d, "test", upstream)
	if err == nil || fault.KindOf(err) != fault.Failure || !strings.Contains(err.Error(), "mappings/b.toml changed on disk") {
		t.Fatalf("Update = %v, want the refusal naming mappings/b.toml", err)
	}
	if after := stateFiles(t, d); !reflect.DeepEqual(before, after) {
		t.Fatal("the refused change wrote something")
	}
	if err := Update(ctx, OpenDir(d.Root(), time.Second), "test", upstream); err != nil {
		t.Fatalf("the change run again: %v", err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Contains(got, []byte("nano.example.com")) || !bytes.Contains(got, []byte("127.0.0.1:8080")) {
		t.Fatalf("record after the change:\n%s\nwant the hand edit and the change", got)
	}
}

// Nor does a change write only the files of a mapping whose record was
// rewritten in place: a certificate issued for the hosts the memo says,
// when the record says others, is as stale as the record overwritten.
func TestChangeRefusesToWriteTheFilesOfARecordEditedInPlace(t *testing.T) {
	d := memoState(t)
	ctx := context.Background()
	p := filepath.Join(d.Root(), "mappings", "b.toml")
	b, _ := os.ReadFile(p)
	writeInPlace(t, p, bytes.Replace(b, []byte("b.example.com"), []byte("nano.example.com"), 1))
	before := stateFiles(t, d)
	issue := func(tx *Tx) error { return tx.Write(ctx, "certs/public/b/cert.pem", []byte("x"), 0o644) }
	err := Update(ctx, d, "test", issue)
	if err == nil || !strings.Contains(err.Error(), "mappings/b.toml changed on disk") {
		t.Fatalf("a change of b's files = %v, want the refusal naming mappings/b.toml", err)
	}
	if after := stateFiles(t, d); !reflect.DeepEqual(before, after) {
		t.Fatal("the refused change wrote something")
	}
	// Run again, the change reads every record and goes through.
	if err := Update(ctx, OpenDir(d.Root(), time.Second), "test", issue); err != nil {
		t.Fatalf("the change run again, every record read: %v", err)
	}
}

// The lock holder's way reads no record when the memo vouches for the
// listing: shown by a record broken in place that does not stop a change,
// while every full load refuses it; after that refusal the memo vouches
// for nothing, and the next change reads every record and refuses too.
func TestChangeTrustsTheMemoListing(t *testing.T) {
	d := memoState(t)
	ctx := context.Background()
	writeInPlace(t, filepath.Join(d.Root(), "mappings", "a.toml"), []byte("this is not TOML ="))
	err := Update(ctx, OpenDir(d.Root(), time.Second), "test", func(tx *Tx) error {
		tx.Config.Listeners[0].Addr = "127.0.0.1:9443"
		return nil
	})
	if err != nil {
		t.Fatalf("Update = %v: it read the records instead of trusting the memo", err)
	}
	var cfe *ConfigFileError
	if _, err := LoadConfig(ctx, OpenDir(d.Root(), time.Second)); !errors.As(err, &cfe) {
		t.Fatalf("a full load = %v, want the broken record's error", err)
	}
	if err := Update(ctx, OpenDir(d.Root(), time.Second), "test", func(tx *Tx) error { return nil }); !errors.As(err, &cfe) {
		t.Fatalf("Update after a refused load = %v, want the record's error", err)
	}
}

// A load that overlaps a change committed in the same process (serve's API
// and its reloads) keeps nothing of what it found: it may have read a
// record the change then replaced, and the memo must not vouch for that.
func TestALoadOverlappingACommitKeepsNothing(t *testing.T) {
	d := memoState(t)
	m := d.memo(recordsMemo)
	gen := m.generation()
	d.memoCommitted(Change{}, "")
	m.putAt(gen, "mappings/zz.toml", FileID{Ino: 1}, []byte("x"))
	m.setListingAt(gen, memoListing{Valid: true, Epoch: "e", Seq: 99})
	m.retainAt(gen, func(string) bool { return false })
	if _, ok := m.Trusted("mappings/zz.toml"); ok {
		t.Error("a stale load's entry was kept")
	}
	if m.listing.Seq == 99 {
		t.Error("a stale load's listing was kept")
	}
	if _, ok := m.Trusted("mappings/a.toml"); !ok {
		t.Error("a stale load's prune was applied")
	}
}

// A trusted load takes the mappings' digests from the memo's bytes; they
// must be the digests of the mappings, or a save would write every record
// (or, worse, none that changed).
func TestTrustedDigestsAreTheMappings(t *testing.T) {
	d := memoState(t)
	// memoState's read made the memo vouch for the listing, and each
	// change keeps it so.
	for _, port := range []string{"9441", "9442"} {
		err := Update(context.Background(), OpenDir(d.Root(), time.Second), "test", func(tx *Tx) error {
			base := tx.Config.loaded
			for i := range tx.Config.Mappings {
				if j, ok := base.find(tx.Config.Mappings[i].ID); !ok || base.sums[j] != digest(&tx.Config.Mappings[i]) {
					t.Errorf("mapping %s: baseline digest differs from its digest", tx.Config.Mappings[i].ID)
				}
			}
			if !tx.Config.loaded.trusted {
				t.Errorf("change %s: trusted = %v", port, tx.Config.loaded.trusted)
			}
			tx.Config.Listeners[0].Addr = "127.0.0.1:" + port
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A FIFO where the memo or a record belongs never hangs a command: the
// memo is then no memo, and the record is an error naming it.
func TestFIFOsInTheStateDoNotHang(t *testing.T) {
	d := memoState(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	memo := filepath.Join(d.Root(), filepath.FromSlash(MemoDir), recordsMemo)
	if err := os.Remove(memo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(memo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := LoadConfig(ctx, OpenDir(d.Root(), time.Second)); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a FIFO for the memo: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("a FIFO for the memo hangs the load")
	}
	rec := filepath.Join(d.Root(), "mappings", "fifo.toml")
	if err := syscall.Mkfifo(rec, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() { _, err := LoadConfig(ctx, OpenDir(d.Root(), time.Second)); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "fifo.toml is not a regular file") {
			t.Fatalf("a FIFO for a record: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("a FIFO for a record hangs the load")
	}
}

// The identity of an entry is decoded only when the entry is looked up: one
// that does not decode then (a memo written wrong, with a right checksum)
// is no entry, never a wrong one.
func TestMemoEntryWhoseIdentityDoesNotDecodeIsNoEntry(t *testing.T) {
	id := FileID{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5}
	good := memoEntry{name: "a", id: id, val: []byte("x")}
	tests := []struct {
		name string
		tail []byte
	}{
		{"racy is not a bool", []byte{7, 1, 2, 6, 8, 10}},
		{"identity cut short", []byte{0, 1, 2}},
		{"bytes after the identity", []byte{0, 1, 2, 6, 8, 10, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := append(AppendMemoString(nil, "x"), tc.tail...)
			raw := binary.AppendUvarint(AppendMemoString(nil, "b"), uint64(len(body)))
			bad := memoEntry{name: "b", raw: append(raw, body...)}
			path := filepath.Join(t.TempDir(), "memo")
			if err := os.WriteFile(path, encodeMemo([]memoEntry{good, bad}, memoListing{}), 0o600); err != nil {
				t.Fatal(err)
			}
			m := loadMemo(path)
			m.file = path
			if v, ok := m.Get("a", id); !ok || string(v) != "x" {
				t.Fatalf("the good entry: %q, %v", v, ok)
			}
			if v, ok := m.Get("b", FileID{}); ok {
				t.Fatalf("the entry whose identity does not decode is %q", v)
			}
			if _, ok := m.Trusted("b"); ok {
				t.Fatal("Trusted takes the entry whose identity does not decode")
			}
		})
	}
}

func TestIsRecordNameOf(t *testing.T) {
	for _, tc := range []struct {
		name, id string
		want     bool
	}{
		{"mappings/a.toml", "a", true},
		{"mappings/shop-1.toml", "shop-1", true},
		{"mappings/a.toml", "b", false},
		{"mappings/ab.toml", "a", false},
		{"mappings/a.toml", "a.toml", false},
		{"mappings/a.tomx", "a", false},
		{"mapping/a.toml", "a", false},
		{"mappings/a.toml", "", false},
		{"mappings/.toml", "", true},
	} {
		if got := isRecordNameOf(tc.name, tc.id); got != tc.want || got != (RecordName(tc.id) == tc.name) {
			t.Errorf("isRecordNameOf(%q, %q) = %v, want %v", tc.name, tc.id, got, tc.want)
		}
	}
}

// A save after a few puts and forgets writes every entry the memo holds,
// those read from the file (copied as spans of it) and the new ones alike.
func TestMemoSaveWritesWhatItHolds(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "memo")
	var entries []memoEntry
	for i := range 50 {
		e := memoEntry{name: fmt.Sprintf("k%03d", i*2), id: FileID{Ino: uint64(i), Mtime: 1}, val: []byte(fmt.Sprint(i))}
		entries = append(entries, e)
	}
	if err := os.WriteFile(path, encodeMemo(entries, memoListing{}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		apply func(m *Memo)
	}{
		{"put first", func(m *Memo) { m.Put("a", FileID{Ino: 1000}, []byte("first"), true) }},
		{"put in the middle", func(m *Memo) { m.Put("k051", FileID{Ino: 1001}, []byte("mid"), true) }},
		{"put last", func(m *Memo) { m.Put("z", FileID{Ino: 1002}, []byte("last"), true) }},
		{"replace one", func(m *Memo) { m.Put("k010", FileID{Ino: 1003}, []byte("new"), true) }},
		{"forget one", func(m *Memo) { m.Forget("k020") }},
		{"forget the first", func(m *Memo) { m.Forget("k000") }},
		{"retain some", func(m *Memo) { m.Retain(func(n string) bool { return n != "k030" && n != "k032" }) }},
	} {
		m := loadMemo(path)
		tc.apply(m)
		m.Save()
		// What the memo says of every name it should hold.
		m2 := loadMemo(path)
		m2.mu.Lock()
		var got []string
		for i := range m2.entries {
			got = append(got, m2.entries[i].name)
		}
		m2.mu.Unlock()
		m.mu.Lock()
		var exp []string
		for i := range m.entries {
			e := m.entries[i]
			exp = append(exp, e.name)
			g, ok := m2.lookup(e.name)
			if !ok || !bytes.Equal(g.val, e.val) || !e.decodeTail() || g.id != e.id {
				t.Errorf("%s: %s saved as %+v, want %+v", tc.name, e.name, g, e)
			}
		}
		m.mu.Unlock()
		if !slices.Equal(got, exp) {
			t.Fatalf("%s: saved names %q, want %q", tc.name, got, exp)
		}
	}
	m := loadMemo(path)
	for _, name := range []string{"a", "k051", "z", "k010", "k002", "k098"} {
		if _, ok := m.Trusted(name); !ok {
			t.Errorf("%s lost across saves", name)
		}
	}
	for _, name := range []string{"k020", "k000", "k030", "k032"} {
		if _, ok := m.Trusted(name); ok {
			t.Errorf("%s still there", name)
		}
	}
}

// Mappings decoded together share chunks for their hosts, but an append to
// one's hosts never reaches another's.
func TestDecodedHostsAreEachTheirOwn(t *testing.T) {
	var chunks hostChunks
	var ms []Mapping
	for i := range 5000 { // more than one chunk
		m := Mapping{ID: fmt.Sprint("m", i), Hosts: []string{fmt.Sprint("a", i, ".example.com"), fmt.Sprint("b", i, ".example.com")}}
		got, err := decodeMappingMemoWith(encodeMappingMemo(&m), &chunks)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("decoded %+v, %v; want %+v", got, err, m)
		}
		ms = append(ms, got)
	}
	for i := range ms {
		ms[i].Hosts = append(ms[i].Hosts, "new.example.com")
	}
	for i, m := range ms {
		want := []string{fmt.Sprint("a", i, ".example.com"), fmt.Sprint("b", i, ".example.com"), "new.example.com"}
		if !slices.Equal(m.Hosts, want) {
			t.Fatalf("mapping %d's hosts became %q, want %q", i, m.Hosts, want)
		}
	}
}

// A load of a state that has not changed since the memo was saved leaves
// the memo file as it is: rewriting it (10 MB at 100k mappings) on every
// list or doctor would be work for nothing.
func TestALoadOfAnUnchangedStateDoesNotRewriteTheMemo(t *testing.T) {
	d := memoState(t)
	file := d.memo(recordsMemo).file
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, quick := range []bool{false, true} {
		var err error
		if quick {
			err = Update(context.Background(), OpenDir(d.Root(), time.Second), "test", func(tx *Tx) error { return nil })
		} else {
			_, err = LoadConfig(context.Background(), OpenDir(d.Root(), time.Second))
		}
		if err != nil {
			t.Fatal(err)
		}
		after, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
			t.Fatalf("quick=%v: the memo was rewritten by a load of an unchanged state", quick)
		}
	}
}
