package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// hostileBound is how long a refusal of a hostile file may take. The
// refusal itself is immediate; without it a FIFO blocks forever and
// /dev/zero grows the process until memory runs out.
const hostileBound = 10 * time.Second

// p2ptlsWithin runs the binary like p2ptls, but kills it and fails the test
// when it has not exited within hostileBound.
func p2ptlsWithin(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runWithin(t, hostileBound, env, args...)
}

// wantRefusal checks exit 2 and one error sentence naming path and what it
// is, followed by one hint.
func wantRefusal(t *testing.T, r result, path, says string) {
	t.Helper()
	if r.code != 2 {
		t.Errorf("exit %d, want 2; stderr %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "p2ptls: error: ") || !strings.HasPrefix(lines[1], "p2ptls: hint: ") {
		t.Fatalf("stderr is not one error and one hint line: %q", r.stderr)
	}
	if !strings.Contains(lines[0], "cannot read "+path+": "+says) {
		t.Errorf("error %q does not say %q about %s", lines[0], says, path)
	}
}

// stopWithin ends serve before startServe's cleanup does, failing the
// test instead of hanging it when a wedged serve ignores SIGTERM.
func stopWithin(t *testing.T, p *serveProc) {
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(hostileBound):
			t.Errorf("serve did not shut down within %v of SIGTERM: wedged", hostileBound)
			p.cmd.Process.Kill()
		}
	})
}

// hostileFirst orders the hostile paths with the FIFO first, so that
// without bounded reads a test fails on the FIFO (a timeout) before it
// reaches /dev/zero (a process eating memory).
func hostileFirst(t *testing.T) []statetest.Hostile {
	hs := statetest.HostilePaths(t, t.TempDir())
	for i, h := range hs {
		if h.Desc == "a FIFO" {
			hs[0], hs[i] = hs[i], hs[0]
		}
	}
	return hs
}

// TestHostileFilesAreRefusedByTheCLI: every flag naming a file refuses a
// FIFO, a device, a directory or an oversized file at once, with exit 2,
// one sentence, and the state as it was.
func TestHostileFilesAreRefusedByTheCLI(t *testing.T) {
	t.Parallel()
	dir := seededState(t)
	env := []string{"CONFIG_DIR=" + dir}
	good, goodKey := writeSelfSigned(t, t.TempDir(), "good", "good.example.test")
	commands := []struct {
		desc string
		args func(file string) []string
	}{
		{"mapping add --key-file", func(f string) []string {
			return []string{"mapping", "add", "--listener", "web", "--host", "good.example.test", "--manual", "--cert-file", good, "--key-file", f}
		}},
		{"mapping add --cert-file", func(f string) []string {
			return []string{"mapping", "add", "--listener", "web", "--host", "good.example.test", "--manual", "--cert-file", f, "--key-file", goodKey}
		}},
		{"mapping add --file", func(f string) []string {
			return []string{"mapping", "add", "--listener", "web", "--host", "good.example.test", "--file", "--cert-file", good, "--key-file", f}
		}},
		{"cert inspect", func(f string) []string { return []string{"cert", "inspect", f} }},
		{"dns-credential add --api-token-file", func(f string) []string {
			return []string{"dns-credential", "add", "cf", "--api-token-file", f}
		}},
		{"acme account register --ca-file", func(f string) []string {
			return []string{"acme", "account", "register", "--email", "ops@example.test", "--directory", "https://127.0.0.1:1/dir", "--agree-tos", "--ca-file", f}
		}},
		{"acme account register --eab-hmac-file", func(f string) []string {
			return []string{"acme", "account", "register", "--email", "ops@example.test", "--directory", "https://127.0.0.1:1/dir", "--agree-tos", "--eab-kid", "kid", "--eab-hmac-file", f}
		}},
		{"agent check --ca-file", func(f string) []string {
			return []string{"agent", "check", "--url", "https://127.0.0.1:1", "--ca-file", f}
		}},
	}
	hostile := hostileFirst(t)
	before := snapshot(t, dir)
	for _, c := range commands {
		for _, h := range hostile {
			t.Run(c.desc+" "+h.Desc, func(t *testing.T) {
				wantRefusal(t, p2ptlsWithin(t, env, c.args(h.Path)...), h.Path, h.Says)
			})
		}
	}
	assertSameSnapshot(t, before, snapshot(t, dir))
}

// TestHostileFilesThroughTheAPI: POST /api/v1/mappings naming a FIFO or a
// device as key_file answers 422 at once, and serve keeps serving.
func TestHostileFilesThroughTheAPI(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	p.must(t, "listener", "add", "web", "--addr", freeAddr(t))
	p.serve = startServe(t, p.env)
	stopWithin(t, p.serve)
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(p.must(t, "admin", "token", "create", "ops", "--output", "json")), &created); err != nil {
		t.Fatal(err)
	}
	caFile, _, _, _ := mgmtFiles(p.dir)
	client := httpsClient(caPool(t, caFile)) // 5 s timeout
	api := "https://" + p.mgmt + "/api/v1"
	good, _ := writeSelfSigned(t, t.TempDir(), "good", "good.example.test")
	before := snapshot(t, p.dir)
	for _, h := range hostileFirst(t) {
		body := map[string]any{"listener": "web", "hosts": []string{"good.example.test"}, "source": "file", "cert_file": good, "key_file": h.Path}
		start := time.Now()
		code, resp := apiCall(t, client, "POST", api+"/mappings", created.Token, body)
		t.Logf("%s: %d after %v", h.Desc, code, time.Since(start).Round(time.Millisecond))
		if code != http.StatusUnprocessableEntity || !strings.Contains(resp, h.Says) {
			t.Errorf("%s: %d %s; want 422 saying %q", h.Desc, code, resp, h.Says)
		}
		// serve is still up, and answers.
		if code, resp := apiCall(t, client, "GET", api+"/mappings", created.Token, nil); code != http.StatusOK {
			t.Fatalf("after %s: GET /mappings = %d %s", h.Desc, code, resp)
		}
	}
	// What serve writes on its own (its status) may change; the state may not.
	after := snapshot(t, p.dir)
	for _, snap := range []map[string]string{before, after} {
		for k := range snap {
			if strings.HasPrefix(k, "run") {
				delete(snap, k)
			}
		}
	}
	assertSameSnapshot(t, before, after)
}

// TestFileMappingWhoseKeyTurnsHostile: a --file mapping whose key path is
// replaced by a FIFO, then by a symlink to /dev/zero, keeps serving its
// last good certificate; reloads go on (a new mapping is served) and
// status names the problem.
func TestFileMappingWhoseKeyTurnsHostile(t *testing.T) {
	t.Parallel()
	p := newPublicState(t)
	web := freeAddr(t)
	p.must(t, "listener", "add", "web", "--addr", web)
	cert, key := writeSelfSigned(t, t.TempDir(), "file", "file.example.test")
	p.must(t, "mapping", "add", "--listener", "web", "--host", "file.example.test", "--file", "--cert-file", cert, "--key-file", key, "--id", "file")
	p.serve = startServe(t, p.env)
	stopWithin(t, p.serve)
	serial := fileSerial(t, cert)
	eventually(t, 10*time.Second, func() error { return serves(web, "file.example.test", serial) })

	for i, turn := range []struct {
		desc, says string
		make       func() error
	}{
		{"a FIFO", "it is a FIFO (named pipe), not a regular file", func() error { return syscall.Mkfifo(key, 0o600) }},
		{"a symlink to /dev/zero", "it is a character device, not a regular file", func() error { return os.Symlink("/dev/zero", key) }},
	} {
		if err := os.Remove(key); err != nil {
			t.Fatal(err)
		}
		if err := turn.make(); err != nil {
			t.Fatal(err)
		}
		// The reload that sees the new file says so, and goes on: a mapping
		// added afterwards is served.
		eventually(t, 10*time.Second, func() error {
			if st := p.status(t); !strings.Contains(st.LastReloadError, turn.says) {
				return errors.New("last_reload_error: " + st.LastReloadError)
			}
			return nil
		})
		id := "next" + string(rune('a'+i))
		p.must(t, "mapping", "add", "--listener", "web", "--host", id+".example.test", "--self-signed", "--id", id)
		next := fileSerial(t, filepath.Join(p.dir, "certs", "public", id, "cert.pem"))
		eventually(t, 10*time.Second, func() error { return serves(web, id+".example.test", next) })
		start := time.Now()
		if err := serves(web, "file.example.test", serial); err != nil {
			t.Errorf("key file turned %s: the last good certificate is not served: %v", turn.desc, err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("key file turned %s: the handshake took %v", turn.desc, took)
		}
	}
}
