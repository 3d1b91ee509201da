package management

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

// Mode provided's files go through pki.LoadKeyPair, so an RSA key under
// 2048 bits is refused there too (serve refuses to start, exit 2).
func TestLoadProvidedRefusesShortRSA(t *testing.T) {
	now := time.Now()
	for _, bits := range []int{1024, 2048} {
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mgmt.example.com"}, DNSNames: []string{"mgmt.example.com"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
		if err := os.WriteFile(certFile, pki.EncodeCert(der), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = LoadProvided(certFile, keyFile, now)
		switch {
		case bits < 2048 && (err == nil || fault.KindOf(err) != fault.Invalid || !strings.Contains(err.Error(), "RSA key has 1024 bits")):
			t.Errorf("RSA %d: LoadProvided = %v (kind %v), want Invalid naming the key size", bits, err, fault.KindOf(err))
		case bits >= 2048 && err != nil:
			t.Errorf("RSA %d: LoadProvided = %v", bits, err)
		}
	}
}
