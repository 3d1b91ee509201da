package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// rotation is one state with a running serve, the CA files an agent may
// hold, and the clients that use them.
type rotation struct {
	dir, addr string
	env       []string
	serve     *serveProc
	files     map[string]string // "old", "new", "bundle" → PEM file
}

func newRotation(t *testing.T) *rotation {
	t.Helper()
	r := &rotation{dir: filepath.Join(t.TempDir(), "state"), addr: freeAddr(t), files: map[string]string{}}
	r.env = []string{"CONFIG_DIR=" + r.dir, "MANAGEMENT_LISTEN=" + r.addr}
	r.must(t, "ca", "init")
	r.files["old"] = filepath.Join(t.TempDir(), "old.pem")
	r.must(t, "ca", "export", "--out", r.files["old"])
	r.serve = startServe(t, r.env)
	return r
}

func (r *rotation) must(t *testing.T, args ...string) string {
	t.Helper()
	res := p2ptls(t, r.env, args...)
	if res.code != 0 {
		t.Fatalf("p2ptls %s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res.stdout
}

// status is "ca rotate status --output json".
func (r *rotation) status(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.must(t, "ca", "rotate", "status", "--output", "json")), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// servedChain is what serve sends now.
func (r *rotation) servedChain() ([]*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", r.addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the chain only
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates, nil
}

// waitServed waits until serve sends a chain that ok accepts.
func (r *rotation) waitServed(t *testing.T, what string, ok func([]*x509.Certificate) bool) {
	t.Helper()
	begun := time.Now()
	defer func() { t.Logf("serve sent %s %v after the step", what, time.Since(begun).Round(time.Millisecond)) }()
	eventually(t, 10*time.Second, func() error {
		chain, err := r.servedChain()
		if err != nil {
			return err
		}
		if !ok(chain) {
			return fmt.Errorf("serve does not send %s yet (%d certificates)", what, len(chain))
		}
		return nil
	})
}

// curl fetches /healthz trusting only file, as OpenSSL builds the chain.
func (r *rotation) curl(file string) error {
	out, err := exec.Command("curl", "--silent", "--show-error", "--fail", "--max-time", "5", "--cacert", file,
		"https://"+r.addr+"/healthz").CombinedOutput()
	if err != nil {
		return fmt.Errorf("curl --cacert %s: %v: %s", filepath.Base(file), err, out)
	}
	return nil
}

// goClient fetches /healthz with a Go client trusting only file.
func (r *rotation) goClient(t *testing.T, file string) error {
	resp, err := httpsClient(caPool(t, file)).Get("https://" + r.addr + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// clients checks each CA file with curl, a Go client and agent check:
// those in want succeed, the others fail. It logs what agent check says.
func (r *rotation) clients(t *testing.T, stage string, want map[string]bool) {
	t.Helper()
	for _, who := range []string{"old", "new", "bundle"} {
		file, ok := r.files[who]
		if !ok {
			continue
		}
		for client, err := range map[string]error{"curl": r.curl(file), "go": r.goClient(t, file)} {
			if (err == nil) != want[who] {
				t.Errorf("%s: %s trusting %s: error %v, want success %v", stage, client, who, err, want[who])
			}
		}
		res := p2ptls(t, nil, "agent", "check", "--url", "https://"+r.addr, "--ca-file", file)
		if (res.code == 0) != want[who] {
			t.Errorf("%s: agent check with %s: exit %d, want success %v: %s%s", stage, who, res.code, want[who], res.stdout, res.stderr)
		}
		t.Logf("%s: agent check --ca-file %s: exit %d: %s", stage, who, res.code, strings.TrimSpace(res.stdout+res.stderr))
	}
}

// handOut checks that /ca.crt, ca export (pem, base64) and agent env hand
// out the same bundle and writes it (and the next CA alone) to files.
func (r *rotation) handOut(t *testing.T, wantCerts int) {
	t.Helper()
	pemOut := r.must(t, "ca", "export")
	certs, err := pki.ParseCertChain([]byte(pemOut))
	if err != nil || len(certs) != wantCerts {
		t.Fatalf("ca export: %d certificates (%v), want %d", len(certs), err, wantCerts)
	}
	b64 := strings.TrimSpace(r.must(t, "ca", "export", "--format", "base64"))
	if dec, err := base64.StdEncoding.DecodeString(b64); err != nil || string(dec) != pemOut {
		t.Errorf("ca export --format base64 is not the PEM bundle (%v)", err)
	}
	if env := r.must(t, "agent", "env"); !strings.Contains(env, "MANAGEMENT_CA_PEM_BASE64="+b64+"\n") {
		t.Errorf("agent env does not hand out the bundle:\n%s", env)
	}
	trust := r.files["old"]
	if b, ok := r.files["bundle"]; ok {
		trust = b // after finish, the old CA no longer verifies
	}
	resp, err := httpsClient(caPool(t, trust)).Get("https://" + r.addr + "/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != pemOut {
		t.Errorf("/ca.crt is not the bundle (%v):\n%s", err, body)
	}
	r.files["bundle"] = filepath.Join(t.TempDir(), "bundle.pem")
	r.files["new"] = filepath.Join(t.TempDir(), "new.pem")
	writeFileT(t, r.files["bundle"], []byte(pemOut))
	writeFileT(t, r.files["new"], pki.EncodeCert(certs[len(certs)-1].Raw))
}

func writeFileT(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// restart kills serve (SIGKILL) and starts it again on the same state.
func (r *rotation) restart(t *testing.T) {
	t.Helper()
	_ = r.serve.cmd.Process.Kill()
	<-r.serve.done
	_ = r.serve.cmd.Wait()
	r.serve = startServe(t, r.env)
}

// handshakes dials serve over and over, trusting only the old CA, until
// stopped (bounded: at most 5000 dials), and counts the failures: no
// step before finish may fail one.
type handshakes struct {
	stop         chan struct{}
	wg           sync.WaitGroup
	count, fails atomic.Int64
	firstErr     atomic.Value
}

func (r *rotation) keepDialing(t *testing.T) *handshakes {
	roots := caPool(t, r.files["old"])
	h := &handshakes{stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for range 5000 {
			select {
			case <-h.stop:
				return
			default:
			}
			if _, err := handshake(r.addr, "127.0.0.1", roots); err != nil {
				h.fails.Add(1)
				h.firstErr.CompareAndSwap(nil, err.Error())
			}
			h.count.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return h
}

func (h *handshakes) end(t *testing.T) {
	t.Helper()
	close(h.stop)
	h.wg.Wait()
	if h.fails.Load() > 0 {
		t.Errorf("%d of %d handshakes of an old-only client failed during the steps; first: %v", h.fails.Load(), h.count.Load(), h.firstErr.Load())
		return
	}
	t.Logf("%d handshakes of an old-only client during the steps, none failed", h.count.Load())
}

func skidOf(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertChain(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(certs[0].SubjectKeyId)
}

func TestCARotationWithRealClients(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: this test checks OpenSSL's chain building through curl")
	}
	for _, end := range []string{"finish", "abort from started", "abort from switched"} {
		t.Run(end, func(t *testing.T) {
			r := newRotation(t)
			r.clients(t, "before", map[string]bool{"old": true})
			h := r.keepDialing(t)
			r.must(t, "ca", "rotate", "start", "--overlap", "14d")
			r.handOut(t, 2)
			oldKey, newKey := skidOf(t, r.files["old"]), skidOf(t, r.files["new"])
			// started: the old CA's leaf, then the old CA certified by the new one.
			r.waitServed(t, "the started chain", func(c []*x509.Certificate) bool {
				return len(c) == 2 && string(c[0].AuthorityKeyId) == oldKey && string(c[1].AuthorityKeyId) == newKey
			})
			r.clients(t, "started", map[string]bool{"old": true, "new": true, "bundle": true})
			h.end(t)
			before := stateSnapshot(t, r.dir)
			r.restart(t)
			r.clients(t, "started, serve restarted", map[string]bool{"old": true, "new": true, "bundle": true})
			assertSameSnapshot(t, before, stateSnapshot(t, r.dir))
			if end == "abort from started" {
				abortE2E(t, r)
				return
			}

			h = r.keepDialing(t)
			r.must(t, "ca", "rotate", "switch")
			r.waitServed(t, "the switched chain", func(c []*x509.Certificate) bool {
				return len(c) == 2 && string(c[0].AuthorityKeyId) == newKey && string(c[1].AuthorityKeyId) == oldKey
			})
			r.clients(t, "switched", map[string]bool{"old": true, "new": true, "bundle": true})
			h.end(t)
			before = stateSnapshot(t, r.dir)
			r.restart(t)
			r.clients(t, "switched, serve restarted", map[string]bool{"old": true, "new": true, "bundle": true})
			assertSameSnapshot(t, before, stateSnapshot(t, r.dir))
			if end == "abort from switched" {
				abortE2E(t, r)
				return
			}

			r.must(t, "ca", "rotate", "finish")
			r.waitServed(t, "the new CA's leaf alone", func(c []*x509.Certificate) bool {
				return len(c) == 1 && string(c[0].AuthorityKeyId) == newKey
			})
			r.clients(t, "finished", map[string]bool{"new": true, "bundle": true})
			r.handOut(t, 1)
			if doc := r.status(t); doc["stage"] != "none" || doc["last_rotation"].(map[string]any)["outcome"] != "finished" {
				t.Errorf("status after finish: %v", doc)
			}
		})
	}
}

// abortE2E aborts and checks that old-only clients verify, next-only not.
func abortE2E(t *testing.T, r *rotation) {
	t.Helper()
	oldKey := skidOf(t, r.files["old"])
	h := r.keepDialing(t)
	r.must(t, "ca", "rotate", "abort")
	r.waitServed(t, "the old CA's leaf alone", func(c []*x509.Certificate) bool {
		return len(c) == 1 && string(c[0].AuthorityKeyId) == oldKey
	})
	h.end(t)
	r.clients(t, "aborted", map[string]bool{"old": true, "bundle": true})
	if res := p2ptls(t, r.env, "ca", "rotate", "abort"); res.code != 0 || !strings.Contains(res.stdout, "nothing changed") {
		t.Errorf("abort again: exit %d: %s%s", res.code, res.stdout, res.stderr)
	}
}

// Refusals: exit 2, one sentence naming the stage and what to run, the
// state unchanged.
func TestCARotateRefusals(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	env := []string{"CONFIG_DIR=" + dir}
	if res := p2ptls(t, env, "ca", "init"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	for _, tc := range []struct {
		desc string
		env  []string
		args []string
		msg  string
	}{
		{"switch before start", nil, []string{"switch"}, "no management CA rotation is open"},
		{"finish before start", nil, []string{"finish"}, "no management CA rotation is open"},
		{"abort before start", nil, []string{"abort"}, "nothing to abort"},
		{"negative overlap", nil, []string{"start", "--overlap", "-3d"}, "--overlap"},
		{"zero overlap", nil, []string{"start", "--overlap", "0"}, "--overlap"},
		{"garbage overlap", nil, []string{"start", "--overlap", "a while"}, "--overlap"},
		{"mode provided", []string{"MANAGEMENT_TLS_MODE=provided", "MANAGEMENT_TLS_CERT_FILE=/x", "MANAGEMENT_TLS_KEY_FILE=/y"}, []string{"start"}, "nothing to rotate"},
		{"mode off", []string{"MANAGEMENT_TLS_MODE=off", "MANAGEMENT_ALLOW_INSECURE_HTTP=true"}, []string{"status"}, "nothing to rotate"},
		{"an argument", nil, []string{"start", "now"}, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			before := stateSnapshot(t, dir)
			res := p2ptls(t, append(env, tc.env...), append([]string{"ca", "rotate"}, tc.args...)...)
			if res.code != 2 || !strings.Contains(res.stderr, tc.msg) || res.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", res.code, res.stdout, res.stderr, tc.msg)
			}
			assertSameSnapshot(t, before, stateSnapshot(t, dir))
		})
	}
	// Out of order at a stage: named, exit 2, unchanged.
	if res := p2ptls(t, env, "ca", "rotate", "start"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	before := stateSnapshot(t, dir)
	res := p2ptls(t, env, "ca", "rotate", "finish")
	if res.code != 2 || !strings.Contains(res.stderr, "at stage started") || !strings.Contains(res.stderr, "ca rotate switch") {
		t.Errorf("finish before switch: exit %d: %s", res.code, res.stderr)
	}
	res = p2ptls(t, env, "ca", "init", "--replace", "--confirm-new-ca")
	if res.code != 2 || !strings.Contains(res.stderr, "rotation is open") {
		t.Errorf("ca init --replace during a rotation: exit %d: %s", res.code, res.stderr)
	}
	assertSameSnapshot(t, before, stateSnapshot(t, dir))
}

// A step killed at any moment leaves the stage before it, byte for byte,
// or the stage after it, complete: each is one state.Update.
func TestKilledRotationStepLeavesOneStage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	env := []string{"CONFIG_DIR=" + dir}
	if res := p2ptls(t, env, "ca", "init"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	for _, step := range []struct{ name, stage string }{{"start", "started"}, {"switch", "switched"}, {"finish", "none"}} {
		outcomes := map[string]int{}
		// Each attempt is killed a little later than the one before (plus
		// jitter), sweeping from before the lock to past the commit; the
		// 60th runs to its end.
		for attempt := 0; ; attempt++ {
			before := withoutTemp(stateSnapshot(t, dir))
			cmd := command(env, "ca", "rotate", step.name, "--quiet")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if attempt < 60 {
				time.Sleep(time.Duration(attempt)*2*time.Millisecond + rand.N(time.Millisecond))
				_ = cmd.Process.Kill()
			}
			_ = cmd.Wait()
			// The next lock finishes an Apply the kill cut short after its
			// commit point; revoking a token that does not exist takes the
			// lock and changes nothing.
			if res := p2ptls(t, env, "admin", "token", "revoke", "no-such-token"); res.code != 2 && res.code != 1 {
				t.Fatalf("settle: exit %d: %s", res.code, res.stderr)
			}
			after := withoutTemp(stateSnapshot(t, dir))
			var doc map[string]any
			res := p2ptls(t, env, "ca", "rotate", "status", "--output", "json")
			if res.code != 0 || json.Unmarshal([]byte(res.stdout), &doc) != nil {
				t.Fatalf("%s killed: status does not load: %s", step.name, res.stderr)
			}
			if doc["stage"] != step.stage {
				if !maps.Equal(before, after) {
					assertSameSnapshot(t, before, after)
					t.Fatalf("%s killed: not at the stage after, yet changed", step.name)
				}
				outcomes["before"]++
				continue
			}
			outcomes["after"]++
			checkServedFiles(t, dir, step.stage)
			break
		}
		t.Logf("rotate %s killed: %v", step.name, outcomes)
	}
}

// withoutTemp drops the temporary files a killed writer leaves before its
// commit point: no part of the state (doctor lists them as leftovers).
func withoutTemp(snap map[string]string) map[string]string {
	maps.DeleteFunc(snap, func(p string, _ string) bool {
		return slices.ContainsFunc(strings.Split(p, "/"), state.IsTempName)
	})
	return snap
}

// checkServedFiles verifies server.crt as the stage serves it, with Go,
// for clients that trust the old CA, the new one or both.
func checkServedFiles(t *testing.T, dir, stage string) {
	t.Helper()
	read := func(name string) []*x509.Certificate {
		b, err := os.ReadFile(filepath.Join(dir, "certs/management", name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCertChain(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	chain := read("server.crt")
	var roots [][]*x509.Certificate
	if stage == "none" {
		roots = [][]*x509.Certificate{read("ca.crt")}
	} else {
		cur, next := read("ca.crt"), read("next/ca.crt")
		roots = [][]*x509.Certificate{cur, next, append(cur, next...)}
	}
	for _, rs := range roots {
		rp, ip := x509.NewCertPool(), x509.NewCertPool()
		for _, c := range rs {
			rp.AddCert(c)
		}
		for _, c := range chain[1:] {
			ip.AddCert(c)
		}
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, DNSName: "localhost"}); err != nil {
			t.Errorf("%s: server.crt does not verify: %v", stage, err)
		}
	}
}

// A backup taken mid-rotation restores into a fresh directory, and the
// rotation goes on there.
func TestBackupMidRotationContinuesElsewhere(t *testing.T) {
	src := filepath.Join(t.TempDir(), "state")
	env := []string{"CONFIG_DIR=" + src}
	for _, args := range [][]string{{"ca", "init"}, {"ca", "rotate", "start"}, {"ca", "rotate", "switch"}} {
		if res := p2ptls(t, env, args...); res.code != 0 {
			t.Fatal(res.stderr)
		}
	}
	archive := filepath.Join(t.TempDir(), "mid.tar.gz")
	if res := p2ptls(t, env, "backup", "--out", archive); res.code != 0 {
		t.Fatal(res.stderr)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	denv := []string{"CONFIG_DIR=" + dst}
	if res := p2ptls(t, denv, "restore", archive); res.code != 0 {
		t.Fatal(res.stderr)
	}
	status := func(env []string) string {
		res := p2ptls(t, env, "ca", "rotate", "status", "--output", "json")
		if res.code != 0 {
			t.Fatal(res.stderr)
		}
		return res.stdout
	}
	if a, b := status(env), status(denv); strings.ReplaceAll(a, src, "") != strings.ReplaceAll(b, dst, "") {
		t.Errorf("status differs after restore:\n%s\n%s", a, b)
	}
	checkServedFiles(t, dst, "switched")
	for _, name := range []string{"next/ca.key", "rotation.toml", "next/cross.crt", "next/current-cross.crt"} {
		fi, err := os.Stat(filepath.Join(dst, "certs/management", name))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("restored %s: %v, %v; want 0600", name, fi, err)
		}
	}
	if res := p2ptls(t, denv, "ca", "rotate", "finish"); res.code != 0 {
		t.Fatal(res.stderr)
	}
	checkServedFiles(t, dst, "none")
	var doc struct {
		Last struct {
			New string `json:"new_fingerprint_sha256"`
		} `json:"last_rotation"`
	}
	if err := json.Unmarshal([]byte(status(denv)), &doc); err != nil {
		t.Fatal(err)
	}
	var show struct {
		CA struct {
			Fingerprint string `json:"fingerprint_sha256"`
		} `json:"ca"`
	}
	res := p2ptls(t, denv, "ca", "show", "--output", "json")
	if err := json.Unmarshal([]byte(res.stdout), &show); err != nil || show.CA.Fingerprint != doc.Last.New {
		t.Errorf("after finish in the restored state, ca show names %q, want the new CA %q (%v)", show.CA.Fingerprint, doc.Last.New, err)
	}
}

// Every CA made before rotation existed allows no intermediate (path
// length 0). Its rotation still serves every client at started (the next
// CA allows the cross-certificate); switch refuses, exit 2, until the
// operator confirms every agent has the bundle, and from then on a client
// with only that old CA fails, as the refusal said.
func TestCARotationFromALegacyCA(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: this test checks OpenSSL's chain building through curl")
	}
	r := &rotation{dir: filepath.Join(t.TempDir(), "state"), addr: freeAddr(t), files: map[string]string{}}
	r.env = []string{"CONFIG_DIR=" + r.dir, "MANAGEMENT_LISTEN=" + r.addr}
	r.must(t, "ca", "init")
	legacy, err := pki.NewCA("p2ptls management CA", time.Now(), pki.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if legacy.Cert.MaxPathLen != 0 || !legacy.Cert.MaxPathLenZero {
		t.Fatal("pki.NewCA no longer makes a path length 0 CA: this test needs one")
	}
	mgmt := filepath.Join(r.dir, "certs", "management")
	writeFileT(t, filepath.Join(mgmt, "ca.crt"), legacy.CertPEM)
	if err := os.WriteFile(filepath.Join(mgmt, "ca.key"), legacy.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"server.crt", "server.key", "../../management-ca.toml"} {
		if err := os.Remove(filepath.Join(mgmt, f)); err != nil {
			t.Fatal(err)
		}
	}
	r.files["old"] = filepath.Join(t.TempDir(), "old.pem")
	writeFileT(t, r.files["old"], legacy.CertPEM)
	r.serve = startServe(t, r.env) // issues the server certificate from the legacy CA

	r.must(t, "ca", "rotate", "start")
	r.handOut(t, 2)
	r.waitServed(t, "the started chain", func(c []*x509.Certificate) bool { return len(c) == 2 })
	r.clients(t, "legacy, started", map[string]bool{"old": true, "new": true, "bundle": true})

	before := stateSnapshot(t, r.dir)
	res := p2ptls(t, r.env, "ca", "rotate", "switch")
	if res.code != 2 || !strings.Contains(res.stderr, "allows no intermediate certificate") || !strings.Contains(res.stderr, "--confirm-agents-updated") {
		t.Errorf("switch from a legacy CA: exit %d: %s", res.code, res.stderr)
	}
	assertSameSnapshot(t, before, stateSnapshot(t, r.dir))
	if doc := r.status(t); doc["current"].(map[string]any)["cross_verifiable"] != false || doc["agents"].([]any)[0].(map[string]any)["verifies_now"] != true {
		t.Errorf("status of a legacy rotation: %v", doc)
	}

	newKey := skidOf(t, r.files["new"])
	r.must(t, "ca", "rotate", "switch", "--confirm-agents-updated")
	r.waitServed(t, "the switched chain", func(c []*x509.Certificate) bool { return string(c[0].AuthorityKeyId) == newKey })
	r.clients(t, "legacy, switched", map[string]bool{"new": true, "bundle": true})
	if doc := r.status(t); doc["agents"].([]any)[0].(map[string]any)["verifies_now"] != false {
		t.Errorf("status after a confirmed switch says an old-only agent verifies: %v", doc)
	}
	r.must(t, "ca", "rotate", "finish")
	r.waitServed(t, "the new CA's leaf alone", func(c []*x509.Certificate) bool { return len(c) == 1 })
	r.clients(t, "legacy, finished", map[string]bool{"new": true, "bundle": true})
}
