package pki

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"
)

// MinRSABits is the shortest RSA key accepted for a certificate: NIST and
// the CA/Browser Forum have required 2048 bits since 2014, and 1024-bit
// keys are within reach of a well-funded attacker.
const MinRSABits = 2048

// MaxLeafValidity is the longest server certificate lifetime accepted
// without a warning: Apple platforms refuse TLS server certificates valid
// for more than 825 days even under a root the user added (and more than
// 398 days under a public root), so a longer one fails for part of the
// clients whoever issued it.
const MaxLeafValidity = 825 * 24 * time.Hour

// CheckKeyStrength refuses an RSA public key shorter than MinRSABits, or
// longer than MaxRSABits (see there). ECDSA and Ed25519 keys are
// fixed-size curves, all strong enough.
func CheckKeyStrength(pub crypto.PublicKey) error {
	k, ok := pub.(*rsa.PublicKey)
	switch {
	case !ok:
	case k.N.BitLen() < MinRSABits:
		return fmt.Errorf("its RSA key has %d bits, fewer than the %d p2ptls accepts; issue it again with a 2048-bit or longer RSA key, or an ECDSA key", k.N.BitLen(), MinRSABits)
	case k.N.BitLen() > MaxRSABits:
		return fmt.Errorf("its RSA key has %d bits, more than the %d p2ptls accepts; issue it again with a 2048-, 3072- or 4096-bit RSA key, or an ECDSA key", k.N.BitLen(), MaxRSABits)
	}
	return nil
}

// LeafConcerns returns what is odd about leaf as a server certificate, as
// phrases to follow the certificate's name in a warning: a CA certificate
// (basic constraints CA:TRUE) served as the leaf, which strict clients
// refuse and which usually means the chain file is in the wrong order, and
// a lifetime above MaxLeafValidity. Neither is refused: a private
// deployment may have its reasons.
func LeafConcerns(leaf *x509.Certificate) []string {
	var out []string
	if leaf.BasicConstraintsValid && leaf.IsCA {
		out = append(out, "is a CA certificate (basic constraints CA:TRUE), not a server certificate; strict clients refuse a CA as the server certificate: put the server certificate first in the file, its CA after it")
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > MaxLeafValidity {
		out = append(out, fmt.Sprintf("is valid for %d days (%s to %s), longer than the %d days Apple platforms accept for any TLS server certificate (398 for publicly trusted ones); those clients refuse it",
			int(life/(24*time.Hour)), leaf.NotBefore.UTC().Format(time.DateOnly), leaf.NotAfter.UTC().Format(time.DateOnly), int(MaxLeafValidity/(24*time.Hour))))
	}
	return out
}
