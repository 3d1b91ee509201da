package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// backupTokenEnv holds the made-up DNS API token of newBackupState.
const backupTokenEnv = "CF_TOKEN=abcdefghijklmnop"

// newBackupState is a state with everything a backup carries: a listener,
// a self-signed mapping, a DNS credential, an admin token and the management
// CA. It returns the state and the admin token.
func newBackupState(t *testing.T) (*publicServe, string) {
	t.Helper()
	p := newPublicState(t)
	p.env = append(p.env, backupTokenEnv)
	p.must(t, "listener", "add", "web", "--addr", freeAddr(t))
	p.must(t, "mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--id", "app")
	p.must(t, "dns-credential", "add", "cf", "--api-token-env", "CF_TOKEN")
	p.must(t, "ca", "init")
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(p.must(t, "admin", "token", "create", "ops", "--output", "json")), &created); err != nil {
		t.Fatal(err)
	}
	return p, created.Token
}

// stateView is what the CLI shows of a state, with its directory's path
// taken out so that two directories compare.
func stateView(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ca", "show"}, {"listener", "list"}, {"mapping", "list"}, {"dns-credential", "list"}, {"admin", "token", "list"},
	} {
		r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, append(args, "--output", "json")...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		b.WriteString(strings.ReplaceAll(r.stdout, dir, "$CONFIG_DIR"))
	}
	return b.String()
}

// stateSnapshot is snapshot without what a restore rewrites (the revision)
// or leaves to the directory's serve (run/, the lock).
func stateSnapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := snapshot(t, dir)
	for p := range snap {
		if p == "p2ptls.rev" || p == "p2ptls.lock" || p == "run" || strings.HasPrefix(p, "run/") {
			delete(snap, p)
		}
	}
	return snap
}

// runStdin runs the binary with stdin.
func runStdin(t *testing.T, env []string, stdin []byte, args ...string) result {
	t.Helper()
	cmd := command(env, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	t.Parallel()
	src, token := newBackupState(t)
	src.serve = startServe(t, src.env) // a backup is consistent while serve runs
	files := t.TempDir()
	archive := filepath.Join(files, "state.tar.gz")
	out := src.must(t, "backup", "--out", archive)
	if !strings.Contains(out, "wrote the backup "+archive) || !strings.Contains(out, "management CA ") {
		t.Errorf("backup said %q", out)
	}
	if info, err := os.Stat(archive); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v", info, err)
	}
	r := p2ptls(t, src.env, "backup", "--out", filepath.Join(files, "state.json.tar.gz"), "--output", "json")
	var summary struct {
		File          string `json:"file"`
		Files         int    `json:"files"`
		CAFingerprint string `json:"ca_fingerprint_sha256"`
		Encrypted     bool   `json:"encrypted"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &summary) != nil || summary.Files < 8 || summary.CAFingerprint == "" || summary.Encrypted {
		t.Errorf("backup --output json: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	// To standard output, for backup scripts: the archive and nothing else.
	piped := p2ptls(t, src.env, "backup")
	if piped.code != 0 || !strings.HasPrefix(piped.stdout, "\x1f\x8b") || !strings.Contains(piped.stderr, "wrote the backup to standard output") {
		t.Fatalf("backup to stdout: exit %d, stderr %s", piped.code, piped.stderr)
	}
	src.serve.stop(t)

	dst := filepath.Join(t.TempDir(), "restored")
	dstEnv := []string{"CONFIG_DIR=" + dst, "MANAGEMENT_LISTEN=" + freeAddr(t)}
	r = p2ptls(t, dstEnv, "restore", archive)
	if r.code != 0 || !strings.Contains(r.stdout, "restored") {
		t.Fatalf("restore: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if got, want := stateView(t, dst), stateView(t, src.dir); got != want {
		t.Errorf("restored state shows\n%s\nwant\n%s", got, want)
	}
	assertSameSnapshot(t, stateSnapshot(t, src.dir), stateSnapshot(t, dst))
	for _, f := range []string{"secrets/admin-tokens.toml", "secrets/dns/cf.token", "certs/management/ca.key", "certs/public/app/key.pem", "p2ptls.toml"} {
		if info, err := os.Stat(filepath.Join(dst, f)); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, info, err)
		}
	}
	// The stdout archive restores the same, from standard input.
	dst2 := filepath.Join(t.TempDir(), "restored")
	if r := runStdin(t, []string{"CONFIG_DIR=" + dst2}, []byte(piped.stdout), "restore", "-"); r.code != 0 {
		t.Fatalf("restore -: exit %d %s", r.code, r.stderr)
	}
	assertSameSnapshot(t, stateSnapshot(t, src.dir), stateSnapshot(t, dst2))

	// serve on the restored state: agents keep trusting it with the CA they
	// had, the admin token still works, and the mapping serves its certificate.
	srcCA, _, _, _ := mgmtFiles(src.dir)
	startServe(t, dstEnv)
	mgmtURL := "https://" + strings.TrimPrefix(dstEnv[1], "MANAGEMENT_LISTEN=")
	if r := p2ptls(t, nil, "agent", "check", "--url", mgmtURL, "--ca-file", srcCA); r.code != 0 {
		t.Errorf("agent check with the original CA: exit %d %s", r.code, r.stderr)
	}
	client := httpsClient(caPool(t, srcCA))
	if code, _ := get(t, client, mgmtURL+"/api/v1/status", "Bearer "+token); code != 200 {
		t.Errorf("the original admin token: status %d", code)
	}
	var listeners []listenerJSON
	if err := json.Unmarshal([]byte(p2ptls(t, dstEnv, "listener", "list", "--output", "json").stdout), &listeners); err != nil || len(listeners) != 1 {
		t.Fatalf("listeners: %v %v", listeners, err)
	}
	serial := fileSerial(t, filepath.Join(src.dir, "certs", "public", "app", "cert.pem"))
	eventually(t, 5*time.Second, func() error { return serves(listeners[0].Addr, "app.example.test", serial) })
}

func TestEncryptedBackupThroughPipes(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	dir := t.TempDir()
	pw := writeFile(t, dir, "pw", "correct horse battery staple\n")
	r := p2ptls(t, src.env, "backup", "--out", "-", "--passphrase-file", pw)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "age-encryption.org/v1\n") || strings.Contains(r.stdout, "BEGIN") {
		t.Fatalf("encrypted backup: exit %d, starts %q, %s", r.code, r.stdout[:min(len(r.stdout), 30)], r.stderr)
	}
	if strings.Contains(r.stderr, "correct horse") {
		t.Error("the passphrase was printed")
	}
	dst := filepath.Join(t.TempDir(), "restored")
	env := []string{"CONFIG_DIR=" + dst}
	if res := runStdin(t, env, []byte(r.stdout), "restore", "-", "--passphrase-file", pw, "--dry-run", "--output", "json"); res.code != 0 ||
		!strings.Contains(res.stdout, `"encrypted": true`) || !strings.Contains(res.stdout, `"ca": "restored"`) {
		t.Fatalf("dry run: exit %d %s %s", res.code, res.stdout, res.stderr)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("a dry run created %s", dst)
	}
	if res := runStdin(t, env, []byte(r.stdout), "restore", "-", "--passphrase-file", pw); res.code != 0 {
		t.Fatalf("restore: exit %d %s", res.code, res.stderr)
	}
	assertSameSnapshot(t, stateSnapshot(t, src.dir), stateSnapshot(t, dst))
}

// withEntry returns a plain archive with one more tar entry at its end.
func withEntry(t *testing.T, archive []byte, hdr tar.Header, body string) []byte {
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
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	hdr.Size = int64(len(body))
	if err := tw.WriteHeader(&hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// flipDamaging is archive with the low bit of one byte flipped: of the
// bytes from the middle on, the first whose flip makes gzip fail or read
// other bytes. Deflate ignores a few bits (the padding before a stored
// block): flipped there, which the archive's middle byte was about once in
// seventy backups, an archive still holds exactly what it held, and a
// restore rightly takes it.
func flipDamaging(t *testing.T, archive []byte) []byte {
	t.Helper()
	read := func(b []byte) ([]byte, error) {
		gz, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(gz)
	}
	want, err := read(archive)
	if err != nil {
		t.Fatal(err)
	}
	for at := len(archive) / 2; at < len(archive); at++ {
		b := bytes.Clone(archive)
		b[at] ^= 0x01
		if got, err := read(b); err != nil || !bytes.Equal(got, want) {
			return b
		}
	}
	t.Fatal("no flip in the archive's second half changes what it holds")
	return nil
}

func TestRestoreRefusalsLeaveStateUnchanged(t *testing.T) {
	t.Parallel()
	src, _ := newBackupState(t)
	files := t.TempDir()
	good := []byte(src.must(t, "backup"))
	pw := writeFile(t, files, "pw", "right\n")
	wrongPW := writeFile(t, files, "wrong-pw", "wrong\n")
	emptyPW := writeFile(t, files, "empty-pw", "")
	encrypted := []byte(src.must(t, "backup", "--passphrase-file", pw))
	noCA := seededState(t)
	withoutCA := []byte(p2ptls(t, []string{"CONFIG_DIR=" + noCA}, "backup").stdout)
	flipped := flipDamaging(t, good)
	archive := func(name string, b []byte) string { return writeFile(t, files, name, string(b)) }

	tests := []struct {
		desc   string
		args   []string
		code   int
		stderr string
	}{
		{"truncated", []string{archive("truncated", good[:len(good)/2]), "--force"}, 2, "not a p2ptls backup or damaged"},
		{"truncated at the end", []string{archive("truncated-end", good[:len(good)-3]), "--force"}, 2, "not a p2ptls backup or damaged"},
		{"one flipped byte", []string{archive("flipped", flipped), "--force"}, 2, "not a p2ptls backup or damaged"},
		{"path traversal", []string{archive("traversal", withEntry(t, good, tar.Header{Typeflag: tar.TypeReg, Name: "../evil", Mode: 0o600}, "x")), "--force"}, 2, "leads out of the state directory"},
		{"absolute path", []string{archive("absolute", withEntry(t, good, tar.Header{Typeflag: tar.TypeReg, Name: "/tmp/evil", Mode: 0o600}, "x")), "--force"}, 2, "absolute path"},
		{"symlink", []string{archive("symlink", withEntry(t, good, tar.Header{Typeflag: tar.TypeSymlink, Name: "state/certs/evil", Linkname: "/etc"}, "")), "--force"}, 2, "symbolic link"},
		{"not a backup", []string{writeFile(t, files, "notes.txt", "hello\n"), "--force"}, 2, "neither a gzip archive nor age-encrypted"},
		{"wrong passphrase", []string{archive("enc", encrypted), "--force", "--passphrase-file", wrongPW}, 2, "wrong passphrase"},
		{"encrypted without passphrase", []string{archive("enc", encrypted), "--force"}, 2, "the backup is encrypted and needs its passphrase"},
		{"empty passphrase file", []string{archive("enc", encrypted), "--force", "--passphrase-file", emptyPW}, 2, "is empty"},
		{"missing management CA", []string{archive("no-ca", withoutCA), "--force"}, 2, "no management CA"},
		{"state not empty", []string{archive("good", good)}, 1, "is not empty"},
		{"no such file", []string{filepath.Join(files, "none"), "--force"}, 2, "cannot read the backup"},
		{"no file", nil, 2, "needs the backup FILE"},
	}
	target := seededState(t)
	before := snapshot(t, target)
	env := []string{"CONFIG_DIR=" + target}
	for _, tc := range tests {
		r := p2ptls(t, env, append([]string{"restore"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) || !strings.Contains(r.stderr, "p2ptls: hint: ") {
			t.Errorf("%s: exit %d, want %d with %q; stderr:\n%s", tc.desc, r.code, tc.code, tc.stderr, r.stderr)
		}
		if strings.Count(strings.TrimSpace(r.stderr), "\n") != 1 {
			t.Errorf("%s: more than an error and a hint:\n%s", tc.desc, r.stderr)
		}
		assertSameSnapshot(t, before, snapshot(t, target))
		if left, _ := filepath.Glob(target + ".*"); len(left) != 0 {
			t.Errorf("%s: left %v", tc.desc, left)
		}
	}
	// The refused archives are fine with the flag that was missing.
	if r := p2ptls(t, env, "restore", archive("no-ca", withoutCA), "--force", "--allow-missing-management-ca"); r.code != 0 || !strings.Contains(r.stderr, "p2ptls agent env") {
		t.Errorf("--allow-missing-management-ca: exit %d %s", r.code, r.stderr)
	}

	// backup's own refusals.
	missing := filepath.Join(t.TempDir(), "none")
	for _, tc := range []struct {
		desc   string
		env    []string
		args   []string
		code   int
		stderr string
	}{
		{"JSON to stdout", src.env, []string{"backup", "--output", "json"}, 2, "cannot print JSON"},
		{"JSON to -", src.env, []string{"backup", "--out", "-", "--output", "json"}, 2, "cannot print JSON"},
		{"into the state", src.env, []string{"backup", "--out", filepath.Join(src.dir, "b.tar.gz")}, 2, "inside the state directory"},
		{"empty passphrase", src.env, []string{"backup", "--out", filepath.Join(files, "x"), "--passphrase-file", emptyPW}, 2, "is empty"},
		{"no state", []string{"CONFIG_DIR=" + missing}, []string{"backup", "--out", filepath.Join(files, "y")}, 1, "no state directory"},
	} {
		if r := p2ptls(t, tc.env, tc.args...); r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
			t.Errorf("%s: exit %d, want %d with %q; stdout %q stderr %s", tc.desc, r.code, tc.code, tc.stderr, r.stdout, r.stderr)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Error("backup created a missing state directory")
	}
	for _, f := range []string{"x", "y"} {
		if _, err := os.Stat(filepath.Join(files, f)); !os.IsNotExist(err) {
			t.Errorf("a refused backup wrote %s", f)
		}
	}
	// A state without a CA is backed up with a warning.
	if r := p2ptls(t, []string{"CONFIG_DIR=" + noCA}, "backup", "--out", filepath.Join(files, "z")); r.code != 0 || !strings.Contains(r.stderr, "warning: the state has no management CA") {
		t.Errorf("backup without CA: exit %d %s", r.code, r.stderr)
	}
}
