package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRestoreUnderRunningServe replaces the state of a running serve: serve
// keeps running, serves the restored mappings, and agents keep trusting its
// management listener with the CA they had.
func TestRestoreUnderRunningServe(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	p.must(t, "mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--id", "app")
	p.serve = startServe(t, p.env)
	ca, _, _, _ := mgmtFiles(p.dir)
	agentCA := writeFile(t, t.TempDir(), "agent-ca.pem", string(mustRead(t, ca)))
	app := fileSerial(t, filepath.Join(p.dir, "certs", "public", "app", "cert.pem"))
	archive := filepath.Join(t.TempDir(), "state.tar.gz")
	p.must(t, "backup", "--out", archive)

	// A change after the backup, which the restore takes back.
	p.must(t, "mapping", "add", "--listener", "web", "--host", "extra.example.test", "--self-signed", "--id", "extra")
	extra := fileSerial(t, filepath.Join(p.dir, "certs", "public", "extra", "cert.pem"))
	eventually(t, 5*time.Second, func() error { return serves(web, "extra.example.test", extra) })

	out := p.must(t, "restore", archive, "--force")
	if !strings.Contains(out, "the previous state is kept in "+p.dir+".pre-restore-") || !strings.Contains(out, "running serve") {
		t.Errorf("restore said %q", out)
	}
	eventually(t, 5*time.Second, func() error {
		if err := serves(web, "extra.example.test", extra); err == nil {
			return errors.New("the removed mapping is still served")
		}
		return serves(web, "app.example.test", app)
	})
	mgmtURL := "https://" + p.mgmt
	if r := p2ptls(t, nil, "agent", "check", "--url", mgmtURL, "--ca-file", agentCA); r.code != 0 {
		t.Errorf("agent check after the restore: exit %d %s", r.code, r.stderr)
	}
	if _, err := handshake(p.mgmt, "localhost", caPool(t, agentCA)); err != nil {
		t.Errorf("management handshake with the agents' CA: %v", err)
	}
	eventually(t, 5*time.Second, func() error {
		st := p.status(t)
		if !st.ServeRunning || st.LastReloadError != "" || len(st.Listeners) != 1 || !st.Listeners[0].Listening {
			return errors.New("status: " + p.must(t, "status"))
		}
		return nil
	})
	kept, _ := filepath.Glob(p.dir + ".pre-restore-*")
	if len(kept) != 1 {
		t.Fatalf("kept states: %v", kept)
	}
	if _, err := os.Stat(filepath.Join(kept[0], "certs", "public", "extra", "cert.pem")); err != nil {
		t.Errorf("the kept state lacks the mapping added after the backup: %v", err)
	}
	if strings.Contains(p.serve.output(), "level=ERROR") {
		t.Errorf("serve logged errors:\n%s", p.serve.output())
	}
}
