package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"
)

// runWithin runs the binary like p2ptls, but kills it and fails the test
// when it has not ended within d: the cases here once blocked forever.
func runWithin(t *testing.T, d time.Duration, env []string, args ...string) result {
	t.Helper()
	cmd := command(env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("p2ptls %v still running after %v", args, d)
	}
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// oneSentence fails unless stderr is one error line and one hint line.
func oneSentence(t *testing.T, desc string, r result, code int, frag string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != code || !strings.Contains(r.stderr, frag) || len(lines) != 2 || !strings.HasPrefix(lines[1], "p2ptls: hint: ") {
		t.Errorf("%s: exit %d, want %d with %q and a hint; stderr:\n%s", desc, r.code, code, frag, r.stderr)
	}
}

// rewriteArchive returns a plain archive whose entries (the manifest
// included) went through edit, which may change a header and returns the
// body.
func rewriteArchive(t *testing.T, archive []byte, edit func(h *tar.Header, body []byte) []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	gw := gzip.NewWriter(&out)
	tw := tar.NewWriter(gw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		body = edit(h, body)
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestBackupSourcesMustBeRegularFiles: a FIFO, /dev/zero or a directory as
// the archive or as --passphrase-file is refused at once (exit 2, one
// sentence), for restore and backup, and changes nothing.
func TestBackupSourcesMustBeRegularFiles(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	files := t.TempDir()
	good := writeFile(t, files, "good.tar.gz", src.must(t, "backup"))
	fifo := filepath.Join(files, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	target := seededState(t)
	before := snapshot(t, target)
	env := []string{"CONFIG_DIR=" + target}
	out := filepath.Join(files, "out.tar.gz")
	for _, tc := range []struct {
		desc string
		env  []string
		args []string
		want string
	}{
		{"restore a FIFO", env, []string{"restore", fifo, "--force"}, "is a FIFO (named pipe), not a regular file"},
		{"restore /dev/zero", env, []string{"restore", "/dev/zero", "--force"}, "/dev/zero: it is a character device"},
		{"restore a directory", env, []string{"restore", files, "--force"}, "it is a directory"},
		{"restore with a FIFO passphrase file", env, []string{"restore", good, "--force", "--passphrase-file", fifo}, "is a FIFO"},
		{"restore with /dev/zero as passphrase file", env, []string{"restore", good, "--force", "--passphrase-file", "/dev/zero"}, "a character device"},
		{"restore with a directory as passphrase file", env, []string{"restore", good, "--force", "--passphrase-file", files}, "it is a directory"},
		{"backup with a FIFO passphrase file", src.env, []string{"backup", "--out", out, "--passphrase-file", fifo}, "is a FIFO"},
		{"backup with /dev/zero as passphrase file", src.env, []string{"backup", "--out", out, "--passphrase-file", "/dev/zero"}, "a character device"},
		{"backup with a directory as passphrase file", src.env, []string{"backup", "--out", out, "--passphrase-file", files}, "it is a directory"},
	} {
		r := runWithin(t, 30*time.Second, tc.env, tc.args...)
		oneSentence(t, tc.desc, r, 2, tc.want)
		assertSameSnapshot(t, before, snapshot(t, target))
		if left, _ := filepath.Glob(target + ".*"); len(left) != 0 {
			t.Errorf("%s: left %v", tc.desc, left)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s: a backup was written", tc.desc)
		}
	}
}

// TestBackupKeyModes: backup refuses a key that others may read, naming it
// and the chmod; restore writes keys 0600 whatever the archive says.
func TestBackupKeyModes(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	files := t.TempDir()
	key := filepath.Join(src.dir, "certs", "management", "ca.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(files, "b.tar.gz")
	r := p2ptls(t, src.env, "backup", "--out", out)
	oneSentence(t, "backup of a 0644 key", r, 1, "certs/management/ca.key (0644)")
	if !strings.Contains(r.stderr, "chmod 600 "+key) {
		t.Errorf("no chmod in the hint: %s", r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Error("a refused backup wrote its file")
	}
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	good := []byte(src.must(t, "backup"))

	// An archive that says ca.key and the DNS token are 0644, in its
	// manifest and its tar headers alike.
	hostile := rewriteArchive(t, good, func(h *tar.Header, body []byte) []byte {
		switch h.Name {
		case "state/certs/management/ca.key", "state/secrets/dns/cf.token":
			h.Mode = 0o644
		case "p2ptls-backup.json":
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			for _, f := range m["files"].([]any) {
				if f := f.(map[string]any); f["path"] == "certs/management/ca.key" || f["path"] == "secrets/dns/cf.token" {
					f["mode"] = "0644"
				}
			}
			b, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		return body
	})
	dst := filepath.Join(t.TempDir(), "restored")
	res := p2ptls(t, []string{"CONFIG_DIR=" + dst}, "restore", writeFile(t, files, "hostile.tar.gz", string(hostile)))
	if res.code != 0 || !strings.Contains(res.stderr, "certs/management/ca.key (0644)") {
		t.Fatalf("restore: exit %d %s", res.code, res.stderr)
	}
	for _, rel := range []string{"certs/management/ca.key", "secrets/dns/cf.token"} {
		if info, err := os.Stat(filepath.Join(dst, rel)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s restored %v %v, want 0600", rel, info.Mode(), err)
		}
	}
	if info, err := os.Stat(filepath.Join(dst, "certs", "management", "ca.crt")); err != nil || info.Mode().Perm() != 0o644 {
		t.Errorf("ca.crt restored %v %v, want 0644", info.Mode(), err)
	}
	// What was restored backs up again.
	if r := p2ptls(t, []string{"CONFIG_DIR=" + dst}, "backup", "--out", filepath.Join(files, "again.tar.gz")); r.code != 0 {
		t.Errorf("backup of the restored state: %s", r.stderr)
	}
}

// TestBackupClearTextWarning: without --passphrase-file, backup says on
// stderr, in one line, that the archive holds the keys in clear; --quiet
// silences it, and JSON on stdout is unaffected.
func TestBackupClearTextWarning(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	files := t.TempDir()
	pw := writeFile(t, files, "pw", "correct horse\n")
	const warning = "p2ptls: warning: the archive holds every private key and token in clear"
	for _, tc := range []struct {
		desc string
		args []string
		warn bool
	}{
		{"to a file", []string{"--out", filepath.Join(files, "a")}, true},
		{"to stdout", nil, true},
		{"JSON", []string{"--out", filepath.Join(files, "b"), "--output", "json"}, true},
		{"quiet", []string{"--out", filepath.Join(files, "c"), "--quiet"}, false},
		{"quiet to stdout", []string{"--quiet"}, false},
		{"encrypted", []string{"--out", filepath.Join(files, "d"), "--passphrase-file", pw}, false},
	} {
		r := p2ptls(t, src.env, append([]string{"backup"}, tc.args...)...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d %s", tc.desc, r.code, r.stderr)
		}
		if got := strings.Count(r.stderr, warning); got != map[bool]int{true: 1, false: 0}[tc.warn] {
			t.Errorf("%s: %d warnings; stderr:\n%s", tc.desc, got, r.stderr)
		}
		if tc.warn && !strings.Contains(r.stderr, warning+": keep it like the keys themselves, or encrypt it with --passphrase-file\n") {
			t.Errorf("%s: not one line: %q", tc.desc, r.stderr)
		}
		if slices.Contains(tc.args, "json") {
			var v map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v["file"] == nil {
				t.Errorf("%s: stdout is not the JSON summary: %v %q", tc.desc, err, r.stdout)
			}
		}
		if tc.args == nil || slices.Equal(tc.args, []string{"--quiet"}) {
			if !strings.HasPrefix(r.stdout, "\x1f\x8b") {
				t.Errorf("%s: stdout is not the archive", tc.desc)
			}
		}
	}
}

// TestRestoreRefusesBeforeTouching: archives whose p2ptls.toml does not
// load, with data after their end, with unknown manifest keys, or whose
// age header asks for too much scrypt work are refused (exit 2, one
// sentence) and the state stays as it was.
func TestRestoreRefusesBeforeTouching(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	files := t.TempDir()
	good := []byte(src.must(t, "backup"))

	broken, _ := newBackupState(t)
	cfg := filepath.Join(broken.dir, "p2ptls.toml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, append(b, "\n[[listeners]]\nname = \"Web!\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	badConfig := []byte(broken.must(t, "backup"))

	var second bytes.Buffer
	gw := gzip.NewWriter(&second)
	gw.Write([]byte("a second member"))
	gw.Close()
	unknownKey := rewriteArchive(t, good, func(h *tar.Header, body []byte) []byte {
		if h.Name == "p2ptls-backup.json" {
			return bytes.Replace(body, []byte("{"), []byte(`{"comment": "x",`), 1)
		}
		return body
	})

	// An age header at work factor 22, made from one at 2: encrypting at 22
	// would cost the test what the cap saves the restore.
	const pass = "correct horse"
	pw := writeFile(t, files, "pw", pass+"\n")
	rcpt, err := age.NewScryptRecipient(pass)
	if err != nil {
		t.Fatal(err)
	}
	rcpt.SetWorkFactor(2)
	var enc bytes.Buffer
	w, err := age.Encrypt(&enc, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(good)
	w.Close()
	wf22 := regexp.MustCompile(`(?m)^(-> scrypt \S+) 2$`).ReplaceAll(enc.Bytes(), []byte("$1 22"))
	if bytes.Equal(wf22, enc.Bytes()) {
		t.Fatal("no scrypt stanza to edit")
	}

	target := seededState(t)
	before := snapshot(t, target)
	env := []string{"CONFIG_DIR=" + target}
	for _, tc := range []struct {
		desc    string
		archive []byte
		extra   []string
		want    string
	}{
		{"p2ptls.toml does not load", badConfig, nil, "the backup's p2ptls.toml does not load"},
		{"a second gzip member", slices.Concat(good, second.Bytes()), nil, "after the end of its gzip stream"},
		{"junk after the archive", slices.Concat(good, []byte("junk")), nil, "after the end of its gzip stream"},
		{"an unknown manifest key", unknownKey, nil, `unknown field "comment"`},
		{"scrypt work factor 22", wf22, []string{"--passphrase-file", pw}, "asks for an scrypt work factor of 22"},
	} {
		for _, dry := range []bool{false, true} {
			args := append([]string{"restore", writeFile(t, files, "a.tar.gz", string(tc.archive)), "--force"}, tc.extra...)
			if dry {
				args = append(args, "--dry-run")
			}
			// Generous: without the cap, work factor 22 takes a minute
			// and 4 GiB; with it, no scrypt work at all.
			r := runWithin(t, 60*time.Second, env, args...)
			oneSentence(t, fmt.Sprintf("%s (dry run %v)", tc.desc, dry), r, 2, tc.want)
			assertSameSnapshot(t, before, snapshot(t, target))
			if left, _ := filepath.Glob(target + ".*"); len(left) != 0 {
				t.Errorf("%s: left %v", tc.desc, left)
			}
		}
	}
}

// TestRestoreKilledWhileStaging reproduces the leftover: a restore killed
// while it extracts leaves CONFIG_DIR.restore-tmp-* behind. doctor reports
// it with the fix, and the next restore removes it.
func TestRestoreKilledWhileStaging(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	archive := []byte(src.must(t, "backup"))
	target := seededState(t)
	before := snapshot(t, target)
	env := []string{"CONFIG_DIR=" + target}

	// Half the archive through a pipe that stays open: the restore has
	// made its staging directory and waits for the rest when it is killed.
	cmd := command(env, "restore", "-", "--force")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write(archive[:len(archive)/2]); err != nil {
		t.Fatal(err)
	}
	var staging []string
	eventually(t, 20*time.Second, func() error {
		staging, _ = filepath.Glob(target + ".restore-tmp-*")
		if len(staging) != 1 {
			return fmt.Errorf("staging directories: %v", staging)
		}
		if _, err := os.Stat(filepath.Join(staging[0], ".restore-staging")); err != nil {
			return err
		}
		return nil
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	stdin.Close()
	assertSameSnapshot(t, before, snapshot(t, target))
	if _, err := os.Stat(staging[0]); err != nil {
		t.Fatalf("the killed restore left nothing to clean: %v", err)
	}

	doc, _ := runDoctor(t, env)
	status, msg, hint := doc.check(t, "state.restore_staging")
	if status != "warn" || !strings.Contains(msg, staging[0]) || !strings.Contains(hint, "rm -rf "+staging[0]) {
		t.Errorf("doctor: %s %q hint %q", status, msg, hint)
	}

	r := runStdin(t, env, archive, "restore", "-", "--force")
	if r.code != 0 || !strings.Contains(r.stderr, "removed "+staging[0]+", left from an interrupted restore") {
		t.Fatalf("next restore: exit %d %s", r.code, r.stderr)
	}
	if left, _ := filepath.Glob(target + ".restore-tmp-*"); len(left) != 0 {
		t.Errorf("still left: %v", left)
	}
	doc, _ = runDoctor(t, env)
	if status, msg, _ := doc.check(t, "state.restore_staging"); status != "ok" {
		t.Errorf("doctor after the restore: %s %s", status, msg)
	}
}

// TestRestoreDanglingSymlinkHint: a CONFIG_DIR that is a symlink to nothing
// gets a hint that, followed, makes the restore work.
func TestRestoreDanglingSymlinkHint(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	files := t.TempDir()
	archive := writeFile(t, files, "a.tar.gz", src.must(t, "backup"))
	dir := t.TempDir()
	link := filepath.Join(dir, "state")
	dest := filepath.Join(dir, "volume", "p2ptls")
	if err := os.Symlink(dest, link); err != nil {
		t.Fatal(err)
	}
	env := []string{"CONFIG_DIR=" + link}
	r := p2ptls(t, env, "restore", archive)
	oneSentence(t, "dangling symlink", r, 1, "is a symbolic link to "+dest+", which does not exist")
	m := regexp.MustCompile(`mkdir -p -m 700 (\S+)\)`).FindStringSubmatch(r.stderr)
	if m == nil || m[1] != dest {
		t.Fatalf("the hint names no mkdir of %s: %s", dest, r.stderr)
	}
	if err := exec.Command("mkdir", "-p", "-m", "700", m[1]).Run(); err != nil {
		t.Fatal(err)
	}
	if r := p2ptls(t, env, "restore", archive); r.code != 0 {
		t.Fatalf("after following the hint: exit %d %s", r.code, r.stderr)
	}
	assertSameSnapshot(t, stateSnapshot(t, src.dir), stateSnapshot(t, dest))
}
