package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDeployHookFromCron: "cert renew" runs the deploy hook after the lock
// is released, so that a hook running p2ptls (a read, or a change of the
// state) does not deadlock; the hook of p2ptls.toml runs unless
// --deploy-hook overrides it; a hook that runs past its timeout is
// stopped and reported as the hook's failure (exit 1), while the renewal
// itself stays done and served from the state.
func TestDeployHookFromCron(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	a.must(t, "mapping", "add", "--listener", "web", "--host", "cron.example.test", "--acme", "--challenge", "http-01", "--id", "cron")
	a.must(t, "cert", "issue", "cron")
	first := a.verifyIssued(t, "cron", "cron.example.test")
	renew := func(args ...string) (renewJSON, result) {
		t.Helper()
		// runWithin: a deadlock fails here, rather than hanging the run.
		r := runWithin(t, 2*time.Minute, a.env2(), append([]string{"cert", "renew", "--force", "--no-random-sleep", "--output", "json"}, args...)...)
		var rep renewJSON
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("cert renew output: %v: %q %s", err, r.stdout, r.stderr)
		}
		return rep, r
	}

	// p2ptls.toml's hook, which changes the state and reads it back.
	out := filepath.Join(t.TempDir(), "hook.out")
	hook := fmt.Sprintf(`echo "config $P2PTLS_MAPPING_ID $CONFIG_DIR" >> %s && `+
		`%s mapping add --listener web --host from-hook.example.test --self-signed --id from-hook && `+
		`%s cert list --output json | grep -q from-hook && echo listed >> %s`, out, binary, binary, out)
	setACMESettings(t, a.dir, "deploy_hook = "+tomlString(t, hook))
	rep, r := renew()
	if r.code != 0 || len(rep.Renewed) != 1 {
		t.Fatalf("cert renew with the hook of p2ptls.toml: exit %d %+v %s", r.code, rep, r.stderr)
	}
	if got, want := string(mustRead(t, out)), fmt.Sprintf("config cron %s\nlisted\n", a.dir); got != want {
		t.Errorf("the hook wrote %q, want %q", got, want)
	}
	a.mapping(t, "from-hook")
	second := a.verifyIssued(t, "cron", "cron.example.test")
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("not renewed")
	}

	// --deploy-hook overrides it, and its timeout stops it: the group is
	// killed, the renewal is done, the hook's failure is the exit status.
	start := time.Now()
	rep, r = renew("--deploy-hook", `echo flag >> `+out+`; sleep 60 & sleep 60; echo never >> `+out, "--deploy-hook-timeout", "1s")
	took := time.Since(start)
	if r.code != 1 || len(rep.Renewed) != 1 || len(rep.Failed) != 0 || !strings.Contains(rep.Errors["cron"], "deploy hook failed: timed out after 1s") {
		t.Errorf("a hook past its timeout: exit %d %+v", r.code, rep)
	}
	if !strings.Contains(r.stderr, "the deploy hook failed for 1 renewed mapping(s): cron") {
		t.Errorf("stderr does not say the hook failed:\n%s", r.stderr)
	}
	if took > 45*time.Second {
		t.Errorf("cert renew took %v with a hook of 60 s stopped after 1 s", took)
	}
	third := a.verifyIssued(t, "cron", "cron.example.test")
	if third.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Error("the renewal was undone with its hook")
	}
	if m := a.mapping(t, "cron"); m.Status != "valid" || m.LastError != "" || m.Attempts != 0 {
		t.Errorf("the hook's failure was recorded as the renewal's: %+v", m)
	}
	if got := string(mustRead(t, out)); strings.Count(got, "config") != 1 || !strings.HasSuffix(got, "flag\n") {
		t.Errorf("hook output %q: want p2ptls.toml's hook once, then the flag's, stopped", got)
	}

	// Bad timeouts are bad input, on the command line and in p2ptls.toml.
	before := snapshot(t, a.dir)
	if r := p2ptls(t, a.env2(), "cert", "renew", "--no-random-sleep", "--deploy-hook-timeout", "0s"); r.code != 2 || !strings.Contains(r.stderr, "between 1s and 24h") {
		t.Errorf("--deploy-hook-timeout 0s: exit %d %s", r.code, r.stderr)
	}
	assertSameSnapshot(t, before, snapshot(t, a.dir))
	setACMESettings(t, a.dir, `deploy_hook_timeout = "soon"`)
	if r := p2ptls(t, a.env2(), "cert", "renew", "--no-random-sleep"); r.code != 2 || !strings.Contains(r.stderr, `field "acme.deploy_hook_timeout"`) || !strings.Contains(r.stderr, "line ") {
		t.Errorf("deploy_hook_timeout = \"soon\": exit %d %s", r.code, r.stderr)
	}
}
