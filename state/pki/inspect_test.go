package pki_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

func TestFingerprint(t *testing.T) {
	kp := must(pki.SelfSigned(pki.ParseNames([]string{"localhost"}), now, 24*time.Hour))
	sum := sha256.Sum256(kp.Cert.Raw)
	fp := pki.Fingerprint(kp.Cert)

	if !regexp.MustCompile(`^[0-9A-F]{2}(:[0-9A-F]{2}){31}$`).MatchString(fp) {
		t.Fatalf("Fingerprint = %q, want 32 uppercase hex pairs joined by colons", fp)
	}
	plain := strings.ReplaceAll(fp, ":", "")
	if plain != strings.ToUpper(hex.EncodeToString(sum[:])) {
		t.Fatalf("Fingerprint = %q, want the SHA-256 of the DER %X", fp, sum)
	}

	valid := []struct {
		desc string
		in   string
	}{
		{"colon form as printed", fp},
		{"colon form lower-case", strings.ToLower(fp)},
		{"plain upper-case hex", plain},
		{"plain lower-case hex", strings.ToLower(plain)},
		{"sha256: prefix, colon form", "sha256:" + fp},
		{"SHA256: prefix, colon form", "SHA256:" + fp},
		{"sha256: prefix, plain hex", "sha256:" + strings.ToLower(plain)},
		{"SHA256: prefix, plain hex", "SHA256:" + plain},
		{"surrounding whitespace", "  " + fp + "\n"},
	}
	for _, tc := range valid {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := pki.ParseFingerprint(tc.in)
			if err != nil {
				t.Fatalf("ParseFingerprint(%q): %v", tc.in, err)
			}
			if !bytes.Equal(got, sum[:]) {
				t.Errorf("ParseFingerprint(%q) = %X, want %X", tc.in, got, sum)
			}
		})
	}

	invalid := []struct {
		desc string
		in   string
	}{
		{"empty", ""},
		{"prefix only", "sha256:"},
		{"one byte short", plain[:62]},
		{"one byte long", plain + "00"},
		{"odd length", plain[:63]},
		{"not hex", "ZZ" + plain[2:]},
		{"colon form missing a pair", fp[:len(fp)-3]},
		{"colon form with a single-digit pair", "A" + fp[2:]},
		{"colon form with a three-digit pair", "AAA" + fp[2:]},
		{"trailing colon", fp + ":"},
		{"doubled colon", strings.Replace(fp, ":", "::", 1)},
		{"other algorithm prefix", "sha1:" + plain},
		{"SHA-1 length", plain[:40]},
		{"double prefix", "sha256:sha256:" + plain},
	}
	for _, tc := range invalid {
		t.Run("refuses "+tc.desc, func(t *testing.T) {
			got, err := pki.ParseFingerprint(tc.in)
			if err == nil {
				t.Fatalf("ParseFingerprint(%q) = %X, want an error", tc.in, got)
			}
			if !strings.Contains(err.Error(), "invalid SHA-256 fingerprint") {
				t.Errorf("error %q does not say what is wrong", err)
			}
		})
	}
}

func TestKeyType(t *testing.T) {
	p256 := must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	rsa2048 := must(rsa.GenerateKey(rand.Reader, 2048))
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x := must(ecdh.X25519().GenerateKey(rand.Reader))

	tests := []struct {
		desc string
		pub  any
		want string
	}{
		{"ECDSA P-256", &p256.PublicKey, "ECDSA P-256"},
		{"ECDSA P-384", &p384.PublicKey, "ECDSA P-384"},
		{"RSA 2048", &rsa2048.PublicKey, "RSA 2048"},
		{"Ed25519", ed, "Ed25519"},
		{"X25519 is not a certificate key", x.PublicKey(), "unknown (*ecdh.PublicKey)"},
		{"nil", nil, "unknown (<nil>)"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if got := pki.KeyType(tc.pub); got != tc.want {
				t.Errorf("KeyType = %q, want %q", got, tc.want)
			}
		})
	}
}
