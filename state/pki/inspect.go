package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Fingerprint returns the SHA-256 of the certificate's DER as uppercase hex
// pairs joined by colons (AA:BB:...), the spelling browsers and openssl show.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// ParseFingerprint returns the 32 bytes of a SHA-256 fingerprint written as
// Fingerprint does or as 64 plain hex digits, in either case, optionally
// prefixed with "sha256:", so users can paste whatever their tool printed.
func ParseFingerprint(s string) ([]byte, error) {
	h := strings.TrimSpace(s)
	if len(h) > 7 && strings.EqualFold(h[:7], "sha256:") {
		h = h[7:]
	}
	if strings.Contains(h, ":") {
		pairs := strings.Split(h, ":")
		for _, p := range pairs {
			if len(p) != 2 {
				return nil, badFingerprint(s)
			}
		}
		h = strings.Join(pairs, "")
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, badFingerprint(s)
	}
	return b, nil
}

func badFingerprint(s string) error {
	return fmt.Errorf("invalid SHA-256 fingerprint %q: want 32 bytes as hex, either AA:BB:... or 64 hex digits, optionally prefixed with \"sha256:\"", s)
}

// KeyType names the algorithm and size of pub for display, e.g. "ECDSA P-256"
// or "RSA 2048".
func KeyType(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("unknown (%T)", pub)
	}
}

// RenewalTime is when cert should be replaced: when less than a third of
// its lifetime remains. Short-lived certificates (10 days or less) renew at
// half their lifetime instead, since a third of a few days leaves little
// room for retrying a failed renewal.
func RenewalTime(cert *x509.Certificate) time.Time {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	threshold := lifetime / 3
	if lifetime <= 10*24*time.Hour {
		threshold = lifetime / 2
	}
	return cert.NotAfter.Add(-threshold).UTC()
}

// NeedsRenewal reports whether cert should be replaced at now: it has
// expired, or RenewalTime has come.
func NeedsRenewal(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(cert.NotAfter) || now.After(RenewalTime(cert))
}
