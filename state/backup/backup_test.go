package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
)

// skipped are the paths a backup leaves out and a restore rewrites.
var skipped = []string{state.RunDir, state.LockFile, state.RevisionFile, filepath.Join("secrets", ".x.tmp-123")}

func TestRoundTrip(t *testing.T) {
	src := newState(t, true, "web")
	if err := os.Chmod(filepath.Join(src.Root(), "acme", "accounts"), 0o750); err != nil {
		t.Fatal(err)
	}
	archive := archiveOf(t, src, "")

	m, _ := unpack(t, archive)
	if m.FormatVersion != FormatVersion || m.P2PTLSVersion != "v-test" || !m.CreatedAt.Equal(now0) || m.CAFingerprintSHA256 == "" {
		t.Errorf("manifest header: %+v", m)
	}
	for _, f := range m.Files {
		if excluded(f.Path) {
			t.Errorf("the backup holds %s", f.Path)
		}
	}

	dst := state.OpenDir(filepath.Join(t.TempDir(), "restored"), time.Second)
	res, err := Restore(context.Background(), dst, bytes.NewReader(archive), RestoreOptions{Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "restored state", snapshot(t, src.Root(), skipped...), snapshot(t, dst.Root(), state.RevisionFile))
	if res.CA != CARestored || res.ReplacesState || res.PreviousState != "" || res.Files != len(m.Files) || !slices.Equal(res.Listeners.Added, []string{"web"}) {
		t.Errorf("result: %+v", res)
	}
	// A fresh revision makes a running serve reload.
	if b, err := os.ReadFile(filepath.Join(dst.Root(), state.RevisionFile)); err != nil || len(b) == 0 {
		t.Errorf("no revision written: %v", err)
	}
	if info, err := os.Stat(dst.Root()); err != nil || info.Mode().Perm() != state.DirMode {
		t.Errorf("restored root: %v %v", info.Mode(), err)
	}
	if got := siblings(t, dst.Root()); len(got) != 0 {
		t.Errorf("left beside the target: %v", got)
	}
}

func TestEncryptedRoundTripAndPassphraseRefusals(t *testing.T) {
	src := newState(t, true, "web")
	archive := archiveOf(t, src, "correct horse")
	if !bytes.HasPrefix(archive, []byte(ageMagic)) {
		t.Fatalf("not age-encrypted: %q", archive[:20])
	}
	target := newState(t, true, "other")
	before := snapshot(t, target.Root())
	for _, tc := range []struct {
		desc, passphrase, want string
		archive                []byte
	}{
		{"without passphrase", "", "the backup is encrypted and needs its passphrase", archive},
		{"wrong passphrase", "wrong horse", "wrong passphrase", archive},
		{"truncated", "correct horse", "not a p2ptls backup or damaged", archive[:len(archive)-100]},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Restore(context.Background(), target, bytes.NewReader(tc.archive), RestoreOptions{Force: true, Passphrase: tc.passphrase, Now: now0})
			if err == nil || !strings.Contains(err.Error(), tc.want) || fault.KindOf(err) != fault.Invalid {
				t.Fatalf("err = %v (kind %v), want %q, invalid", err, fault.KindOf(err), tc.want)
			}
			sameSnapshot(t, "target", before, snapshot(t, target.Root()))
			if got := siblings(t, target.Root()); len(got) != 0 {
				t.Errorf("left beside the target: %v", got)
			}
		})
	}
	res, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Force: true, Passphrase: "correct horse", Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Encrypted || res.CA != CADifferent {
		t.Errorf("result: %+v", res)
	}
	sameSnapshot(t, "restored state", snapshot(t, src.Root(), skipped...), snapshot(t, target.Root(), state.RevisionFile, state.RunDir))
}

// TestRefusedArchivesChangeNothing feeds damaged and hostile archives to a
// restore with --force over an existing state: each is refused as bad
// input, and the target and its parent stay exactly as they were.
func TestRefusedArchivesChangeNothing(t *testing.T) {
	src := newState(t, true, "web")
	good := archiveOf(t, src, "")
	m, entries := unpack(t, good)

	// mutate returns an archive made from a copy of the good one's parts.
	mutate := func(f func(m *Manifest, es []entry) (*Manifest, []entry)) []byte {
		mc := *m
		mc.Files = slices.Clone(m.Files)
		mc.Dirs = slices.Clone(m.Dirs)
		es := make([]entry, len(entries))
		for i, e := range entries {
			es[i] = entry{e.hdr, slices.Clone(e.body)}
		}
		nm, nes := f(&mc, es)
		return pack(t, nm, nes)
	}
	fileIndex := func(es []entry, rel string) int {
		return slices.IndexFunc(es, func(e entry) bool { return e.hdr.Name == statePrefix+rel })
	}
	flip := func(b []byte, at int) []byte {
		c := slices.Clone(b)
		c[at] ^= 0x20
		return c
	}
	random := make([]byte, 4096)
	rand.Read(random)
	var emptyGz bytes.Buffer
	gzw := gzip.NewWriter(&emptyGz)
	gzw.Close()
	extra, extraRec := fileEntry("extra.txt", "not listed")

	tests := []struct {
		desc    string
		archive []byte
		want    string
	}{
		{"random bytes", random, "neither a gzip archive nor age-encrypted"},
		{"empty file", nil, "neither a gzip archive nor age-encrypted"},
		{"empty gzip", emptyGz.Bytes(), "the archive is empty"},
		{"tar without manifest", pack(t, nil, entries), "not the manifest"},
		{"manifest is not JSON", pack(t, []byte("{not json"), entries), "its manifest does not parse"},
		{"newer format", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) { m.FormatVersion = 2; return m, es }), "format version is 2"},
		{"truncated at 100", good[:100], "not a p2ptls backup or damaged"},
		{"truncated at half", good[:len(good)/2], "not a p2ptls backup or damaged"},
		{"truncated by one byte", good[:len(good)-1], "not a p2ptls backup or damaged"},
		{"truncated before the gzip trailer", good[:len(good)-8], "not a p2ptls backup or damaged"},
		{"flipped byte in the compressed data", flip(good, len(good)/2), "not a p2ptls backup or damaged"},
		{"flipped byte early in the compressed data", flip(good, 40), "not a p2ptls backup or damaged"},
		{"flipped byte in the gzip CRC", flip(good, len(good)-6), "not a p2ptls backup or damaged"},
		{"flipped byte in a file", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			i := fileIndex(es, management.CAKeyFile)
			es[i].body[10] ^= 1
			return m, es
		}), "does not match its SHA-256"},
		{"file of another size", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			i := fileIndex(es, state.ConfigFile)
			es[i].body = append(es[i].body, '\n')
			return m, es
		}), "its manifest says"},
		{"mode differs from the manifest", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			es[fileIndex(es, management.CAKeyFile)].hdr.Mode = 0o644
			return m, es
		}), "has mode 0644, its manifest says 0600"},
		{"parent traversal", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			e, _ := fileEntry("x", "evil")
			e.hdr.Name = "../x"
			return m, append(es, e)
		}), `"../x", which leads out of the state directory`},
		{"traversal inside state/", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			e, _ := fileEntry("x", "evil")
			e.hdr.Name = "state/../../x"
			return m, append(es, e)
		}), "not in clean form"},
		{"absolute path", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			e, _ := fileEntry("x", "root::0:0")
			e.hdr.Name = "/etc/passwd"
			return m, append(es, e)
		}), `the absolute path "/etc/passwd"`},
		{"traversal in the manifest", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			_, rec := fileEntry("x", "evil")
			rec.Path = "../x"
			m.Files = append(m.Files, rec)
			return m, es
		}), "which leads out of the state directory"},
		{"symlink", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			return m, append(es, entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "state/link", Linkname: "/etc"}})
		}), "symbolic link state/link -> /etc"},
		{"hard link", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			return m, append(es, entry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "state/hard", Linkname: "/etc/shadow"}})
		}), "hard link state/hard"},
		{"device", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			return m, append(es, entry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "state/null", Devmajor: 1, Devminor: 3, Mode: 0o666}})
		}), "device or special file state/null"},
		{"fifo", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			return m, append(es, entry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "state/fifo", Mode: 0o600}})
		}), "device or special file state/fifo"},
		{"duplicate entry", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			return m, append(es, es[len(es)-1])
		}), "twice"},
		{"duplicate in the manifest", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			m.Files = append(m.Files, m.Files[0])
			return m, es
		}), "twice"},
		{"extra file", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			return m, append(es, extra)
		}), "which its manifest does not list"},
		{"missing file", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			m.Files = append(m.Files, extraRec)
			return m, es
		}), "it lacks the file extra.txt"},
		{"missing directory", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			m.Dirs = append(m.Dirs, Dir{Path: "gone", Mode: "0700"})
			return m, es
		}), "it lacks the directory gone"},
		{"file before its directory", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			return m, slices.Concat(es[len(es)-1:], es[:len(es)-1])
		}), "before its directory"},
		{"file too large", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			_, rec := fileEntry("big", "")
			rec.Size = MaxFileSize + 1
			m.Files = append(m.Files, rec)
			return m, es
		}), "size of 67108865 bytes"},
		{"setuid mode", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			m.Files[0].Mode = "4755"
			return m, es
		}), "not permission bits"},
		{"run/ in the backup", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			e, rec := fileEntry("run/status.json", "{}")
			m.Dirs, m.Files = append(m.Dirs, Dir{Path: "run", Mode: "0700"}), append(m.Files, rec)
			return m, append(es, e)
		}), `"run", which a backup never holds`},
		{"the journal of a change in the backup", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			e, rec := fileEntry(state.JournalFile, `{"version":1}`)
			m.Files = append(m.Files, rec)
			return m, append(es, e)
		}), `"p2ptls.journal", which a backup never holds`},
		{"CA that is not the manifest's", mutate(func(m *Manifest, es []entry) (*Manifest, []entry) {
			m.CAFingerprintSHA256 = strings.Repeat("AB:", 31) + "AB"
			return m, es
		}), "does not match the fingerprint"},
	}
	target := newState(t, true, "other")
	before := snapshot(t, target.Root())
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			for _, dry := range []bool{false, true} {
				_, err := Restore(context.Background(), target, bytes.NewReader(tc.archive), RestoreOptions{Force: true, DryRun: dry, Now: now0})
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("dry run %v: err = %v, want %q", dry, err, tc.want)
				}
				if fault.KindOf(err) != fault.Invalid {
					t.Errorf("dry run %v: kind %v, want invalid (exit 2)", dry, fault.KindOf(err))
				}
				if fault.HintOf(err) == "" {
					t.Errorf("dry run %v: no hint", dry)
				}
			}
			sameSnapshot(t, "target", before, snapshot(t, target.Root()))
			if got := siblings(t, target.Root()); len(got) != 0 {
				t.Errorf("left beside the target: %v", got)
			}
		})
	}
}

func TestForceKeepsThePreviousState(t *testing.T) {
	archive := archiveOf(t, newState(t, true, "web"), "")
	target := newState(t, true, "old")
	before := snapshot(t, target.Root(), state.LockFile)

	_, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Now: now0})
	if err == nil || fault.KindOf(err) != fault.Failure || !strings.Contains(err.Error(), "is not empty") || !strings.Contains(fault.HintOf(err), "--force") {
		t.Fatalf("without --force: %v", err)
	}
	sameSnapshot(t, "refused target", before, snapshot(t, target.Root()))

	res, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Force: true, Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	want := target.Root() + ".pre-restore-20260301T120000Z"
	if res.PreviousState != want || !res.ReplacesState {
		t.Fatalf("previous state %q, want %q", res.PreviousState, want)
	}
	sameSnapshot(t, "kept state", before, snapshot(t, want))
	if !slices.Equal(res.Listeners.Added, []string{"web"}) || !slices.Equal(res.Listeners.Removed, []string{"old"}) || res.CA != CADifferent {
		t.Errorf("result: %+v", res)
	}
	// serve's runtime status stays with the directory serve runs on.
	if _, err := os.Stat(filepath.Join(target.Root(), "run", "status.json")); err != nil {
		t.Errorf("run/ not carried over: %v", err)
	}
	// A second restore in the same second gets its own name.
	res, err = Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Force: true, Now: now0})
	if err != nil || res.PreviousState != want+"-2" {
		t.Errorf("second restore: %v, kept in %q", err, res.PreviousState)
	}
}

func TestEmptyTargetIsReplacedWithoutForce(t *testing.T) {
	archive := archiveOf(t, newState(t, true, "web"), "")
	root := filepath.Join(t.TempDir(), "state")
	// What serve leaves in a state with nothing in it yet.
	for _, dir := range []string{"run", "certs"} {
		if err := state.MkdirAll(filepath.Join(root, dir)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "run", "status.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), state.OpenDir(root, time.Second), bytes.NewReader(archive), RestoreOptions{Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	if res.ReplacesState || res.PreviousState != "" {
		t.Errorf("result: %+v", res)
	}
	if got := siblings(t, root); len(got) != 0 {
		t.Errorf("left beside the target: %v", got)
	}
}

func TestMissingCA(t *testing.T) {
	archive := archiveOf(t, newState(t, false, "web"), "")
	target := state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second)
	_, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Now: now0})
	if err == nil || fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "no management CA") || !strings.Contains(fault.HintOf(err), "agent env") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(target.Root()); !os.IsNotExist(err) {
		t.Errorf("a refused restore created the target: %v", err)
	}
	if got := siblings(t, target.Root()); len(got) != 0 {
		t.Errorf("left beside the target: %v", got)
	}
	// A dry run reports it instead of refusing.
	res, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{DryRun: true, Now: now0})
	if err != nil || res.CA != CANone {
		t.Fatalf("dry run: %v %+v", err, res)
	}
	res, err = Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{AllowMissingCA: true, Now: now0})
	if err != nil || res.CA != CANone {
		t.Fatalf("allowed: %v %+v", err, res)
	}
	if _, err := os.Stat(filepath.Join(target.Root(), filepath.FromSlash(management.CACertFile))); !os.IsNotExist(err) {
		t.Errorf("a CA appeared: %v", err)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	src := newState(t, true, "web", "api")
	archive := archiveOf(t, src, "")
	target := newState(t, true, "web", "old")
	// Make listener "web" differ.
	if err := state.Update(context.Background(), target, "test", func(tx *state.Tx) error {
		c := tx.Config
		c.Listeners[0].Upstream = "http://127.0.0.1:9"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	parent := snapshot(t, filepath.Dir(target.Root()))
	res, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{DryRun: true, Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, "parent of the target", parent, snapshot(t, filepath.Dir(target.Root())))
	want := Change{Added: []string{"api"}, Removed: []string{"old"}, Changed: []string{"web"}}
	if !res.DryRun || !res.ReplacesState || res.CA != CADifferent || !slices.Equal(res.Listeners.Added, want.Added) ||
		!slices.Equal(res.Listeners.Removed, want.Removed) || !slices.Equal(res.Listeners.Changed, want.Changed) {
		t.Errorf("result: %+v", res)
	}
	b, err := json.Marshal(res)
	if err != nil || !strings.Contains(string(b), `"mappings":{"added":[],"removed":[],"changed":[]}`) {
		t.Errorf("JSON: %s %v", b, err)
	}
}

// TestDryRunComparesMappingRecords: the mappings a restore would add,
// remove and change are read from the archive's records.
func TestDryRunComparesMappingRecords(t *testing.T) {
	ctx := context.Background()
	withMappings := func(hosts map[string]string) *state.Dir {
		d := newState(t, true, "web")
		if err := state.Update(ctx, d, "test", func(tx *state.Tx) error {
			for _, id := range slices.Sorted(maps.Keys(hosts)) {
				tx.Config.Mappings = append(tx.Config.Mappings, state.Mapping{ID: id, Listener: "web", Hosts: []string{hosts[id]}, Source: state.SourceManual})
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return d
	}
	archive := archiveOf(t, withMappings(map[string]string{"same": "s.example.com", "moved": "m.example.com", "new": "n.example.com"}), "")
	target := withMappings(map[string]string{"same": "s.example.com", "moved": "m.example.org", "gone": "g.example.com"})
	res, err := Restore(ctx, target, bytes.NewReader(archive), RestoreOptions{DryRun: true, Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Mappings.Added, []string{"new"}) || !slices.Equal(res.Mappings.Removed, []string{"gone"}) || !slices.Equal(res.Mappings.Changed, []string{"moved"}) {
		t.Errorf("mappings: %+v", res.Mappings)
	}
}

func TestLockedTargetIsNotTouched(t *testing.T) {
	archive := archiveOf(t, newState(t, true, "web"), "")
	target := newState(t, true, "old")
	holder := state.OpenDir(target.Root(), 0)
	unlock, err := holder.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	before := snapshot(t, target.Root())
	short := state.OpenDir(target.Root(), 100*time.Millisecond)
	_, err = Restore(context.Background(), short, bytes.NewReader(archive), RestoreOptions{Force: true, Now: now0})
	if fault.KindOf(err) != fault.Locked {
		t.Fatalf("err = %v, want locked", err)
	}
	sameSnapshot(t, "target", before, snapshot(t, target.Root()))
	if got := siblings(t, target.Root()); len(got) != 0 {
		t.Errorf("left beside the target: %v", got)
	}
}

func TestCreateRefusesLinksAndSpecialFiles(t *testing.T) {
	for _, tc := range []struct {
		desc, want string
		make       func(p string) error
	}{
		{"symlink", "symbolic link", func(p string) error { return os.Symlink("/etc/passwd", p) }},
		{"fifo", "not a regular file or directory", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			d := newState(t, true, "web")
			bad := filepath.Join(d.Root(), "certs", "odd")
			if err := tc.make(bad); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "b.tar.gz")
			_, err := CreateFile(context.Background(), d, out, CreateOptions{Now: now0})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), bad) {
				t.Fatalf("err = %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(filepath.Dir(out), "*")); len(left) != 0 {
				t.Errorf("a failed backup left %v", left)
			}
		})
	}
}

func TestCreateFile(t *testing.T) {
	d := newState(t, true, "web")
	out := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := CreateFile(context.Background(), d, out, CreateOptions{Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(out)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode %v, %v", info.Mode(), err)
	}
	b, _ := os.ReadFile(out)
	if got, _ := unpack(t, b); len(got.Files) != len(m.Files) {
		t.Errorf("file holds %d files, manifest %d", len(got.Files), len(m.Files))
	}
	// Inside the state directory it would back itself up.
	if _, err := CreateFile(context.Background(), d, filepath.Join(d.Root(), "b.tar.gz"), CreateOptions{Now: now0}); fault.KindOf(err) != fault.Invalid {
		t.Errorf("backup into the state: %v", err)
	}
	// A missing state is not created.
	missing := state.OpenDir(filepath.Join(t.TempDir(), "none"), time.Second)
	if _, err := Create(context.Background(), missing, &bytes.Buffer{}, CreateOptions{}); err == nil || !strings.Contains(err.Error(), "no state directory") {
		t.Errorf("missing state: %v", err)
	}
	if _, err := os.Stat(missing.Root()); !os.IsNotExist(err) {
		t.Errorf("backup created the state directory")
	}
}

func TestReadPassphraseFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ content, want string }{
		{"secret\n", "secret"},
		{"secret\r\n", "secret"},
		{"two words \n\n", "two words \n"},
		{"", ""},
		{"\n", ""},
	} {
		p := filepath.Join(dir, "pw")
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := ReadPassphraseFile(p)
		if tc.want == "" {
			if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "is empty") {
				t.Errorf("%q: err = %v", tc.content, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v", tc.content, got, err)
		}
	}
	if _, err := ReadPassphraseFile(filepath.Join(dir, "none")); fault.KindOf(err) != fault.Invalid {
		t.Errorf("missing file: %v", err)
	}
}
