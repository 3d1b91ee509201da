package management

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// caPathLen is the path length a management CA allows below it: one
// intermediate, the cross-certificate of a rotation. A CA with 0 (as
// p2ptls made them before rotation existed) cannot vouch for its
// successor: Go and OpenSSL both enforce a root's path length, so an
// agent that trusts only that CA cannot verify a certificate from the
// next one through a cross-certificate.
const caPathLen = 1

// newCA creates a management CA: ECDSA P-256 for pki.CAValidity, named
// caCommonName plus a serialNumber attribute (the first 64 bits of its
// certificate's serial), so that two CAs of one installation (the current
// and the next of a rotation) never share a subject, which chain building
// matches on. Go derives its subject key ID from the key.
func newCA(now time.Time) (*pki.KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := caTemplate(pkix.Name{CommonName: caCommonName, SerialNumber: fmt.Sprintf("%032x", serial)[:16]},
		now.Add(-time.Hour), now.Add(pki.CAValidity))
	tmpl.SerialNumber = serial
	tmpl.MaxPathLen = caPathLen
	return sign(tmpl, tmpl, &key.PublicKey, key, key)
}

// crossSign certifies subject (a CA's certificate) with signer's key: the
// same subject and key, so that certificates issued by subject chain
// through it to signer. It is valid while both are, and allows no
// intermediate below it: only server certificates hang from it.
func crossSign(signer *pki.KeyPair, subject *x509.Certificate, now time.Time) ([]byte, error) {
	notAfter := subject.NotAfter
	if signer.Cert.NotAfter.Before(notAfter) {
		notAfter = signer.Cert.NotAfter
	}
	tmpl := caTemplate(pkix.Name{}, now.Add(-time.Hour), notAfter)
	// RawSubject keeps the exact bytes that the subject's certificates name
	// as their issuer.
	tmpl.RawSubject = subject.RawSubject
	tmpl.SubjectKeyId = subject.SubjectKeyId
	tmpl.MaxPathLenZero = true
	kp, err := sign(tmpl, signer.Cert, subject.PublicKey, nil, signer.Key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign %s: %w", pki.Fingerprint(subject), err)
	}
	return kp.CertPEM, nil
}

// caTemplate is a CA certificate template without key or path length.
func caTemplate(subject pkix.Name, notBefore, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
}

// randomSerial is a random positive 128-bit serial, as pki gives every
// certificate.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	serial, err := rand.Int(rand.Reader, limit.Sub(limit, big.NewInt(1)))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// sign signs tmpl as parent with signer (a random serial unless tmpl has
// one) and returns the certificate, with key as its private key when not
// nil. Go sets the authority key ID from parent's subject key ID.
func sign(tmpl, parent *x509.Certificate, pub any, key *ecdsa.PrivateKey, signer any) (*pki.KeyPair, error) {
	if tmpl.SerialNumber == nil {
		serial, err := randomSerial()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = serial
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	kp := &pki.KeyPair{CertPEM: pki.EncodeCert(der), Cert: cert}
	if key != nil {
		if kp.KeyPEM, err = pki.EncodeKey(key); err != nil {
			return nil, err
		}
		kp.Key = key
	}
	return kp, nil
}
