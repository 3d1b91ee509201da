package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

func selfSignedWith(t *testing.T, key crypto.Signer, isCA bool, life time.Duration) (*x509.Certificate, []byte, []byte) {
	t.Helper()
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"x.example.com"},
		NotBefore: now, NotAfter: now.Add(life), BasicConstraintsValid: true, IsCA: isCA}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	keyPEM, err := EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return c, EncodeCert(der), keyPEM
}

// LoadKeyPair is what every certificate a user gives goes through
// (uploads, file mappings, MANAGEMENT_TLS_CERT_FILE): it refuses RSA keys
// under 2048 bits.
func TestLoadKeyPairRefusesShortRSA(t *testing.T) {
	for _, tc := range []struct {
		bits int
		want string
	}{{1024, "its RSA key has 1024 bits, fewer than the 2048 p2ptls accepts"}, {2048, ""}} {
		key, err := rsa.GenerateKey(rand.Reader, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		_, certPEM, keyPEM := selfSignedWith(t, key, false, 90*24*time.Hour)
		_, err = LoadKeyPair(certPEM, keyPEM)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("RSA %d: LoadKeyPair = %v, want %q", tc.bits, err, tc.want)
		}
	}
}

func TestLeafConcerns(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		desc string
		isCA bool
		life time.Duration
		want []string
	}{
		{"plain leaf", false, 397 * 24 * time.Hour, nil},
		{"825 days", false, MaxLeafValidity, nil},
		{"825 days and a second", false, MaxLeafValidity + time.Second, []string{"is valid for 825 days"}},
		{"CA", true, 90 * 24 * time.Hour, []string{"is a CA certificate"}},
		{"CA for 200 years", true, 200 * 365 * 24 * time.Hour, []string{"is a CA certificate", "is valid for 73000 days"}},
	} {
		c, _, _ := selfSignedWith(t, key, tc.isCA, tc.life)
		got := LeafConcerns(c)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %q, want %q", tc.desc, got, tc.want)
			continue
		}
		for i := range got {
			if !strings.Contains(got[i], tc.want[i]) {
				t.Errorf("%s: %q, want %q", tc.desc, got[i], tc.want[i])
			}
		}
	}
}
