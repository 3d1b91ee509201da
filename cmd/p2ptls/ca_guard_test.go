package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// caShow is what "ca show --output json" says of the CA.
func caShowFingerprint(t *testing.T, env []string) string {
	t.Helper()
	r := p2ptls(t, env, "ca", "show", "--output", "json")
	var info struct {
		CA *struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		} `json:"ca"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil {
		t.Fatalf("ca show: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if info.CA == nil {
		return ""
	}
	return info.CA.FingerprintSHA256
}

// recordedCA is the fingerprint management-ca.toml names, "" without one.
func recordedCA(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "management-ca.toml"))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "fingerprint_sha256 = "); ok {
			return strings.Trim(v, `'"`)
		}
	}
	t.Fatalf("management-ca.toml names no fingerprint:\n%s", b)
	return ""
}

// The seed's restore mistake: serve ran in auto mode (so agents were given
// its CA), then certs/management went missing. serve refuses to start
// rather than mint a new CA silently (exit 1, one sentence naming the
// fingerprint, a hint to restore or accept a new CA, nothing created);
// doctor fails with the fingerprint; plain ca init refuses too;
// ca init --replace needs --confirm-new-ca, and with it serve starts on
// the new CA.
func TestServeRefusesToReplaceALostCA(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	// A fresh state gets its CA silently, and records it.
	serve := startServe(t, p.env)
	if !strings.Contains(serve.output(), "created the management CA") {
		t.Errorf("first start did not say it created the CA:\n%s", serve.output())
	}
	serve.stop(t)
	fp := caShowFingerprint(t, p.env)
	if fp == "" || recordedCA(t, p.dir) != fp {
		t.Fatalf("CA %q, record %q", fp, recordedCA(t, p.dir))
	}
	mgmtDir := filepath.Join(p.dir, "certs", "management")
	if err := os.RemoveAll(mgmtDir); err != nil {
		t.Fatal(err)
	}
	before := stateSnapshot(t, p.dir)

	r := runServeExpectFailure(t, p.env)
	oneSentence(t, "serve", r, 1, "this state had the CA "+fp)
	for _, want := range []string{"agents that trust it will not trust a new one", "ca init --replace --confirm-new-ca", "p2ptls restore"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("serve's refusal lacks %q:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(mgmtDir); !os.IsNotExist(err) {
		t.Errorf("serve created %s: %v", mgmtDir, err)
	}
	assertSameSnapshot(t, before, stateSnapshot(t, p.dir))

	doc, _ := runDoctor(t, p.env)
	if status, msg, hint := doc.check(t, "management.ca"); status != "fail" || !strings.Contains(msg, "agents that trust CA "+fp+" will not trust the new one") || !strings.Contains(hint, "ca init --replace --confirm-new-ca") {
		t.Errorf("doctor: %s %q hint %q", status, msg, hint)
	}

	r = p2ptls(t, p.env, "ca", "init")
	oneSentence(t, "ca init", r, 1, "this state had the CA "+fp)
	r = p2ptls(t, p.env, "ca", "init", "--replace")
	oneSentence(t, "ca init --replace", r, 2, "every agent that trusts the current one refuses management")
	r = p2ptls(t, p.env, "ca", "init", "--confirm-new-ca")
	oneSentence(t, "ca init --confirm-new-ca", r, 2, "--confirm-new-ca confirms --replace")
	assertSameSnapshot(t, before, stateSnapshot(t, p.dir))

	r = p2ptls(t, p.env, "ca", "init", "--replace", "--confirm-new-ca")
	newFP := caShowFingerprint(t, p.env)
	if r.code != 0 || !strings.Contains(r.stdout, "created a new management CA "+newFP) || !strings.Contains(r.stdout, "p2ptls agent env") ||
		!strings.Contains(r.stdout, "p2ptls agent bootstrap --url https://MANAGEMENT_HOST:8443 --fingerprint "+newFP+" --out ") {
		t.Fatalf("ca init --replace --confirm-new-ca: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if newFP == "" || newFP == fp || recordedCA(t, p.dir) != newFP {
		t.Errorf("after the replace: CA %s (was %s), record %s", newFP, fp, recordedCA(t, p.dir))
	}
	serve = startServe(t, p.env)
	if strings.Contains(serve.output(), "created the management CA") {
		t.Errorf("serve created another CA:\n%s", serve.output())
	}
	serve.stop(t)
	doc, _ = runDoctor(t, p.env)
	if status, msg, _ := doc.check(t, "management.ca"); status != "ok" {
		t.Errorf("doctor after the replace: %s %q", status, msg)
	}
}

// ca init --replace --confirm-new-ca over a CA that is there keeps the old
// one under certs/management/retired/, byte for byte.
func TestCAInitReplaceKeepsTheOldCA(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	p.must(t, "ca", "init")
	fp := caShowFingerprint(t, p.env)
	caFile, keyFile, _, _ := mgmtFiles(p.dir)
	oldCA, oldKey := mustRead(t, caFile), mustRead(t, keyFile)
	r := p2ptls(t, p.env, "ca", "init")
	oneSentence(t, "ca init over a CA", r, 1, "never replaced silently")
	out := p.must(t, "ca", "init", "--replace", "--confirm-new-ca")
	if !strings.Contains(out, "the old CA "+fp+" is kept in "+filepath.Join(p.dir, "certs", "management", "retired")) {
		t.Errorf("ca init --replace said %q", out)
	}
	kept, _ := filepath.Glob(filepath.Join(p.dir, "certs", "management", "retired", "*"))
	if len(kept) != 1 {
		t.Fatalf("retired: %v", kept)
	}
	if string(mustRead(t, filepath.Join(kept[0], "ca.crt"))) != string(oldCA) || string(mustRead(t, filepath.Join(kept[0], "ca.key"))) != string(oldKey) {
		t.Error("the retired CA is not the old one")
	}
	if info, err := os.Stat(filepath.Join(kept[0], "ca.key")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("retired key: %v %v", info, err)
	}
	if got := caShowFingerprint(t, p.env); got == fp || recordedCA(t, p.dir) != got {
		t.Errorf("CA %s (old %s), record %s", got, fp, recordedCA(t, p.dir))
	}
	doc, _ := runDoctor(t, p.env)
	if status, msg, _ := doc.check(t, "state.permissions"); status != "ok" {
		t.Errorf("doctor permissions after the replace: %s %q", status, msg)
	}
}

// Handing the CA out records it: a state from before the record (its file
// removed) gets one from ca export and from agent env.
func TestHandingOutTheCARecordsIt(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"ca", "export"}, {"agent", "env"}} {
		p := newPublicState(t)
		p.must(t, "ca", "init")
		fp := caShowFingerprint(t, p.env)
		if err := os.Remove(filepath.Join(p.dir, "management-ca.toml")); err != nil {
			t.Fatal(err)
		}
		p.must(t, args...)
		if got := recordedCA(t, p.dir); got != fp {
			t.Errorf("%v: record %q, want %s", args, got, fp)
		}
	}
}

// A backup taken after the CA was lost holds its record but not the CA:
// restore refuses it, and restore --allow-missing-management-ca accepts a
// new CA, leaves the record out (saying so), and serve then creates the
// new CA on its first start.
func TestRestoreAllowMissingCAAcceptsANewCA(t *testing.T) {
	t.Parallel()
	src := newPublicState(t)
	src.must(t, "ca", "init")
	fp := caShowFingerprint(t, src.env)
	if err := os.RemoveAll(filepath.Join(src.dir, "certs", "management")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "lost.tar.gz")
	src.must(t, "backup", "--out", archive)

	dst := newPublicState(t)
	r := p2ptls(t, dst.env, "restore", archive)
	oneSentence(t, "restore without the CA", r, 2, "holds no management CA")
	r = p2ptls(t, dst.env, "restore", archive, "--allow-missing-management-ca")
	if r.code != 0 || !strings.Contains(r.stderr, "records the management CA "+fp+" but does not hold it") {
		t.Fatalf("restore --allow-missing-management-ca: exit %d %s", r.code, r.stderr)
	}
	if got := recordedCA(t, dst.dir); got != "" {
		t.Errorf("the record %s was restored", got)
	}
	serve := startServe(t, dst.env)
	if !strings.Contains(serve.output(), "created the management CA") {
		t.Errorf("serve did not create the new CA:\n%s", serve.output())
	}
	serve.stop(t)
	if got := caShowFingerprint(t, dst.env); got == "" || got == fp || recordedCA(t, dst.dir) != got {
		t.Errorf("new CA %s (lost %s), record %s", got, fp, recordedCA(t, dst.dir))
	}
}

// After ca init --replace, the output names the new CA and the agent
// commands (with the public URL), and doctor warns until a backup holds
// the new CA.
func TestCAInitReplaceRemindsUntilBackedUp(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	url := "https://mgmt.example.test:8443"
	p.env = append(p.env, "MANAGEMENT_PUBLIC_URL="+url)
	p.must(t, "ca", "init")
	p.must(t, "backup", "--out", filepath.Join(t.TempDir(), "before.tar.gz"))
	old := caShowFingerprint(t, p.env)
	if doc, _ := runDoctor(t, p.env); doc.statuses()["management.ca_backup"] != "ok" {
		t.Fatalf("doctor before the replace: %v", doc.statuses())
	}

	r := p2ptls(t, p.env, "ca", "init", "--replace", "--confirm-new-ca", "--output", "json")
	var out struct {
		CA *struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		} `json:"ca"`
		OldCA         string   `json:"old_ca_fingerprint_sha256"`
		Kept          string   `json:"old_ca_kept_in"`
		AgentCommands []string `json:"agent_commands"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.CA == nil {
		t.Fatalf("ca init --replace --output json: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	newFP := out.CA.FingerprintSHA256
	if newFP == old || out.OldCA != old || !strings.HasPrefix(out.Kept, filepath.Join(p.dir, "certs", "management", "retired")) ||
		len(out.AgentCommands) != 2 || !strings.HasPrefix(out.AgentCommands[0], "p2ptls agent bootstrap --url "+url+" --fingerprint "+newFP+" --out ") {
		t.Errorf("ca init --replace --output json: %s", r.stdout)
	}

	for i := range 2 { // it keeps reminding
		doc, _ := runDoctor(t, p.env)
		status, msg, hint := doc.check(t, "management.ca_backup")
		if status != "warn" || !strings.Contains(msg, "not the current "+newFP) || !strings.Contains(hint, "p2ptls backup") {
			t.Errorf("doctor run %d after the replace: %s %q %q", i, status, msg, hint)
		}
	}
	p.must(t, "backup", "--out", filepath.Join(t.TempDir(), "after.tar.gz"))
	doc, _ := runDoctor(t, p.env)
	if status, msg, _ := doc.check(t, "management.ca_backup"); status != "ok" || !strings.Contains(msg, newFP) {
		t.Errorf("doctor after the backup: %s %q", status, msg)
	}

	// --quiet still says what every agent must do, on stderr.
	r = p2ptls(t, p.env, "ca", "init", "--replace", "--confirm-new-ca", "--quiet")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "p2ptls: warning: every agent refuses management until it trusts the new CA") ||
		!strings.Contains(r.stderr, "p2ptls agent bootstrap --url "+url) {
		t.Errorf("ca init --replace --quiet: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}
