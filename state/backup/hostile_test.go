package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
)

// lowWorkFactor keeps the tests' own encryption cheap; a restore accepts
// any factor up to ScryptWorkFactor.
const lowWorkFactor = 2

// encryptAt age-encrypts plain with passphrase at scrypt work factor logN.
func encryptAt(t testing.TB, plain []byte, passphrase string, logN int) []byte {
	t.Helper()
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		t.Fatal(err)
	}
	r.SetWorkFactor(logN)
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gunzip returns the tar stream inside a plain archive.
func gunzip(t testing.TB, archive []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// withModes returns the good archive with the given files' modes changed
// in both the manifest and the tar headers: consistent, so only the mode
// rule can stop them.
func withModes(t *testing.T, good []byte, modes map[string]fs.FileMode) []byte {
	t.Helper()
	m, entries := unpack(t, good)
	for i, f := range m.Files {
		if mode, ok := modes[f.Path]; ok {
			m.Files[i].Mode = formatMode(mode)
		}
	}
	for i, e := range entries {
		if mode, ok := modes[strings.TrimPrefix(e.hdr.Name, statePrefix)]; ok {
			entries[i].hdr.Mode = int64(mode)
		}
	}
	return pack(t, m, entries)
}

func TestIsCertificate(t *testing.T) {
	for rel, want := range map[string]bool{
		management.CACertFile:                           true,
		management.ServerCertFile:                       true,
		"certs/public/app/cert.pem":                     true,
		"acme/accounts/acme.test-0a1b2c3d/ca.pem":       true,
		management.CAKeyFile:                            false,
		management.ServerKeyFile:                        false,
		"certs/public/app/key.pem":                      false,
		"certs/public/app/meta.toml":                    false,
		"certs/public/cert.pem":                         false, // not in a mapping's directory
		"certs/public/app/sub/cert.pem":                 false,
		"acme/accounts/acme.test-0a1b2c3d/key.pem":      false,
		"acme/accounts/acme.test-0a1b2c3d/account.toml": false,
		"secrets/dns/cf.token":                          false,
		state.ConfigFile:                                false,
		"admin-tokens.toml":                             false,
		"notes.txt":                                     false, // not p2ptls's: treated as a secret
	} {
		if got := IsCertificate(rel); got != want {
			t.Errorf("IsCertificate(%q) = %v, want %v", rel, got, want)
		}
	}
}

// TestRestoreTightensModes: whatever the archive says, keys and secrets
// are restored 0600 and certificates at most 0644, with a warning.
func TestRestoreTightensModes(t *testing.T) {
	src := newState(t, true, "web")
	hostile := withModes(t, archiveOf(t, src, ""), map[string]fs.FileMode{
		management.CAKeyFile:     0o644,
		"secrets/dns/cf.token":   0o666,
		state.ConfigFile:         0o640,
		management.CACertFile:    0o666,
		management.ServerKeyFile: 0o400, // stricter than 0600: restored 0600 without a warning
	})
	dst := state.OpenDir(filepath.Join(t.TempDir(), "restored"), time.Second)
	res, err := Restore(context.Background(), dst, bytes.NewReader(hostile), RestoreOptions{Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]fs.FileMode{
		management.CAKeyFile:      0o600,
		"secrets/dns/cf.token":    0o600,
		state.ConfigFile:          0o600,
		management.CACertFile:     0o644,
		management.ServerKeyFile:  0o600,
		management.ServerCertFile: 0o644,
	} {
		info, err := os.Stat(filepath.Join(dst.Root(), filepath.FromSlash(rel)))
		if err != nil || info.Mode().Perm() != want {
			t.Errorf("%s restored %v (%v), want %04o", rel, info.Mode(), err, want)
		}
	}
	w := strings.Join(res.Warnings, "\n")
	for _, frag := range []string{management.CAKeyFile + " (0644)", "secrets/dns/cf.token (0666)", state.ConfigFile + " (0640)", management.CACertFile + " (0666)"} {
		if !strings.Contains(w, frag) {
			t.Errorf("warnings lack %q: %s", frag, w)
		}
	}
	if strings.Contains(w, management.ServerKeyFile) {
		t.Errorf("a stricter mode was warned about: %s", w)
	}
}

// TestBackupRefusesLooseSecrets: a key or secret that group or others may
// read is refused by name with the chmod that fixes it; a certificate at
// 0644 and a key at 0400 are fine.
func TestBackupRefusesLooseSecrets(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		mode fs.FileMode
		ok   bool
	}{
		{management.CAKeyFile, 0o644, false},
		{management.CAKeyFile, 0o640, false},
		{"secrets/dns/cf.token", 0o604, false},
		{state.ConfigFile, 0o644, false},
		{management.CAKeyFile, 0o400, true},
		{management.CACertFile, 0o644, true},
	} {
		t.Run(fmt.Sprintf("%s %04o", tc.rel, tc.mode), func(t *testing.T) {
			src := newState(t, true, "web")
			p := filepath.Join(src.Root(), filepath.FromSlash(tc.rel))
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			_, err := Create(context.Background(), src, &buf, CreateOptions{Now: now0})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || fault.KindOf(err) != fault.Failure || !strings.Contains(err.Error(), fmt.Sprintf("%s (%04o)", tc.rel, tc.mode)) {
				t.Fatalf("err = %v (kind %v)", err, fault.KindOf(err))
			}
			if h := fault.HintOf(err); !strings.Contains(h, "chmod 600 "+p) {
				t.Errorf("hint %q", h)
			}
			if buf.Len() != 0 {
				t.Errorf("a refused backup wrote %d bytes", buf.Len())
			}
			// The hint fixes it.
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Create(context.Background(), src, io.Discard, CreateOptions{Now: now0}); err != nil {
				t.Errorf("after chmod 600: %v", err)
			}
		})
	}
}

// refused restores archive over a state with --force, and with --dry-run,
// and checks that it is refused as bad input with a hint, leaving the
// target and its parent exactly as they were.
func refused(t *testing.T, archive []byte, passphrase, want string) {
	t.Helper()
	target := newState(t, true, "other")
	before := snapshot(t, target.Root())
	for _, dry := range []bool{false, true} {
		_, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Force: true, DryRun: dry, Passphrase: passphrase, Now: now0})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("dry run %v: err = %v, want %q", dry, err, want)
		}
		if fault.KindOf(err) != fault.Invalid || fault.HintOf(err) == "" {
			t.Errorf("dry run %v: kind %v, hint %q; want invalid (exit 2) with a hint", dry, fault.KindOf(err), fault.HintOf(err))
		}
	}
	sameSnapshot(t, "target", before, snapshot(t, target.Root()))
	if got := siblings(t, target.Root()); len(got) != 0 {
		t.Errorf("left beside the target: %v", got)
	}
}

// TestTrailingDataAndStrictManifest: nothing may follow the archive, in any
// layer, and the manifest holds only what this build knows.
func TestTrailingDataAndStrictManifest(t *testing.T) {
	src := newState(t, true, "web")
	good := archiveOf(t, src, "")
	tarball := gunzip(t, good)
	m, entries := unpack(t, good)
	manifestJSON := func(edit func(string) string) []byte {
		return pack(t, []byte(edit(string(mustJSON(t, m)))), entries)
	}
	const pass = "correct horse"
	junkInTar := gzipped(t, append(slices.Clone(tarball), "junk"...))
	for _, tc := range []struct {
		desc, passphrase string
		archive          []byte
		want             string
	}{
		{"a second gzip member", "", slices.Concat(good, gzipped(t, []byte("second member"))), "after the end of its gzip stream"},
		{"a second copy of the archive", "", slices.Concat(good, good), "after the end of its gzip stream"},
		{"junk after the gzip stream", "", slices.Concat(good, []byte("junk")), "after the end of its gzip stream"},
		{"one zero byte after the gzip stream", "", slices.Concat(good, []byte{0}), "after the end of its gzip stream"},
		{"junk after the tar end inside the gzip stream", "", junkInTar, "after the end of its tar archive"},
		{"zero padding after the tar end", "", gzipped(t, append(slices.Clone(tarball), make([]byte, 10240)...)), "after the end of its tar archive"},
		{"an unknown manifest key", "", manifestJSON(func(s string) string { return strings.Replace(s, "{", `{"extra":true,`, 1) }), `unknown field "extra"`},
		{"an unknown key in a file record", "", manifestJSON(func(s string) string { return strings.Replace(s, `"sha256"`, `"owner":"root","sha256"`, 1) }), `unknown field "owner"`},
		{"two manifests in one entry", "", manifestJSON(func(s string) string { return s + "{}" }), "more than one JSON object"},
		{"encrypted: junk inside", pass, encryptAt(t, junkInTar, pass, lowWorkFactor), "after the end of its tar archive"},
		{"encrypted: a second gzip member inside", pass, encryptAt(t, slices.Concat(good, good), pass, lowWorkFactor), "after the end of its gzip stream"},
		{"encrypted: junk after the age stream", pass, slices.Concat(encryptAt(t, good, pass, lowWorkFactor), []byte("junk")), "not a p2ptls backup or damaged"},
	} {
		t.Run(tc.desc, func(t *testing.T) { refused(t, tc.archive, tc.passphrase, tc.want) })
	}
	// The same archive without the additions restores, encrypted or not.
	for _, a := range []struct {
		archive    []byte
		passphrase string
	}{{good, ""}, {encryptAt(t, good, pass, lowWorkFactor), pass}} {
		dst := state.OpenDir(filepath.Join(t.TempDir(), "restored"), time.Second)
		if _, err := Restore(context.Background(), dst, bytes.NewReader(a.archive), RestoreOptions{Passphrase: a.passphrase, Now: now0}); err != nil {
			t.Errorf("the unchanged archive: %v", err)
		}
	}
}

// TestInvalidConfigIsRefused: an archive whose p2ptls.toml does not parse
// or does not validate never replaces a state.
func TestInvalidConfigIsRefused(t *testing.T) {
	src := newState(t, true, "web")
	for _, tc := range []struct{ desc, config, want string }{
		{"does not parse", "schema_version = 1\n[[listeners]\n", "does not load"},
		{"does not validate", "schema_version = 1\n[[listeners]]\nname = \"Web!\"\naddr = \":443\"\n", "does not load"},
		{"unknown field", "schema_version = 1\nbogus = 1\n", "does not load"},
		{"another schema", "schema_version = 99\n", "does not load"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			mustWrite(t, src, state.ConfigFile, tc.config, state.SecretMode)
			refused(t, archiveOf(t, src, ""), "", tc.want)
		})
	}
}

// TestInvalidRecordIsRefused: an archive whose mapping record does not
// load never replaces a state, and the refusal names the record.
func TestInvalidRecordIsRefused(t *testing.T) {
	for _, tc := range []struct{ desc, name, content, want string }{
		{"unknown field", state.RecordName("m"), "id = \"m\"\nport = 1\n", `the backup's mappings/m.toml does not load: line 2: unknown field "port"`},
		{"missing listener", state.RecordName("m"), "id = \"m\"\nlistener = \"nope\"\nhosts = [\"m.example.com\"]\nsource = \"manual\"\n", `the backup's mappings/m.toml does not load: line 2, field "listener"`},
		{"name not an id", state.RecordsDir + "/M.toml", "id = \"m\"\n", "the backup's mappings/M.toml does not load"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			d := newState(t, true, "web")
			mustWrite(t, d, tc.name, tc.content, state.SecretMode)
			refused(t, archiveOf(t, d, ""), "", tc.want)
		})
	}
}

// TestWorkFactorCap: an encrypted archive whose header asks for more scrypt
// work than backup writes is refused before any of it is done. It is
// crafted from an archive at a low factor by editing the header: the
// refusal must come before the header's MAC is even looked at.
func TestWorkFactorCap(t *testing.T) {
	src := newState(t, true, "web")
	const pass = "correct horse"
	low := encryptAt(t, archiveOf(t, src, ""), pass, lowWorkFactor)
	stanza := regexp.MustCompile(`(?m)^(-> scrypt \S+) ` + fmt.Sprint(lowWorkFactor) + `$`)
	if !stanza.Match(low) {
		t.Fatalf("no scrypt stanza in %q", low[:100])
	}
	// 19 first: without the cap it costs 512 MiB and a few seconds, not
	// the 4 GiB of 22, and fails this test before 22 is tried.
	for _, logN := range []int{ScryptWorkFactor + 1, 22, 30} {
		t.Run(fmt.Sprint(logN), func(t *testing.T) {
			crafted := stanza.ReplaceAll(low, []byte(fmt.Sprintf("$1 %d", logN)))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			refused(t, crafted, pass, fmt.Sprintf("asks for an scrypt work factor of %d; a restore accepts at most %d", logN, ScryptWorkFactor))
			runtime.ReadMemStats(&after)
			// scrypt at N=2^19 allocates 512 MiB; a refusal before it, a
			// few MiB for the states the check compares.
			if d := after.TotalAlloc - before.TotalAlloc; d > 256<<20 {
				t.Fatalf("the refusal allocated %d MiB: scrypt ran", d>>20)
			}
		})
	}
	// Up to the cap is accepted, and that is what backup writes.
	if !bytes.Contains(archiveOf(t, src, pass), []byte(fmt.Sprintf(" %d\n", ScryptWorkFactor))) {
		t.Error("backup does not write the work factor the cap allows")
	}
	dst := state.OpenDir(filepath.Join(t.TempDir(), "restored"), time.Second)
	if _, err := Restore(context.Background(), dst, bytes.NewReader(low), RestoreOptions{Passphrase: pass, Now: now0}); err != nil {
		t.Errorf("work factor %d: %v", lowWorkFactor, err)
	}
}

// makeStaging makes a staging directory beside target as a restore
// does: the directory and its marker, flocked while the restore runs.
// release is what the kernel does when the restore dies.
func makeStaging(t *testing.T, target string) (dir string, release func()) {
	t.Helper()
	dir = target + state.RestoreStagingInfix + fmt.Sprintf("%012x", len(siblings(t, target))+1)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, state.RestoreStagingMarker), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	return dir, func() { f.Close() }
}

// deadStaging leaves a staging directory as a restore killed while
// extracting does: its marker, no flock, some of the archive's keys.
func deadStaging(t *testing.T, target string) string {
	t.Helper()
	dir, release := makeStaging(t, target)
	if err := os.MkdirAll(filepath.Join(dir, "certs", "management"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(management.CAKeyFile)), []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	release() // what the kernel does when the restore dies
	return dir
}

// TestStaleStagingIsRemoved: the next restore removes the staging
// directories of dead restores, leaves a live restore's alone, and never
// removes one without the marker (it may be the previous state).
func TestStaleStagingIsRemoved(t *testing.T) {
	src := newState(t, true, "web")
	archive := archiveOf(t, src, "")
	target := newState(t, true, "other")
	root := target.Root()

	dead := deadStaging(t, root)
	liveDir, release := makeStaging(t, root) // a restore running meanwhile
	defer release()
	previous := root + state.RestoreStagingInfix + "0123456789ab" // no marker
	if err := os.MkdirAll(filepath.Join(previous, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	want := []state.RestoreLeftover{{Path: dead, Kind: state.LeftoverStaging}, {Path: liveDir, Kind: state.LeftoverActive}, {Path: previous, Kind: state.LeftoverUnknown}}
	slices.SortFunc(want, func(a, b state.RestoreLeftover) int { return strings.Compare(a.Path, b.Path) })
	if got := state.RestoreLeftovers(root); !slices.Equal(got, want) {
		t.Fatalf("Leftovers = %v, want %v", got, want)
	}

	// A dry run only reports.
	res, err := Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Force: true, DryRun: true, Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); err != nil || !strings.Contains(strings.Join(res.Warnings, "\n"), "rm -rf "+dead) {
		t.Errorf("dry run: %v; warnings %q", err, res.Warnings)
	}

	res, err = Restore(context.Background(), target, bytes.NewReader(archive), RestoreOptions{Force: true, Now: now0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead restore's staging directory is still there: %v", err)
	}
	w := strings.Join(res.Warnings, "\n")
	if !strings.Contains(w, "removed "+dead) || !strings.Contains(w, previous+" is left from an interrupted restore") || strings.Contains(w, liveDir) {
		t.Errorf("warnings: %s", w)
	}
	for _, d := range []string{liveDir, previous} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
	// This restore's own staging directory is gone too: only the live one,
	// the unmarked one and the kept previous state are beside the target.
	var stagingLeft []string
	for _, s := range siblings(t, root) {
		if strings.Contains(s, state.RestoreStagingInfix) {
			stagingLeft = append(stagingLeft, s)
		}
	}
	slices.Sort(stagingLeft)
	wantLeft := []string{liveDir, previous}
	slices.Sort(wantLeft)
	if !slices.Equal(stagingLeft, wantLeft) {
		t.Errorf("beside the target: %v, want %v", stagingLeft, wantLeft)
	}
	// The restored state holds no marker.
	if _, err := os.Lstat(filepath.Join(root, state.RestoreStagingMarker)); !os.IsNotExist(err) {
		t.Errorf("the restored state holds %s: %v", state.RestoreStagingMarker, err)
	}
}

// TestDanglingSymlinkTarget: a CONFIG_DIR that is a symlink to nothing is
// refused before anything is read, with a hint that fixes it.
func TestDanglingSymlinkTarget(t *testing.T) {
	src := newState(t, true, "web")
	archive := archiveOf(t, src, "")
	dir := t.TempDir()
	dest := filepath.Join(dir, "real", "state")
	link := filepath.Join(dir, "state")
	if err := os.Symlink(filepath.Join("real", "state"), link); err != nil {
		t.Fatal(err)
	}
	_, err := Restore(context.Background(), state.OpenDir(link, time.Second), bytes.NewReader(archive), RestoreOptions{Now: now0})
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link to "+dest+", which does not exist") {
		t.Fatalf("err = %v", err)
	}
	hint := fault.HintOf(err)
	if !strings.Contains(hint, "mkdir -p -m 700 "+dest) {
		t.Fatalf("hint %q", hint)
	}
	if got, _ := filepath.Glob(filepath.Join(dir, "*")); len(got) != 1 {
		t.Errorf("the refusal wrote %v", got)
	}
	// Doing what the hint says makes the restore work, into the link's
	// destination.
	if err := os.MkdirAll(dest, 0o700); err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), state.OpenDir(link, time.Second), bytes.NewReader(archive), RestoreOptions{Now: now0})
	if err != nil {
		t.Fatalf("after the hint: %v", err)
	}
	if res.Target != dest {
		t.Errorf("restored into %s, want %s", res.Target, dest)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", info, err)
	}
}

// TestPassphraseFileMustBeRegular: a FIFO, a device and a directory are
// refused at once, as bad input.
func TestPassphraseFileMustBeRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 64<<10+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{fifo, "a FIFO"},
		{"/dev/zero", "a character device"},
		{dir, "a directory"},
		{big, "larger than the 64 KiB limit"},
	} {
		done := make(chan error, 1)
		go func() { _, err := ReadPassphraseFile(tc.path); done <- err }()
		select {
		case err := <-done:
			if fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err = %v", tc.path, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: still reading after 20 s", tc.path)
		}
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
