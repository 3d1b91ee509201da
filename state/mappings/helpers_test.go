package mappings

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// now0 is the fixed clock of every test.
var now0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// newStore returns a state with listeners "web" and "api" and an enabled
// DNS credential "cf".
func newStore(t *testing.T) (*state.Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	s := state.OpenDir(root, 2*time.Second)
	ctx := context.Background()
	for _, l := range []state.Listener{{Name: "web", Addr: ":8443"}, {Name: "api", Addr: ":9443"}} {
		if _, err := state.AddListener(ctx, s, l); err != nil {
			t.Fatal(err)
		}
	}
	addCredential(t, s, "cf", true)
	return s, root
}

// addCredential saves a DNS credential reference (the token itself does not
// matter here).
func addCredential(t *testing.T, s state.Store, name string, enabled bool) {
	t.Helper()
	err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
		c := tx.Config
		c.DNSCredentials = append(c.DNSCredentials, state.DNSCredential{Name: name, Provider: state.ProviderCloudflare, Enabled: enabled})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mustAdd adds in at now0 and fails the test on error.
func mustAdd(t *testing.T, s state.Store, in Input) state.Mapping {
	t.Helper()
	m, _, err := Add(context.Background(), s, in, now0)
	if err != nil {
		t.Fatalf("Add(%+v): %v", in.Mapping, err)
	}
	return m
}

func mustConfig(t *testing.T, s state.Store) *state.Config {
	t.Helper()
	cfg, err := state.LoadConfig(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// wantMode fails unless the file at p has mode.
func wantMode(t *testing.T, p string, mode fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != mode {
		t.Errorf("mode of %s = %v, want %v", p, got, mode)
	}
}

// testCA is a CA valid from a year before now0, so it can sign expired
// leaves too.
var testCA = func() *pki.KeyPair {
	ca, err := pki.NewCA("Test CA", now0.Add(-365*day), pki.CAValidity)
	if err != nil {
		panic(err)
	}
	return ca
}()

// issue returns a leaf for hosts from testCA, valid from at for validity.
func issue(t *testing.T, at time.Time, validity time.Duration, hosts ...string) *pki.KeyPair {
	t.Helper()
	kp, err := pki.IssueServer(testCA, pki.ParseNames(hosts), at, validity)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// chainPEM is what an operator uploads: the leaf, then its CA.
func chainPEM(leaf *pki.KeyPair) []byte {
	return bytes.Join([][]byte{leaf.CertPEM, testCA.CertPEM}, nil)
}

// otherKeyPEM is a private key that belongs to no certificate.
func otherKeyPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture reads a file from testdata.
func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// manual is an Input for source manual on listener web.
func manual(id string, certPEM, keyPEM []byte, hosts ...string) Input {
	return Input{
		Mapping: state.Mapping{ID: id, Listener: "web", Hosts: hosts, Source: state.SourceManual},
		CertPEM: certPEM, KeyPEM: keyPEM,
	}
}

// selfSignedIn is an Input for source self-signed.
func selfSignedIn(id, listener string, days int, hosts ...string) Input {
	return Input{Mapping: state.Mapping{ID: id, Listener: listener, Hosts: hosts, Source: state.SourceSelfSigned, Days: days}}
}

// acmeIn is an Input for source acme.
func acmeIn(id, challenge, cred string, hosts ...string) Input {
	return Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: hosts, Source: state.SourceACME, Challenge: challenge, DNSCredential: cred}}
}

// storeFile is the on-disk path of a store name.
func storeFile(root, name string) string { return filepath.Join(root, filepath.FromSlash(name)) }

func ids(infos []Info) string {
	var b strings.Builder
	for _, i := range infos {
		fmt.Fprintf(&b, "%s ", i.ID)
	}
	return strings.TrimSpace(b.String())
}

func snapshot(t *testing.T, root string) map[string]string { return statetest.Snapshot(t, root) }

// assertUnchanged fails when the state directory differs from before.
func assertUnchanged(t *testing.T, before map[string]string, root string) {
	t.Helper()
	statetest.AssertSame(t, before, statetest.Snapshot(t, root))
}

// wantFault and wantHint check an error's kind, message and hint.
var (
	wantFault = statetest.WantFault
	wantHint  = statetest.WantHint
)
