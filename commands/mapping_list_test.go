package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// everyStatusState makes a state with a mapping of every source in every
// status (and served_by, an upstream, a last error JSON escapes) around
// the real clock, which the commands read.
func everyStatusState(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	dir := filepath.Join(t.TempDir(), "state")
	s := state.OpenDir(dir, 2*time.Second)
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: ":8443"}); err != nil {
		t.Fatal(err)
	}
	cert := func(host string, from time.Time, lifetime time.Duration) *pki.KeyPair {
		kp, err := pki.SelfSigned(pki.ParseNames([]string{host}), from, lifetime)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	manual := func(id string, kp *pki.KeyPair) mappings.Input {
		return mappings.Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceManual},
			CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM, AllowExpired: true}
	}
	acmeIn := func(id string) mappings.Input {
		return mappings.Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}}
	}
	files := t.TempDir()
	fileIn := func(id string) mappings.Input {
		kp := cert(id+".example.com", now.Add(-day), 60*day)
		c, k := filepath.Join(files, id+".crt"), filepath.Join(files, id+".key")
		for p, b := range map[string][]byte{c: kp.CertPEM, k: kp.KeyPEM} {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return mappings.Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceFile, CertFile: c, KeyFile: k}}
	}
	ss := func(id string, hosts ...string) mappings.Input {
		return mappings.Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: hosts, Source: state.SourceSelfSigned, Days: 90, Upstream: "http://127.0.0.1:8080/?a=1&b=2"}}
	}
	for _, in := range []mappings.Input{
		ss("self-valid", "self-valid.example.com"),
		ss("wild", "*.example.com"),
		ss("lost", "lost.example.com"),
		ss("garbage", "garbage.example.com"),
		manual("up-expiring", cert("up-expiring.example.com", now.Add(-70*day), 90*day)),
		manual("up-expired", cert("up-expired.example.com", now.Add(-100*day), 90*day)),
		manual("up-future", cert("up-future.example.com", now.Add(10*day), 90*day)),
		fileIn("file-valid"),
		fileIn("file-gone"),
		acmeIn("acme-pending"),
		acmeIn("acme-failed"),
		acmeIn("acme-valid"),
	} {
		if _, _, err := mappings.Add(ctx, s, in, now); err != nil {
			t.Fatalf("add %s: %v", in.Mapping.ID, err)
		}
	}
	err := state.Update(ctx, s, "test", func(tx *state.Tx) error {
		if err := mappings.SaveMeta(ctx, tx, "acme-failed", mappings.Meta{Source: state.SourceACME, LastAttemptAt: now.Add(-time.Hour).UTC(),
			LastError: `urn:ietf:params:acme:error:dns: <NXDOMAIN> & "quoted"`, Attempts: 3, RetryAt: now.Add(time.Hour).UTC()}); err != nil {
			return err
		}
		kp := cert("acme-valid.example.com", now.Add(-day), 90*day)
		return mappings.WriteCertificate(ctx, tx, "acme-valid", kp, mappings.Meta{Source: state.SourceACME, IssuedAt: now.UTC().Truncate(time.Second),
			NotAfter: kp.Cert.NotAfter, FingerprintSHA256: pki.Fingerprint(kp.Cert), NextRenewalAt: now.Add(30 * day).UTC().Truncate(time.Second)})
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"lost": nil, "garbage": []byte("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")} {
		p := filepath.Join(dir, filepath.FromSlash(mappings.MappingDir(name)), mappings.CertFileName)
		if data == nil {
			err = os.Remove(p)
		} else {
			err = os.WriteFile(p, data, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(files, "file-gone.crt")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestListOutputIsMarshalIndent: "mapping list --output json" and "cert
// list --output json", streamed and written by hand, are byte for byte
// json.MarshalIndent of the list (printJSON), for a state with every
// source and status: on the first run (no memo: it memoizes files old
// enough to trust) and on runs that read them from the memo.
func TestListOutputIsMarshalIndent(t *testing.T) {
	ctx := context.Background()
	dir := everyStatusState(t)
	// Old enough for the memo to trust by identity (state's racy window).
	time.Sleep(1100 * time.Millisecond)
	memo := filepath.Join(dir, filepath.FromSlash(state.MemoDir), "certs")
	want := func() []byte {
		t.Helper()
		if err := os.Remove(memo); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		s := state.OpenDir(dir, 2*time.Second)
		cfg, err := state.LoadConfig(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		list, err := mappings.List(ctx, s, cfg, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		statuses := map[string]bool{}
		for _, info := range list {
			statuses[info.Status] = true
			if info.ID == "lost" && info.ServedBy != "wild" {
				t.Fatalf("lost: served_by %q, want wild", info.ServedBy)
			}
		}
		for _, st := range []string{mappings.StatusValid, mappings.StatusExpiring, mappings.StatusExpired, mappings.StatusPending, mappings.StatusFailed, mappings.StatusMissing} {
			if !statuses[st] {
				t.Fatalf("the state has no mapping of status %s", st)
			}
		}
		var b bytes.Buffer
		if err := printJSON(&b, list); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(memo); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}()
	if !json.Valid(want) || !bytes.Contains(want, []byte(`\u003cNXDOMAIN\u003e \u0026 \"quoted\"`)) {
		t.Fatalf("the expected document lacks the escaped last error:\n%s", want)
	}
	for _, cmd := range [][]string{{"mapping", "list"}, {"cert", "list"}} {
		for _, run := range []string{"no memo: it memoizes", "from the memo", "from the memo again"} {
			var stdout, stderr bytes.Buffer
			args := append([]string{"p2ptls", "--config-dir", dir}, append(slices.Clone(cmd), "--output", "json")...)
			if code := Main(ctx, args, &stdout, &stderr); code != 0 {
				t.Fatalf("%q (%s): exit %d:\n%s", cmd, run, code, stderr.String())
			}
			if !bytes.Equal(stdout.Bytes(), want) {
				t.Errorf("%q (%s) printed:\n%s\nwant:\n%s", cmd, run, stdout.Bytes(), want)
			}
			if _, err := os.Stat(memo); err != nil {
				t.Errorf("%q (%s) left no memo: %v", cmd, run, err)
			}
		}
		if err := os.Remove(memo); err != nil {
			t.Fatal(err)
		}
	}
}
