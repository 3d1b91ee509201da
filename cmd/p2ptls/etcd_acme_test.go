package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
	"github.com/p2pstream/p2ptls/state/testkit/etcdtest"
)

// etcdFleet is a state on etcd, the CLI on it, and serve replicas on it,
// each rebound onto its own loopback address (--listen-host).
type etcdFleet struct {
	t        *testing.T
	cliEnv   []string
	url      string
	port     string // the public HTTPS listener's port, on every replica
	replicas []*etcdReplica
}

func (f *etcdFleet) cli(args ...string) string {
	f.t.Helper()
	r := p2ptls(f.t, f.cliEnv, args...)
	if r.code != 0 {
		f.t.Fatalf("p2ptls %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// start starts a replica on each of hosts.
func (f *etcdFleet) start(hosts ...string) {
	f.t.Helper()
	for _, h := range hosts {
		env, _ := etcdEnv(f.t, f.url)
		r := &etcdReplica{host: h, env: append(env, "MANAGEMENT_LISTEN="+freeAddr(f.t))}
		r.proc = startServe(f.t, r.env, "--listen-host", h)
		f.replicas = append(f.replicas, r)
	}
}

// fingerprint is the SHA-256 (lower-case hex) of mapping id's leaf.
func (f *etcdFleet) fingerprint(id string) string {
	f.t.Helper()
	var info struct {
		Certificate struct {
			FingerprintSHA256 string `json:"fingerprint_sha256"`
		} `json:"certificate"`
	}
	out := f.cli("cert", "show", id, "--output", "json")
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.Certificate.FingerprintSHA256 == "" {
		f.t.Fatalf("cert show %s: %v\n%s", id, err, out)
	}
	return strings.ToLower(strings.ReplaceAll(info.Certificate.FingerprintSHA256, ":", ""))
}

// presents waits until every one of among serves the certificate want
// for sni, all within the same bound.
func (f *etcdFleet) presents(what, sni, want string, among []*etcdReplica, within time.Duration) {
	f.t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for _, r := range among {
		eventually(f.t, max(time.Until(deadline), time.Millisecond), func() error {
			got, err := servedFingerprint(net.JoinHostPort(r.host, f.port), sni)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s serves %s for %s, want %s", r.host, got, sni, want)
			}
			return nil
		})
	}
	f.t.Logf("%s: served by %d replicas after %v", what, len(among), time.Since(start).Round(time.Millisecond))
}

// status is mapping id's status in mapping list.
func (f *etcdFleet) status(id string) mappingJSON {
	f.t.Helper()
	var list []mappingJSON
	if err := json.Unmarshal([]byte(f.cli("mapping", "list", "--output", "json")), &list); err != nil {
		f.t.Fatal(err)
	}
	for _, m := range list {
		if m.ID == id {
			return m
		}
	}
	f.t.Fatalf("no mapping %s", id)
	return mappingJSON{}
}

// orderer waits until exactly one replica has logged that it orders
// mapping id, and returns its index.
func (f *etcdFleet) orderer(id string, within time.Duration) int {
	f.t.Helper()
	line := `msg="ordering a certificate" mapping=` + id + " "
	found := -1
	eventually(f.t, within, func() error {
		found = -1
		for i, r := range f.replicas {
			if n := strings.Count(r.proc.output(), line); n > 0 {
				if found >= 0 || n > 1 {
					f.t.Fatalf("mapping %s ordered by more than one replica, or twice", id)
				}
				found = i
			}
		}
		if found < 0 {
			return fmt.Errorf("no replica orders mapping %s yet", id)
		}
		return nil
	})
	return found
}

// TestReplicasOnEtcdIssueOnce: three serve replicas on one etcd and one
// ACME CA (pebble). An ACME mapping added from the CLI is ordered exactly
// once, by one replica, and every replica presents it within 2 s; the CA's
// HTTP-01 and TLS-ALPN-01 validations are sent to a replica that did not
// start the order and succeed (the challenges live in etcd); a replica
// killed with SIGKILL mid-order is taken over by another after its
// claim's lease expires.
func TestReplicasOnEtcdIssueOnce(t *testing.T) {
	t.Parallel()
	hosts := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	all := append([]string{"127.0.0.1"}, hosts...)
	web := lhPortFree(t, all...)
	plain := lhPortFree(t, all...)
	for plain == web {
		plain = lhPortFree(t, all...)
	}
	webPort, _ := strconv.Atoi(web)
	plainPort, _ := strconv.Atoi(plain)
	ca := acmetest.Start(t, acmetest.Options{HTTPPort: plainPort, TLSPort: webPort})
	proxy := ca.StartFaultProxy(t)
	c := etcdtest.Start(t)
	f := &etcdFleet{t: t, url: c.URL("p2ptls/acme"), port: web}
	f.cliEnv, _ = etcdEnv(t, f.url)
	f.cli("acme", "account", "register", "--email", "ops@example.test", "--directory", proxy.DirectoryURL, "--ca-file", ca.CAFile, "--agree-tos")
	f.cli("listener", "add", "web", "--addr", "127.0.0.1:"+web, "--http-addr", "127.0.0.1:"+plain)
	f.start(hosts...)

	// Validations wait at the proxy until the test has pointed each name at
	// a replica other than the one that ordered it.
	proxy.Hold("challenge")
	mappings := map[string]string{"http": "http-01", "alpn": "tls-alpn-01"}
	for id, ch := range mappings {
		f.cli("mapping", "add", "--listener", "web", "--host", id+".example.test", "--acme", "--challenge", ch, "--id", id)
	}
	for id := range mappings {
		i := f.orderer(id, 30*time.Second)
		other := f.replicas[(i+1)%len(f.replicas)]
		ca.Resolve(t, id+".example.test", other.host)
		t.Logf("mapping %s ordered by %s, validated at %s", id, f.replicas[i].host, other.host)
	}
	eventually(t, 30*time.Second, func() error {
		if n := proxy.Waiting("challenge"); n != len(mappings) {
			return fmt.Errorf("%d validations wait at the proxy, want %d", n, len(mappings))
		}
		return nil
	})
	proxy.Release("challenge")
	for id := range mappings {
		eventually(t, 60*time.Second, func() error {
			if m := f.status(id); m.Status != "valid" {
				return fmt.Errorf("mapping %s: %+v", id, m)
			}
			return nil
		})
	}
	for id := range mappings {
		f.presents("mapping "+id+" issued", id+".example.test", f.fingerprint(id), f.replicas, 2*time.Second)
	}
	// The replicas that found the claim held look again after BusyRetry
	// and find the certificate in place: still one order per mapping.
	time.Sleep(12 * time.Second)
	if n := proxy.Count("new-order"); n != len(mappings) {
		t.Errorf("%d orders at the CA for %d mappings, want one each", n, len(mappings))
	}
	for id := range mappings {
		if m := f.status(id); m.Attempts != 0 || m.LastError != "" {
			t.Errorf("mapping %s after issuance: %+v", id, m)
		}
	}

	// The replica that orders is killed mid-order (its validation held at
	// the proxy): another one takes the order over once the dead one's
	// claim has expired with its lease, and all the others present it.
	proxy.Hold("challenge")
	orders := proxy.Count("new-order")
	f.cli("mapping", "add", "--listener", "web", "--host", "kill.example.test", "--acme", "--challenge", "http-01", "--id", "kill")
	i := f.orderer("kill", 30*time.Second)
	eventually(t, 30*time.Second, func() error {
		if proxy.Waiting("challenge") != 1 {
			return fmt.Errorf("the order's validation has not reached the proxy")
		}
		return nil
	})
	dead := f.replicas[i]
	if err := dead.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-dead.proc.done
	_ = dead.proc.cmd.Wait()
	killed := time.Now()
	var alive []*etcdReplica
	for _, r := range f.replicas {
		if r != dead {
			alive = append(alive, r)
		}
	}
	// The dead replica's held request goes nowhere: its client is gone.
	eventually(t, 10*time.Second, func() error {
		if n := proxy.Waiting("challenge"); n != 0 {
			return fmt.Errorf("%d validations still wait", n)
		}
		return nil
	})
	ca.Resolve(t, "kill.example.test", alive[0].host)
	proxy.Release("challenge")
	eventually(t, 90*time.Second, func() error {
		if m := f.status("kill"); m.Status != "valid" {
			return fmt.Errorf("mapping kill: %+v", m)
		}
		return nil
	})
	t.Logf("the killed replica's order was finished by another %v after the kill", time.Since(killed).Round(time.Millisecond))
	f.presents("mapping kill taken over", "kill.example.test", f.fingerprint("kill"), alive, 2*time.Second)
	if n := proxy.Count("new-order") - orders; n != 2 {
		t.Errorf("%d orders for the killed replica's mapping, want 2 (its own, then the one that finished)", n)
	}
	if r := p2ptls(t, f.cliEnv, "doctor"); r.code != 0 {
		t.Errorf("doctor after the take-over: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	left, err := cli.Get(ctx, "/p2ptls/acme/v1/files/acme/challenges/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range left.Kvs {
		t.Errorf("challenge left in etcd: %s", kv.Key)
	}
}
