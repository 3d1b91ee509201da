package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// storeCopyOut is store copy's JSON output.
type storeCopyOut struct {
	From                string   `json:"from"`
	To                  string   `json:"to"`
	DryRun              bool     `json:"dry_run"`
	Files               int      `json:"files"`
	Bytes               int64    `json:"bytes"`
	CAFingerprintSHA256 string   `json:"ca_fingerprint_sha256"`
	CA                  string   `json:"ca"`
	ReplacesState       bool     `json:"replaces_state"`
	PreviousState       string   `json:"previous_state"`
	Verified            bool     `json:"verified"`
	Warnings            []string `json:"warnings"`
}

// caFingerprintOf is ca show's fingerprint of the state in dir.
func caFingerprintOf(t *testing.T, dir string) string {
	t.Helper()
	r := p2ptls(t, []string{"CONFIG_DIR=" + dir}, "ca", "show", "--output", "json")
	var show struct {
		CA struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		}
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &show) != nil || show.CA.FingerprintSHA256 == "" {
		t.Fatalf("ca show: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	return show.CA.FingerprintSHA256
}

// A copy into a new directory carries the whole state: the CLI shows the
// same CA, listeners, mappings, credentials and tokens, every file is
// there with its mode (keys 0600), and the source is unchanged.
func TestStoreCopyDirToDir(t *testing.T) {
	p, _ := newBackupState(t)
	dst := filepath.Join(t.TempDir(), "copy")
	before := snapshot(t, p.dir)
	r := p2ptls(t, nil, "store", "copy", "--from", p.dir, "--to", dst, "--output", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var out storeCopyOut
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("JSON: %v: %s", err, r.stdout)
	}
	fp := caFingerprintOf(t, p.dir)
	if out.From != p.dir || out.To != dst || !out.Verified || out.DryRun || out.Files == 0 || out.Bytes == 0 || out.CAFingerprintSHA256 != fp || out.CA != "restored" || out.PreviousState != "" {
		t.Errorf("output %+v", out)
	}
	assertSameSnapshot(t, before, snapshot(t, p.dir))
	assertSameSnapshot(t, stateSnapshot(t, p.dir), stateSnapshot(t, dst))
	if got, want := stateView(t, dst), stateView(t, p.dir); got != want {
		t.Errorf("the copy shows\n%s\nthe source\n%s", got, want)
	}
	info, err := os.Stat(filepath.Join(dst, "certs", "management", "ca.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("ca.key in the copy: %v, %v", info, err)
	}
}

// A state moves into etcd and back out unchanged: the CLI on the etcd
// store shows what it showed on the directory, and the copy out is the
// source file for file, modes included.
func TestStoreCopyThroughEtcd(t *testing.T) {
	p, _ := newBackupState(t)
	c := etcdtest.Start(t)
	url := c.URL("p2ptls/moved")
	r := p2ptls(t, nil, "store", "copy", "--from", p.dir, "--to", url, "--output", "json")
	if r.code != 0 {
		t.Fatalf("copy in: exit %d: %s", r.code, r.stderr)
	}
	var in storeCopyOut
	if err := json.Unmarshal([]byte(r.stdout), &in); err != nil || !in.Verified || in.To != url || in.Files == 0 {
		t.Fatalf("copy in: %v %+v", err, in)
	}
	env, _ := etcdEnv(t, url)
	for _, args := range [][]string{{"listener", "list"}, {"mapping", "list"}} {
		onEtcd, onDir := p2ptls(t, env, args...), p2ptls(t, []string{"CONFIG_DIR=" + p.dir}, args...)
		if onEtcd.code != 0 || onEtcd.stdout != onDir.stdout {
			t.Errorf("%v on etcd (exit %d):\n%s%s\non the directory:\n%s", args, onEtcd.code, onEtcd.stdout, onEtcd.stderr, onDir.stdout)
		}
	}
	// Into a store that holds a state only with --force.
	if r := p2ptls(t, nil, "store", "copy", "--from", p.dir, "--to", url); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("copy into a full etcd store: exit %d: %s", r.code, r.stderr)
	}
	out := filepath.Join(t.TempDir(), "out")
	if r := p2ptls(t, nil, "store", "copy", "--from", url, "--to", out); r.code != 0 {
		t.Fatalf("copy out: exit %d: %s", r.code, r.stderr)
	}
	assertSameSnapshot(t, stateSnapshot(t, p.dir), stateSnapshot(t, out))
	if got, want := caFingerprintOf(t, out), caFingerprintOf(t, p.dir); got != want {
		t.Errorf("CA %s after the round trip, want %s", got, want)
	}
}

// Relative paths are taken from the working directory, as --config-dir
// is; the table names both sides by their absolute paths.
func TestStoreCopyRelativePaths(t *testing.T) {
	p, _ := newBackupState(t)
	cmd := command(nil, "store", "copy", "--from", filepath.Base(p.dir), "--to", "copy")
	cmd.Dir = filepath.Dir(p.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	dst := filepath.Join(filepath.Dir(p.dir), "copy")
	for _, want := range []string{"copied ", p.dir, dst, caFingerprintOf(t, p.dir), "read every one back"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	assertSameSnapshot(t, stateSnapshot(t, p.dir), stateSnapshot(t, dst))
}

// --force replaces a destination's state and says where its old state is
// kept; --dry-run writes nothing anywhere.
func TestStoreCopyForceAndDryRun(t *testing.T) {
	p, _ := newBackupState(t)
	other := newPublicState(t)
	other.must(t, "listener", "add", "other", "--addr", freeAddr(t))
	other.must(t, "ca", "init")
	old := stateSnapshot(t, other.dir)

	base := filepath.Dir(other.dir)
	before, beforeSrc := snapshot(t, base), snapshot(t, p.dir)
	r := p2ptls(t, nil, "store", "copy", "--from", p.dir, "--to", other.dir, "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "dry run") || !strings.Contains(r.stdout, "nothing was written") || !strings.Contains(r.stderr, "needs --force") {
		t.Fatalf("dry run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	assertSameSnapshot(t, before, snapshot(t, base))
	assertSameSnapshot(t, beforeSrc, snapshot(t, p.dir))

	r = p2ptls(t, nil, "store", "copy", "--from", p.dir, "--to", other.dir, "--force")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	matches, _ := filepath.Glob(other.dir + ".pre-restore-*")
	if len(matches) != 1 || !strings.Contains(r.stdout, "kept in "+matches[0]) {
		t.Fatalf("kept %v; output:\n%s", matches, r.stdout)
	}
	if !strings.Contains(r.stderr, "not the one the destination had") {
		t.Errorf("no warning about the other CA: %s", r.stderr)
	}
	assertSameSnapshot(t, old, stateSnapshot(t, matches[0]))
	assertSameSnapshot(t, stateSnapshot(t, p.dir), stateSnapshot(t, other.dir))
}

// Bad input is one sentence with the documented exit code, and nothing
// is written, in the source, the destination or beside them.
func TestStoreCopyRefusals(t *testing.T) {
	p, _ := newBackupState(t)
	base := t.TempDir()
	full := filepath.Join(base, "full")
	if r := p2ptls(t, nil, "store", "copy", "--from", p.dir, "--to", full); r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(base, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	newDir := filepath.Join(base, "new")
	down := "127.0.0.1:" + strings.Split(freeAddr(t), ":")[1]
	tests := []struct {
		desc string
		args []string
		code int
		msg  string
	}{
		{"no --from", []string{"--to", newDir}, 2, "store copy needs --from"},
		{"no --to", []string{"--from", p.dir}, 2, "store copy needs --to"},
		{"an argument", []string{"--from", p.dir, "--to", newDir, "extra"}, 2, "takes no arguments"},
		{"the same path twice", []string{"--from", p.dir, "--to", p.dir}, 2, "is the source"},
		{"the same directory spelled otherwise", []string{"--from", p.dir, "--to", p.dir + "/./"}, 2, "is the source"},
		{"a destination inside the source", []string{"--from", p.dir, "--to", filepath.Join(p.dir, "x")}, 2, "inside the source"},
		{"a missing source", []string{"--from", filepath.Join(base, "missing"), "--to", newDir}, 2, "the source " + filepath.Join(base, "missing") + " holds no state"},
		{"an empty source", []string{"--from", filepath.Join(base, "empty"), "--to", newDir}, 2, "holds no state"},
		{"a destination with a state", []string{"--from", p.dir, "--to", full}, 1, "is not empty"},
		{"a destination that cannot be made", []string{"--from", p.dir, "--to", filepath.Join(file, "state")}, 1, "not a directory"},
		{"an unknown scheme", []string{"--from", p.dir, "--to", "s3://bucket/p2ptls"}, 2, `unknown store URL scheme "s3"`},
		{"an etcd that does not answer", []string{"--from", p.dir, "--to", "etcd://" + down + "/p2ptls"}, 1, "cannot reach etcd at " + down},
		{"an etcd URL without a prefix", []string{"--from", p.dir, "--to", "etcd://" + down}, 2, "has no key prefix"},
		{"an unknown flag", []string{"--from", p.dir, "--to", newDir, "--frobnicate"}, 2, "frobnicate"},
	}
	// Each state on its own, so that its derived memos are left out (a
	// restore reads the destination's config, which may write them).
	view := func() map[string]string {
		snap := map[string]string{}
		for k, v := range snapshot(t, base) {
			if k != "full" && !strings.HasPrefix(k, "full/") {
				snap[k] = v
			}
		}
		for k, v := range snapshot(t, full) {
			snap["full/"+k] = v
		}
		return snap
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before, beforeSrc := view(), snapshot(t, p.dir)
			r := p2ptls(t, nil, append([]string{"store", "copy"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d: %s", r.code, tc.code, r.stderr)
			}
			first, _, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "p2ptls: error: ") || !strings.Contains(first, tc.msg) {
				t.Errorf("stderr %q, want one error line containing %q", r.stderr, tc.msg)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
			assertSameSnapshot(t, before, view())
			assertSameSnapshot(t, beforeSrc, snapshot(t, p.dir))
		})
	}
}
