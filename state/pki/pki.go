// Package pki is the certificate and key logic behind the management TLS
// listener (auto mode: a private CA plus a server certificate it signs) and
// self-signed public certificates. It does no file I/O and keeps no state:
// everything takes and returns PEM bytes or parsed objects, and every
// time-dependent function takes "now" so callers and tests control the clock.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/p2pstream/p2ptls/state/text"
)

const (
	// CAValidity is the default lifetime of the management CA: ten years of
	// 365 days plus 3 days, so it covers any ten calendar years whatever their
	// leap days.
	CAValidity = (10*365 + 3) * 24 * time.Hour

	// ServerMaxValidity is the longest server certificate we issue: the
	// CA/Browser Forum and Apple platforms refuse server certificates living
	// more than 398 days, and 397 keeps a day of margin for the backdating.
	ServerMaxValidity = 397 * 24 * time.Hour

	// backdate moves NotBefore into the past so peers whose clocks run a
	// little behind still accept a freshly issued certificate.
	backdate = time.Hour

	// maxCommonName is ub-common-name from RFC 5280.
	maxCommonName = 64
)

// KeyPair is a certificate with its private key, both parsed and as PEM.
// CertPEM may hold a whole chain (leaf first); Cert is always the leaf.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
	Key     crypto.Signer
}

// NewCA creates a self-signed ECDSA P-256 CA valid from now-1h to
// now+validity. MaxPathLen is zero: the CA signs leaves only, never another
// CA, which limits what a stolen CA key could be used for.
func NewCA(commonName string, now time.Time, validity time.Duration) (*KeyPair, error) {
	if commonName == "" {
		return nil, errors.New("CA common name is empty")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("CA validity %v is not positive", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return create(tmpl, nil, key, key)
}

// IssueServer creates an ECDSA P-256 server certificate for names, signed by
// ca, valid from now-1h to now+validity. Validity above ServerMaxValidity is
// refused rather than silently shortened so a misconfiguration shows up, and
// so is a certificate that would outlive the CA: the CA needs renewing first.
func IssueServer(ca *KeyPair, names Names, now time.Time, validity time.Duration) (*KeyPair, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("no CA certificate and key to sign with")
	}
	if !ca.Cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", ca.Cert.Subject.CommonName)
	}
	tmpl, key, err := leafTemplate(names, now, validity)
	if err != nil {
		return nil, err
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("CA %q expires at %s, before the server certificate would (%s)",
			ca.Cert.Subject.CommonName, text.Stamp(ca.Cert.NotAfter), text.Stamp(tmpl.NotAfter))
	}
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	return create(tmpl, ca.Cert, key, ca.Key)
}

// SelfSigned creates a self-signed ECDSA P-256 server certificate (not a CA)
// for names, which may include wildcards such as "*.example.com". Clients
// trust it by pinning or by adding it as a root, so the same validity cap as
// IssueServer applies: platforms enforce it on user-trusted roots too.
func SelfSigned(names Names, now time.Time, validity time.Duration) (*KeyPair, error) {
	tmpl, key, err := leafTemplate(names, now, validity)
	if err != nil {
		return nil, err
	}
	if err := identify(tmpl, key); err != nil {
		return nil, err
	}
	return selfSignLeaf(tmpl, key)
}

// leafTemplate checks names and validity and returns a server certificate
// template with a fresh key to certify.
func leafTemplate(names Names, now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if len(names.DNS) == 0 && len(names.IPs) == 0 {
		return nil, nil, errors.New("a server certificate needs at least one DNS name or IP address")
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("server certificate validity %v is not positive", validity)
	}
	if validity > ServerMaxValidity {
		return nil, nil, fmt.Errorf("server certificate validity %v exceeds the maximum of %v (397 days)", validity, ServerMaxValidity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate server key: %w", err)
	}
	// Clients match SANs only; the common name is there for humans reading
	// the certificate, and is left out if RFC 5280 says it is too long.
	var cn string
	if len(names.DNS) > 0 {
		cn = names.DNS[0]
	} else {
		cn = names.IPs[0].String()
	}
	if len(cn) > maxCommonName {
		cn = ""
	}
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              names.DNS,
		IPAddresses:           names.IPs,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, key, nil
}

// create fills in the serial and subject key ID (unless tmpl has them),
// signs tmpl with signer (self-signed when parent is nil) and returns the
// result parsed and as PEM.
func create(tmpl, parent *x509.Certificate, key *ecdsa.PrivateKey, signer crypto.Signer) (*KeyPair, error) {
	if tmpl.SerialNumber == nil {
		if err := identify(tmpl, key); err != nil {
			return nil, err
		}
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{CertPEM: EncodeCert(der), KeyPEM: keyPEM, Cert: cert, Key: key}, nil
}

// identify gives tmpl a new serial and key's subject key ID.
func identify(tmpl *x509.Certificate, key *ecdsa.PrivateKey) error {
	serial, err := newSerial()
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial
	tmpl.SubjectKeyId, err = subjectKeyID(&key.PublicKey)
	return err
}

// newSerial returns a random positive 128-bit serial number: unpredictable
// serials are what the CA/Browser Forum requires, and zero is not allowed.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of
// the subjectPublicKey bits, which for ECDSA are the uncompressed point.
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	point, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	sum := sha256.Sum256(point)
	return sum[:20], nil
}
