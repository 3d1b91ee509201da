package pki_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// must unwraps the result of test setup, which is not expected to fail.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestParseKey(t *testing.T) {
	rsaKey := must(rsa.GenerateKey(rand.Reader, 2048))
	ecKey := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	xKey := must(ecdh.X25519().GenerateKey(rand.Reader))
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}) // secp384r1 OID

	tests := []struct {
		desc     string
		pem      []byte
		wantType string // KeyType of the parsed key; empty when an error is expected
		wantErr  string
	}{
		{"PKCS#1 RSA", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "RSA 2048", ""},
		{"SEC1 ECDSA", pemBlock("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(ecKey))), "ECDSA P-384", ""},
		{"SEC1 after EC PARAMETERS, as openssl ecparam writes it",
			append(ecParams, pemBlock("EC PRIVATE KEY", must(x509.MarshalECPrivateKey(ecKey)))...), "ECDSA P-384", ""},
		{"PKCS#8 RSA", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(rsaKey))), "RSA 2048", ""},
		{"PKCS#8 ECDSA", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(ecKey))), "ECDSA P-384", ""},
		{"PKCS#8 Ed25519", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(edKey))), "Ed25519", ""},
		{"EncodeKey output", must(pki.EncodeKey(ecKey)), "ECDSA P-384", ""},
		{"garbage", []byte("not a key at all"), "", "no PEM private key block found"},
		{"empty", nil, "", "no PEM private key block found"},
		{"certificate only", pemBlock("CERTIFICATE", []byte{1, 2, 3}), "", "no PEM private key block found"},
		{"corrupt PKCS#8", pemBlock("PRIVATE KEY", []byte{1, 2, 3}), "", `parse "PRIVATE KEY" PEM block`},
		{"PKCS#8 in a PKCS#1 block", pemBlock("RSA PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(rsaKey))), "",
			`parse "RSA PRIVATE KEY" PEM block`},
		{"encrypted", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "", "encrypted private keys are not supported"},
		{"X25519 cannot sign", pemBlock("PRIVATE KEY", must(x509.MarshalPKCS8PrivateKey(xKey))), "", "cannot sign"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			key, err := pki.ParseKey(tc.pem)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseKey error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if got := pki.KeyType(key.Public()); got != tc.wantType {
				t.Errorf("KeyType = %q, want %q", got, tc.wantType)
			}
		})
	}
}

func TestParseCertChain(t *testing.T) {
	ca := newCA(t)
	srv := must(pki.IssueServer(ca, pki.ParseNames([]string{"localhost"}), now, 24*time.Hour))
	chainPEM := append(append([]byte{}, srv.CertPEM...), ca.CertPEM...)
	corrupt := pemBlock("CERTIFICATE", []byte{1, 2, 3})

	tests := []struct {
		desc    string
		pem     []byte
		want    []*x509.Certificate
		wantErr string
	}{
		{"single certificate", ca.CertPEM, []*x509.Certificate{ca.Cert}, ""},
		{"chain in order", chainPEM, []*x509.Certificate{srv.Cert, ca.Cert}, ""},
		{"key block skipped", append(append([]byte{}, srv.KeyPEM...), srv.CertPEM...), []*x509.Certificate{srv.Cert}, ""},
		{"garbage", []byte("garbage\n"), nil, "no PEM CERTIFICATE block found"},
		{"empty", nil, nil, "no PEM CERTIFICATE block found"},
		{"key only", srv.KeyPEM, nil, "no PEM CERTIFICATE block found"},
		{"first block corrupt", corrupt, nil, "certificate 1 in PEM data"},
		{"second block corrupt", append(append([]byte{}, srv.CertPEM...), corrupt...), nil, "certificate 2 in PEM data"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := pki.ParseCertChain(tc.pem)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseCertChain error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCertChain: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d certificates, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !got[i].Equal(tc.want[i]) {
					t.Errorf("certificate %d is %q, want %q", i+1, got[i].Subject, tc.want[i].Subject)
				}
			}
		})
	}
}

func TestLoadKeyPair(t *testing.T) {
	ca := newCA(t)
	srv := must(pki.IssueServer(ca, pki.ParseNames([]string{"localhost"}), now, 24*time.Hour))
	chainPEM := append(append([]byte{}, srv.CertPEM...), ca.CertPEM...)
	rsaKey := must(rsa.GenerateKey(rand.Reader, 2048))
	rsaPEM := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))

	tests := []struct {
		desc     string
		certPEM  []byte
		keyPEM   []byte
		wantLeaf *x509.Certificate
		wantErr  string
	}{
		{"matching pair", srv.CertPEM, srv.KeyPEM, srv.Cert, ""},
		{"chain with the leaf's key", chainPEM, srv.KeyPEM, srv.Cert, ""},
		{"key of the CA, not the leaf", chainPEM, ca.KeyPEM, nil, "the private key does not match the certificate"},
		{"unrelated ECDSA key", srv.CertPEM, ca.KeyPEM, nil, "the private key does not match the certificate"},
		{"RSA key for an ECDSA certificate", srv.CertPEM, rsaPEM, nil, "the private key does not match the certificate"},
		{"garbage certificate", []byte("-----BEGIN NOTHING"), srv.KeyPEM, nil, "no PEM CERTIFICATE block found"},
		{"garbage key", srv.CertPEM, []byte("garbage"), nil, "no PEM private key block found"},
		{"swapped arguments", srv.KeyPEM, srv.CertPEM, nil, "no PEM CERTIFICATE block found"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			kp, err := pki.LoadKeyPair(tc.certPEM, tc.keyPEM)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadKeyPair error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadKeyPair: %v", err)
			}
			if !kp.Cert.Equal(tc.wantLeaf) {
				t.Errorf("leaf is %q, want %q", kp.Cert.Subject, tc.wantLeaf.Subject)
			}
			if !bytes.Equal(kp.CertPEM, tc.certPEM) || !bytes.Equal(kp.KeyPEM, tc.keyPEM) {
				t.Error("PEM bytes not kept as given")
			}
		})
	}

	t.Run("loaded CA issues certificates", func(t *testing.T) {
		loaded := must(pki.LoadKeyPair(ca.CertPEM, ca.KeyPEM))
		leaf := must(pki.IssueServer(loaded, pki.ParseNames([]string{"localhost"}), now, time.Hour))
		if err := leaf.Cert.CheckSignatureFrom(ca.Cert); err != nil {
			t.Errorf("leaf signed by the loaded CA does not verify: %v", err)
		}
	})
}
