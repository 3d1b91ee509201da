package mappings

import (
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// FuzzCheckPair: whatever certificate and key bytes are uploaded (cert_pem
// and key_pem of the API, --cert-file and --key-file), the check never
// panics, and what it accepts is a pair that serves the hosts: the key
// matches the leaf, the leaf covers every host and is valid now (or the
// caller allowed otherwise and got a warning), and no RSA key is under
// 2048 bits.
func FuzzCheckPair(f *testing.F) {
	f.Add(fixtureBytes(f, "fuzz-ec.crt"), fixtureBytes(f, "fuzz-ec.key"), "fuzz.example.com", false)
	f.Add(fixtureBytes(f, "fuzz-ec.crt"), fixtureBytes(f, "fuzz-ec.key"), "*.fuzz.example.com", true)
	f.Add(fixtureBytes(f, "fuzz-rsa1024.crt"), fixtureBytes(f, "fuzz-rsa1024.key"), "fuzz.example.com", false)
	f.Add(fixtureBytes(f, "fuzz-ca-leaf.crt"), fixtureBytes(f, "fuzz-ca-leaf.key"), "fuzz.example.com", false)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), "a.example.com", false)
	f.Add([]byte{}, []byte{}, "", false)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, certPEM, keyPEM []byte, host string, allowExpired bool) {
		hosts := []string{host}
		kp, warnings, err := checkPair(hosts, certPEM, keyPEM, "the certificate", "the key", allowExpired, now)
		if err != nil {
			if kp != nil || warnings != nil {
				t.Fatalf("refused, yet returned %v, %q", kp, warnings)
			}
			return
		}
		if again, err := pki.LoadKeyPair(certPEM, keyPEM); err != nil || !again.Cert.Equal(kp.Cert) {
			t.Fatalf("accepted a pair that does not load: %v", err)
		}
		if missing := uncovered(hosts, kp.Cert); len(missing) > 0 {
			t.Fatalf("accepted a certificate that does not cover %q", missing)
		}
		if k, ok := kp.Cert.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < pki.MinRSABits {
			t.Fatalf("accepted RSA %d", k.N.BitLen())
		}
		outside := now.After(kp.Cert.NotAfter) || now.Before(kp.Cert.NotBefore)
		if outside && (!allowExpired || len(warnings) == 0 || !strings.Contains(warnings[0], "clients refuse it")) {
			t.Fatalf("accepted a certificate outside its validity without a warning: %q", warnings)
		}
	})
}

func fixtureBytes(f *testing.F, name string) []byte {
	f.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}
