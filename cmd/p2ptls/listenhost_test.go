package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/runstatus"
)

// lhRefused fails unless nothing accepts connections on addr.
func lhRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
		t.Errorf("something listens on %s, want nothing there", addr)
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
}

// lhState is a state with listener web configured on 127.0.0.1 (HTTPS on
// port, HTTP on httpPort) and a self-signed mapping "app".
type lhState struct {
	*publicServe
	port, httpPort string
}

func newListenHostState(t *testing.T) *lhState {
	t.Helper()
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	s := &lhState{publicServe: newPublicState(t), port: lhPortFree(t, hosts...), httpPort: lhPortFree(t, hosts...)}
	s.must(t, "listener", "add", "web", "--addr", "127.0.0.1:"+s.port, "--http-addr", "127.0.0.1:"+s.httpPort)
	s.must(t, "mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--id", "app")
	return s
}

// appSerial is the serial of mapping app's certificate in dir.
func appSerial(t *testing.T, dir string) string {
	t.Helper()
	return fileSerial(t, filepath.Join(dir, "certs", "public", "app", "cert.pem")).String()
}

// servedAppSerial is the serial served on addr for app.example.test.
func servedAppSerial(t *testing.T, addr string) string {
	t.Helper()
	got, err := servedSerial(addr, "app.example.test")
	if err != nil {
		t.Fatalf("handshake for app.example.test on %s: %v", addr, err)
	}
	return got.String()
}

func (s *lhState) statusJSON(t *testing.T) runstatus.Status {
	t.Helper()
	var st runstatus.Status
	if err := json.Unmarshal([]byte(s.must(t, "status", "--output", "json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// wantRebound fails unless st reports listener web configured on 127.0.0.1
// and bound on host with the same ports.
func (s *lhState) wantRebound(t *testing.T, from string, st runstatus.Status, host string) {
	t.Helper()
	if st.ListenHost != host || len(st.Listeners) != 1 {
		t.Fatalf("%s: listen_host %q with %d listeners, want %q with 1", from, st.ListenHost, len(st.Listeners), host)
	}
	l := st.Listeners[0]
	want := [4]string{"127.0.0.1:" + s.port, "127.0.0.1:" + s.httpPort, host + ":" + s.port, host + ":" + s.httpPort}
	if got := [4]string{l.Addr, l.HTTPAddr, l.BoundAddr, l.BoundHTTPAddr}; got != want || !l.Listening {
		t.Errorf("%s: addr, http_addr, bound_addr, bound_http_addr = %q, listening %v; want %q, listening", from, got, l.Listening, want)
	}
}

// TestListenHostServesOnItsAddress: serve --listen-host 127.0.0.2 serves
// the mapping's certificate on 127.0.0.2 with the configured port, answers
// HTTP-01 on 127.0.0.2 with the HTTP port, binds nothing on the configured
// 127.0.0.1, keeps management on MANAGEMENT_LISTEN, and says so in its
// log, in status (JSON and table) and in GET /api/v1/status.
func TestListenHostServesOnItsAddress(t *testing.T) {
	t.Parallel()
	s := newListenHostState(t)
	s.serve = startServe(t, s.env, "--listen-host", "127.0.0.2")
	bound, boundHTTP := "127.0.0.2:"+s.port, "127.0.0.2:"+s.httpPort

	if got, want := servedAppSerial(t, bound), appSerial(t, s.dir); got != want {
		t.Errorf("served serial %s on %s, want the mapping's %s", got, bound, want)
	}
	lhRefused(t, "127.0.0.1:"+s.port)
	lhRefused(t, "127.0.0.1:"+s.httpPort)
	lhRefused(t, "127.0.0.3:"+s.port)

	token := "tok_LH-1"
	challenges := filepath.Join(s.dir, "acme", "challenges", "http-01")
	if err := os.MkdirAll(challenges, 0o700); err != nil {
		t.Fatal(err)
	}
	writeRenamed(t, filepath.Join(challenges, token), []byte(token+".keyauth"), 0o600)
	plain := &http.Client{Timeout: 5 * time.Second}
	if code, body := get2(t, plain, "http://"+boundHTTP+"/.well-known/acme-challenge/"+token, "app.example.test"); code != 200 || body != token+".keyauth" {
		t.Errorf("HTTP-01 on %s: %d %q", boundHTTP, code, body)
	}

	wantLog := `msg="public listener started" listener=web addr=` + bound + ` http_addr=` + boundHTTP
	if out := s.serve.output(); !strings.Contains(out, wantLog) || !strings.Contains(out, "configured_addr=127.0.0.1:"+s.port) {
		t.Errorf("serve's log lacks %q with configured_addr=127.0.0.1:%s:\n%s", wantLog, s.port, out)
	}

	s.wantRebound(t, "status --output json", s.statusJSON(t), "127.0.0.2")
	table := s.must(t, "status")
	for _, want := range []string{"listeners rebound onto 127.0.0.2 (--listen-host)", "BOUND ADDR", "BOUND HTTP ADDR", bound, boundHTTP, "127.0.0.1:" + s.port} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}

	r := p2ptls(t, s.env, "admin", "token", "create", "ops", "--output", "json")
	var created struct{ Token string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &created) != nil {
		t.Fatalf("admin token create: exit %d %s", r.code, r.stderr)
	}
	caFile, _, _, _ := mgmtFiles(s.dir)
	code, body := apiCall(t, httpsClient(caPool(t, caFile)), "GET", "https://"+s.mgmt+"/api/v1/status", created.Token, nil)
	var api runstatus.Status
	if code != 200 || json.Unmarshal([]byte(body), &api) != nil {
		t.Fatalf("GET /api/v1/status on MANAGEMENT_LISTEN %s: %d %s", s.mgmt, code, body)
	}
	s.wantRebound(t, "GET /api/v1/status", api, "127.0.0.2")
}

// TestListenHostTwoReplicas: two serve processes over two copies of one
// state (the same listeners, the same ports) run side by side, one with
// P2PTLS_LISTEN_HOST=127.0.0.2, the other with --listen-host 127.0.0.3,
// each with its own MANAGEMENT_LISTEN, and each answers on its own
// address with its own certificate.
func TestListenHostTwoReplicas(t *testing.T) {
	t.Parallel()
	a := newListenHostState(t)
	b := &lhState{publicServe: newPublicState(t), port: a.port, httpPort: a.httpPort}
	if out, err := exec.Command("cp", "-a", a.dir, b.dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the state: %v %s", err, out)
	}
	// A certificate of its own, so that a handshake tells the replicas apart.
	b.must(t, "cert", "issue", "app")
	serialA, serialB := appSerial(t, a.dir), appSerial(t, b.dir)
	if serialA == serialB {
		t.Fatal("the copies serve the same certificate; the test could not tell them apart")
	}
	if ca, cb := mustRead(t, filepath.Join(a.dir, "p2ptls.toml")), mustRead(t, filepath.Join(b.dir, "p2ptls.toml")); string(ca) != string(cb) {
		t.Fatalf("the copies' configurations differ:\n%s\n%s", ca, cb)
	}

	a.env = append(a.env, "P2PTLS_LISTEN_HOST=127.0.0.2")
	a.serve = startServe(t, a.env)
	b.serve = startServe(t, b.env, "--listen-host", "127.0.0.3")

	for _, tc := range []struct {
		s      *lhState
		host   string
		serial string
	}{{a, "127.0.0.2", serialA}, {b, "127.0.0.3", serialB}} {
		if got := servedAppSerial(t, tc.host+":"+a.port); got != tc.serial {
			t.Errorf("on %s: served serial %s, want that replica's %s", tc.host, got, tc.serial)
		}
		st := tc.s.statusJSON(t)
		if st.PID != tc.s.serve.cmd.Process.Pid {
			t.Errorf("status of %s reports pid %d, want %d", tc.host, st.PID, tc.s.serve.cmd.Process.Pid)
		}
		tc.s.wantRebound(t, "status of the replica on "+tc.host, st, tc.host)
	}
	lhRefused(t, "127.0.0.1:"+a.port)

	// One replica stopping leaves the other serving.
	a.serve.stop(t)
	lhRefused(t, "127.0.0.2:"+a.port)
	if got := servedAppSerial(t, "127.0.0.3:"+a.port); got != serialB {
		t.Errorf("after the other stopped, 127.0.0.3 served %s, want %s", got, serialB)
	}
}

// TestListenHostRefusesBadValues: a --listen-host (or P2PTLS_LISTEN_HOST)
// that is no host exits 2 with one sentence naming it and the fix, before
// anything is written.
func TestListenHostRefusesBadValues(t *testing.T) {
	t.Parallel()
	s := newListenHostState(t)
	tests := []struct {
		desc, value, says string
	}{
		{"a port", "127.0.0.2:8443", `has port 8443; give only the host`},
		{"an IPv6 address with a port", "[::1]:443", `has port 443`},
		{"a URL", "https://127.0.0.2", "is a URL"},
		{"IPv4 in brackets", "[127.0.0.2]", "not an IPv6 address"},
		{"an unmatched bracket", "[::1", "unmatched bracket"},
		{"a wildcard", "*.example.test", "is a wildcard"},
		{"a space", "replica two", `contains " "`},
		{"a numeric name", "127.2", "numeric label"},
	}
	before := snapshot(t, s.dir)
	for _, tc := range tests {
		for _, how := range []string{"flag", "env"} {
			t.Run(tc.desc+" by "+how, func(t *testing.T) {
				var r result
				if how == "flag" {
					r = runWithin(t, 20*time.Second, s.env, "serve", "--listen-host", tc.value)
				} else {
					r = runWithin(t, 20*time.Second, append(s.env[:len(s.env):len(s.env)], "P2PTLS_LISTEN_HOST="+tc.value), "serve")
				}
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				if r.code != 2 || !strings.HasPrefix(lines[0], "p2ptls: error: --listen-host (P2PTLS_LISTEN_HOST): ") || !strings.Contains(lines[0], tc.says) {
					t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and an error that says %q", r.code, r.stderr, tc.says)
				}
				if len(lines) != 2 || !strings.HasPrefix(lines[1], "p2ptls: hint: give this replica's IP address") {
					t.Errorf("stderr is not the error and its hint:\n%s", r.stderr)
				}
			})
		}
	}
	assertSameSnapshot(t, before, snapshot(t, s.dir))
	lhRefused(t, "127.0.0.1:"+s.port)
}

// TestListenHostNotOnThisMachine: a listen host that is no address of this
// machine stops serve at bind (exit 1) with a sentence naming the
// listener, the address and the fix.
func TestListenHostNotOnThisMachine(t *testing.T) {
	t.Parallel()
	s := newListenHostState(t)
	// 192.0.2.1 is TEST-NET-1: on no machine.
	r := runWithin(t, 20*time.Second, s.env, "serve", "--listen-host", "192.0.2.1")
	want := `p2ptls: error: listener "web": cannot listen on 192.0.2.1:` + s.port + `, its address 127.0.0.1:` + s.port +
		` rebound by --listen-host 192.0.2.1: bind: cannot assign requested address`
	if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "p2ptls: hint: give --listen-host (P2PTLS_LISTEN_HOST) an address this machine has") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 with %q and the hint", r.code, r.stderr, want)
	}
	lhRefused(t, s.mgmt) // management closed again
}
