package management

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// now0 is the fixed clock of every test that does not need the wall clock.
var now0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// allFiles are auto mode's four files.
var allFiles = []string{CACertFile, CAKeyFile, ServerCertFile, ServerKeyFile}

// testNames are the server names most tests issue for.
func testNames() pki.Names {
	return pki.ParseNames([]string{"mgmt.example.com", "10.0.0.1", "localhost", "127.0.0.1", "::1"})
}

// newStore returns a store rooted in a directory that does not exist yet, so
// that the store creates it (and its mode can be checked).
func newStore(t *testing.T) (*state.Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	return state.OpenDir(root, time.Second), root
}

// mustInit runs Init and fails the test on error.
func mustInit(t *testing.T, s state.Store, names pki.Names, now time.Time) {
	t.Helper()
	if err := Init(context.Background(), s, names, now); err != nil {
		t.Fatalf("Init: %v", err)
	}
}

// snapshot reads auto mode's files; a missing file has no entry.
func snapshot(t *testing.T, s state.Store) map[string][]byte {
	t.Helper()
	files := make(map[string][]byte)
	for _, name := range allFiles {
		b, err := s.Read(context.Background(), name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		files[name] = b
	}
	return files
}

// assertSame fails unless names have the same presence and content in both
// snapshots.
func assertSame(t *testing.T, before, after map[string][]byte, names ...string) {
	t.Helper()
	for _, name := range names {
		b, inBefore := before[name]
		a, inAfter := after[name]
		if inBefore != inAfter || !bytes.Equal(b, a) {
			t.Errorf("%s changed (present before: %v, after: %v)", name, inBefore, inAfter)
		}
	}
}

// assertChanged fails unless names exist in after with a different content.
func assertChanged(t *testing.T, before, after map[string][]byte, names ...string) {
	t.Helper()
	for _, name := range names {
		a, ok := after[name]
		if !ok {
			t.Errorf("%s is missing", name)
		} else if bytes.Equal(before[name], a) {
			t.Errorf("%s did not change", name)
		}
	}
}

// loadPair parses a certificate and key from the store, checking they match.
func loadPair(t *testing.T, s state.Store, certFile, keyFile string) *pki.KeyPair {
	t.Helper()
	certPEM, err := s.Read(context.Background(), certFile)
	if err != nil {
		t.Fatalf("read %s: %v", certFile, err)
	}
	keyPEM, err := s.Read(context.Background(), keyFile)
	if err != nil {
		t.Fatalf("read %s: %v", keyFile, err)
	}
	kp, err := pki.LoadKeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("load %s and %s: %v", certFile, keyFile, err)
	}
	return kp
}

// verifyServer checks that srv chains to ca at the time at, for TLS servers.
func verifyServer(t *testing.T, ca, srv *x509.Certificate, at time.Time) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at}); err != nil {
		t.Errorf("server certificate does not verify against the CA: %v", err)
	}
}

// sans returns the SANs of cert as sorted strings.
func sans(cert *x509.Certificate) []string {
	return sortedNames(pki.Names{DNS: cert.DNSNames, IPs: cert.IPAddresses})
}

// sortedNames returns n's DNS names and IP addresses as sorted strings.
func sortedNames(n pki.Names) []string {
	out := slices.Clone(n.DNS)
	for _, ip := range n.IPs {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

// writeFile writes data to name in dir and returns its path.
func writeFile(t *testing.T, dir, name string, data ...[]byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, bytes.Join(data, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newKeyPEM returns a fresh private key as PEM, matching no certificate.
func newKeyPEM(t *testing.T) []byte {
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

// mustCA returns a new CA valid from now.
func mustCA(t *testing.T, cn string, now time.Time) *pki.KeyPair {
	t.Helper()
	ca, err := pki.NewCA(cn, now, pki.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// mustServer returns a server certificate for hosts from ca.
func mustServer(t *testing.T, ca *pki.KeyPair, now time.Time, validity time.Duration, hosts ...string) *pki.KeyPair {
	t.Helper()
	kp, err := pki.IssueServer(ca, pki.ParseNames(hosts), now, validity)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// chain is what an operator hands to mode provided: a leaf from an
// intermediate from a root.
type chain struct {
	root, inter, leaf *pki.KeyPair
}

// pem returns leaf, intermediate and root, in that order.
func (c chain) pem() []byte {
	return bytes.Join([][]byte{c.leaf.CertPEM, c.inter.CertPEM, c.root.CertPEM}, nil)
}

// newChain builds a root, an intermediate and a leaf for mgmt.example.com
// valid for leafValidity from now. pki.NewCA makes roots with MaxPathLen 0,
// so a verifier would refuse the intermediate; nothing here verifies the
// chain, only its order matters.
func newChain(t *testing.T, now time.Time, leafValidity time.Duration) chain {
	t.Helper()
	root := mustCA(t, "Test Root", now)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "Test Intermediate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, &key.PublicKey, root.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	inter := &pki.KeyPair{CertPEM: pki.EncodeCert(der), KeyPEM: keyPEM, Cert: cert, Key: key}
	leaf := mustServer(t, inter, now, leafValidity, "mgmt.example.com", "10.0.0.1")
	return chain{root: root, inter: inter, leaf: leaf}
}

// wantFault and wantHint check an error's kind, message and hint.
var (
	wantFault = statetest.WantFault
	wantHint  = statetest.WantHint
)
