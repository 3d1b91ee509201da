package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// replicasReport is what status --output json says of the replicas.
type replicasReport struct {
	ServeRunning bool                `json:"serve_running"`
	Replicas     []runstatus.Replica `json:"replicas"`
}

// byName is the replicas of r by name.
func (r replicasReport) byName() map[string]runstatus.Replica {
	out := map[string]runstatus.Replica{}
	for _, x := range r.Replicas {
		out[x.Replica] = x
	}
	return out
}

// TestReplicasStatusOnEtcd: two serve replicas on one etcd store, each
// with its own --listen-host, MANAGEMENT_LISTEN and CONFIG_DIR, are both
// listed by status as running with their own listeners; a fallback
// handshake on one shows under it only; a third serve under a name in use
// is refused; one killed with SIGKILL turns stale after its heartbeats and
// doctor warns naming it.
func TestReplicasStatusOnEtcd(t *testing.T) {
	c := etcdtest.Start(t)
	url := c.URL("p2ptls")
	cli, _ := etcdEnv(t, url)
	must := func(args ...string) string {
		t.Helper()
		r := p2ptls(t, cli, args...)
		if r.code != 0 {
			t.Fatalf("p2ptls %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	port := lhPortFree(t, "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
	must("listener", "add", "web", "--addr", "127.0.0.1:"+port)
	must("mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--id", "app")

	replicaEnv := func(name string) []string {
		return []string{"P2PTLS_STORE=" + url, "CONFIG_DIR=" + filepath.Join(t.TempDir(), name), "MANAGEMENT_LISTEN=" + freeAddr(t),
			"P2PTLS_REPLICA_HEARTBEAT=1s"}
	}
	// A bad name is exit 2 with the sentence, before anything is written.
	if r := p2ptls(t, replicaEnv("bad"), "serve", "--replica-name", "web/a"); r.code != 2 ||
		!strings.Contains(r.stderr, `--replica-name (P2PTLS_REPLICA_NAME): replica name "web/a" has '/' at position 4`) {
		t.Errorf("serve --replica-name web/a: exit %d: %s", r.code, r.stderr)
	}
	if out := must("status", "--output", "json"); !strings.Contains(out, `"replicas": []`) {
		t.Errorf("a refused serve left a replica status:\n%s", out)
	}

	a := startServe(t, replicaEnv("a"), "--listen-host", "127.0.0.2", "--replica-name", "web-a")
	envB := replicaEnv("b")
	b := startServe(t, envB, "--listen-host", "127.0.0.3", "--replica-name", "web-b")

	status := func() replicasReport {
		t.Helper()
		var r replicasReport
		if err := json.Unmarshal([]byte(must("status", "--output", "json")), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	eventually(t, 20*time.Second, func() error {
		r := status()
		got := r.byName()
		for name, host := range map[string]string{"web-a": "127.0.0.2", "web-b": "127.0.0.3"} {
			x, ok := got[name]
			switch {
			case !ok:
				return fmt.Errorf("replica %s not listed: %+v", name, r.Replicas)
			case x.State != runstatus.ReplicaRunning || !x.ServeRunning:
				return fmt.Errorf("replica %s is %s", name, x.State)
			case x.ListenHost != host || len(x.Listeners) != 1 || x.Listeners[0].BoundAddr != host+":"+port || !x.Listeners[0].Listening:
				return fmt.Errorf("replica %s: listen_host %q, listeners %+v; want web bound on %s:%s", name, x.ListenHost, x.Listeners, host, port)
			case x.Store == nil || !x.Store.Connected:
				return fmt.Errorf("replica %s: store %+v, want connected", name, x.Store)
			}
		}
		if len(r.Replicas) != 2 || !r.ServeRunning {
			return fmt.Errorf("replicas %+v, serve_running %v; want the two, running", r.Replicas, r.ServeRunning)
		}
		return nil
	})

	// A fallback handshake on replica a counts under a only.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.2:"+port,
		&tls.Config{ServerName: "unmapped.example.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake on replica a: %v", err)
	}
	conn.Close()
	eventually(t, 10*time.Second, func() error {
		got := status().byName()
		if hits := got["web-a"].Listeners[0].FallbackHits; hits["unmapped.example.test"] != 1 {
			return fmt.Errorf("web-a fallback hits %v, want unmapped.example.test=1", hits)
		}
		if hits := got["web-b"].Listeners[0].FallbackHits; len(hits) != 0 {
			return fmt.Errorf("web-b fallback hits %v, want none", hits)
		}
		return nil
	})
	// GET /api/v1/status on replica b: itself live, and a as last written.
	var created struct{ Token string }
	if err := json.Unmarshal([]byte(must("admin", "token", "create", "ops", "--output", "json")), &created); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	must("ca", "export", "--out", caFile)
	mgmtB := strings.TrimPrefix(envB[2], "MANAGEMENT_LISTEN=")
	code, body := apiCall(t, httpsClient(caPool(t, caFile)), "GET", "https://"+mgmtB+"/api/v1/status", created.Token, nil)
	var api struct {
		replicasReport
		Replica string `json:"replica"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &api) != nil {
		t.Fatalf("GET /api/v1/status on replica b: %d %s", code, body)
	}
	if got := api.byName(); api.Replica != "web-b" || len(got) != 2 || got["web-a"].Listeners[0].FallbackHits["unmapped.example.test"] != 1 ||
		got["web-b"].State != runstatus.ReplicaRunning {
		t.Errorf("GET /api/v1/status on replica b: replica %q, replicas %+v", api.Replica, api.Replicas)
	}
	if out := must("status"); !strings.Contains(out, "web-a") || !strings.Contains(out, "web-b") || !strings.Contains(out, "LAST HEARTBEAT") {
		t.Errorf("status table lacks the replicas:\n%s", out)
	}

	// A third serve under a name in use is refused, and says why.
	third := append(replicaEnv("c"), "P2PTLS_REPLICA_NAME=web-a", "P2PTLS_LISTEN_HOST=127.0.0.4")
	if r := runServeExpectFailure(t, third); r.code != 2 || !strings.Contains(r.stderr, `replica name "web-a" is in use by the serve of pid`) {
		t.Errorf("serve under a name in use: exit %d: %s", r.code, r.stderr)
	}
	if got := status().byName(); got["web-a"].PID != a.cmd.Process.Pid || len(got) != 2 {
		t.Errorf("the refused serve changed the replicas: %+v", got)
	}

	// SIGKILL: no graceful last status; three missed heartbeats make it stale.
	if err := a.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-a.done
	_ = a.cmd.Wait()
	eventually(t, 15*time.Second, func() error {
		got := status().byName()
		if got["web-a"].State != runstatus.ReplicaStale || got["web-b"].State != runstatus.ReplicaRunning {
			return fmt.Errorf("web-a is %s, web-b %s; want stale and running", got["web-a"].State, got["web-b"].State)
		}
		return nil
	})
	doctor := func() (int, map[string]string) {
		t.Helper()
		r := p2ptls(t, cli, "doctor", "--output", "json")
		var doc struct {
			Checks []struct{ ID, Status, Message string } `json:"checks"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatalf("doctor --output json: %v: %s", err, r.stdout)
		}
		checks := map[string]string{}
		for _, c := range doc.Checks {
			checks[c.ID] = c.Status + ": " + c.Message
		}
		return r.code, checks
	}
	_, checks := doctor()
	for id, want := range map[string][]string{
		"store.replicas":     {"warn: ", "replica web-a", "sent no heartbeat"},
		"store.connected":    {"ok: ", "1 running replica"},
		"listeners.fallback": {"warn: ", "replica web-a, listener web: 1 fallback handshake", "before it stale"},
		"listeners.serving":  {"ok: ", "1 replica running (web-b)"},
	} {
		for _, w := range want {
			if !strings.Contains(checks[id], w) {
				t.Errorf("doctor %s = %q, want %q in it", id, checks[id], w)
			}
		}
	}

	// The last one stopped gracefully says so; nothing serves the mapping.
	b.stop(t)
	r := status()
	if got := r.byName(); got["web-b"].State != runstatus.ReplicaStopped || got["web-b"].StoppedAt.IsZero() || r.ServeRunning {
		t.Errorf("after a graceful stop: web-b %s, serve_running %v", got["web-b"].State, r.ServeRunning)
	}
	if code, checks := doctor(); code != 1 || !strings.HasPrefix(checks["store.replicas"], "fail: no serve replica runs on this store, and it has 1 mapping to serve") {
		t.Errorf("doctor with no replica running: exit %d, store.replicas %q", code, checks["store.replicas"])
	}
}
