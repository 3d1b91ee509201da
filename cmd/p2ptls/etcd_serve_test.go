package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// etcdReplica is one serve on the etcd store, rebound onto its own
// loopback address, with its own local directory and management port.
type etcdReplica struct {
	host string
	env  []string
	proc *serveProc
}

// servedFingerprint is the SHA-256 of the leaf served on addr for sni.
func servedFingerprint(addr, sni string) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:]), nil
}

// TestReplicasOnEtcdServeOneState: three serve replicas on one etcd, each
// on its own address (--listen-host), serve what the CLI put into etcd,
// present a mapping added later, keep serving while etcd is stopped, a
// replica restarted meanwhile starts from its snapshot, and all of them
// catch up when etcd is back.
func TestReplicasOnEtcdServeOneState(t *testing.T) {
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	port := lhPortFree(t, append([]string{"127.0.0.1"}, hosts...)...)
	c := etcdtest.Start(t)
	f := &etcdFleet{t: t, url: c.URL("p2ptls/test"), port: port}
	f.cliEnv, _ = etcdEnv(t, f.url)
	cli, fingerprint, presents, url, cliEnv := f.cli, f.fingerprint, f.presents, f.url, f.cliEnv
	cli("listener", "add", "web", "--addr", "127.0.0.1:"+port)
	cli("mapping", "add", "--listener", "web", "--host", "app.example.test", "--self-signed", "--id", "app")
	f.start(hosts...)
	replicas := f.replicas
	presents("app at start", "app.example.test", fingerprint("app"), replicas, 20*time.Second)

	cli("mapping", "add", "--listener", "web", "--host", "new.example.test", "--self-signed", "--id", "new")
	presents("a mapping added", "new.example.test", fingerprint("new"), replicas, 2*time.Second)
	appFP, newFP := fingerprint("app"), fingerprint("new")

	// etcd stops: every replica keeps serving the last good state, and a
	// CLI command fails with exit 1 naming the endpoint.
	c.Stop(0)
	down := time.Now()
	presents("etcd stopped", "new.example.test", newFP, replicas, 2*time.Second)
	t0 := time.Now()
	r := p2ptls(t, cliEnv, "mapping", "list")
	t.Logf("mapping list failed after %v", time.Since(t0).Round(time.Millisecond))
	if r.code != 1 || !strings.Contains(r.stderr, c.Endpoints()[0]) {
		t.Errorf("mapping list with etcd down: exit %d, stderr %q; want exit 1 naming %s", r.code, r.stderr, c.Endpoints()[0])
	}
	// A replica restarted while etcd is down starts from its snapshot.
	t0 = time.Now()
	replicas[0].proc.stop(t)
	stopped := time.Since(t0)
	t.Logf("a replica stopped with etcd down in %v", stopped.Round(time.Millisecond))
	// The replica knows etcd is away by now (its heartbeat), so no step of
	// shutdown waits on etcd: a few ms, as with etcd up. Had it not
	// noticed yet, its last status would notice within the snapshot's
	// 3 s probe bound; the rest is margin for -race on a loaded machine.
	if stopped > 10*time.Second {
		t.Errorf("a replica took %v to stop with etcd down; want it within 10s", stopped.Round(time.Millisecond))
	}
	t0 = time.Now()
	replicas[0].proc = startServe(t, replicas[0].env, "--listen-host", replicas[0].host)
	presents("restarted from its snapshot", "app.example.test", appFP, replicas[:1], 20*time.Second)
	t.Logf("a replica started from its snapshot in %v", time.Since(t0).Round(time.Millisecond))
	// The others noticed etcd gone by now (heartbeat) and serve on.
	presents("etcd away for a while", "new.example.test", newFP, replicas, 2*time.Second)

	// etcd returns after 45 s away, long enough for gRPC's default
	// reconnection back-off to have grown past 20 s: a change made then
	// reaches every replica, the restarted one included, within seconds.
	time.Sleep(time.Until(down.Add(45 * time.Second)))
	c.Restart(t, 0)
	back := time.Now()
	t.Logf("etcd was down for %v", time.Since(down).Round(time.Millisecond))
	cli("mapping", "add", "--listener", "web", "--host", "late.example.test", "--self-signed", "--id", "late")
	// Within a few seconds of etcd answering (gRPC's reconnection back-off
	// is capped at 1 s, the snapshot's at 2 s, its probe at 3 s).
	presents("a mapping added after etcd came back", "late.example.test", fingerprint("late"), replicas, 8*time.Second)
	t.Logf("the mapping added after etcd came back was served by every replica %v after etcd answered again", time.Since(back).Round(time.Millisecond))
	if logs := replicas[0].proc.output(); !strings.Contains(logs, filepath.Base(url)) && !strings.Contains(logs, "snapshot") {
		t.Logf("replica log:\n%s", logs)
	}
}
