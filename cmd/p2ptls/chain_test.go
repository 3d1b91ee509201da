package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// testRoot is an operator's own PKI: a root and an intermediate that signs
// the certificates given to MANAGEMENT_TLS_CERT_FILE.
type testRoot struct {
	root, inter *pki.KeyPair
}

func (r *testRoot) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.root.Cert)
	return p
}

// writeProvided creates a root and intermediate and writes a leaf for
// mgmt.example.test valid from notBefore to notAfter, with its chain.
func writeProvided(t *testing.T, certFile, keyFile string, notBefore, notAfter time.Time) *testRoot {
	t.Helper()
	root := testCA(t, "test operator root", nil)
	r := &testRoot{root: root, inter: testCA(t, "test operator intermediate", root)}
	r.issueInto(t, certFile, keyFile, notBefore, notAfter)
	return r
}

// testCA makes a CA signed by parent, or self-signed when parent is nil.
// (pki.NewCA makes path-length-zero CAs, which cannot have intermediates.)
func testCA(t *testing.T, name string, parent *pki.KeyPair) *pki.KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().AddDate(-1, 0, 0),
		NotAfter:              time.Now().AddDate(2, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	signerCert, signerKey := tmpl, any(key)
	if parent != nil {
		signerCert, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyPEM, _ := pki.EncodeKey(key)
	return &pki.KeyPair{Cert: cert, Key: key, CertPEM: pki.EncodeCert(der), KeyPEM: keyPEM}
}

// issueInto writes a new leaf + intermediate chain and its key, each file
// replaced by rename as an operator's rotation would.
func (r *testRoot) issueInto(t *testing.T, certFile, keyFile string, notBefore, notAfter time.Time) {
	t.Helper()
	now := notBefore.Add(time.Hour) // pki back-dates by an hour
	leaf, err := pki.IssueServer(r.inter, pki.ParseNames([]string{"mgmt.example.test", "localhost"}), now, notAfter.Sub(now))
	if err != nil {
		t.Fatal(err)
	}
	writeRenamed(t, keyFile, leaf.KeyPEM, 0o600)
	writeRenamed(t, certFile, append(leaf.CertPEM, r.inter.CertPEM...), 0o644)
}

func writeRenamed(t *testing.T, file string, data []byte, mode os.FileMode) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(file), ".tmp-"+filepath.Base(file))
	if err := os.WriteFile(tmp, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// otherKey writes a key that matches no certificate of the test.
func otherKey(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pki.EncodeKey(key)
	f := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
