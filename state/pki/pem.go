package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types.
const (
	blockCert     = "CERTIFICATE"
	blockPKCS8    = "PRIVATE KEY"
	blockPKCS1    = "RSA PRIVATE KEY"
	blockSEC1     = "EC PRIVATE KEY"
	blockPKCS8Enc = "ENCRYPTED PRIVATE KEY"
)

// EncodeCert returns der as a PEM CERTIFICATE block.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockCert, Bytes: der})
}

// EncodeKey returns key as a PKCS#8 PEM "PRIVATE KEY" block, the one format
// that holds RSA, ECDSA and Ed25519 keys alike.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: blockPKCS8, Bytes: der}), nil
}

// ParseCertChain returns the certificates of every CERTIFICATE block in
// pemBytes, in order. Other blocks (a private key in the same file, say) are
// skipped, so a combined file works.
func ParseCertChain(pemBytes []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != blockCert {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d in PEM data: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// ParseKey returns the private key of the first private key block in
// pemBytes: PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1
// "EC PRIVATE KEY". Other blocks (certificates, "EC PARAMETERS" as written by
// openssl ecparam) are skipped.
func ParseKey(pemBytes []byte) (crypto.Signer, error) {
	if err := CheckKeySize(pemBytes); err != nil {
		return nil, err
	}
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("no PEM private key block found (want %q, %q or %q)", blockPKCS8, blockPKCS1, blockSEC1)
		}
		var key any
		var err error
		switch block.Type {
		case blockPKCS8:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case blockPKCS1:
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case blockSEC1:
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case blockPKCS8Enc:
			return nil, errors.New("encrypted private keys are not supported; decrypt it first (openssl pkey -in KEY -out PLAIN)")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %q PEM block: %w", block.Type, err)
		}
		// PKCS#8 can also hold keys that only agree (X25519), not sign.
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported private key type %T: it cannot sign", key)
		}
		return signer, nil
	}
}

// LoadKeyPair parses a certificate chain (leaf first) and its private key,
// and checks that the key belongs to the leaf, so a mixed-up pair is caught
// when it is loaded rather than at the first TLS handshake, and that the
// leaf's key is not too weak (CheckKeyStrength).
func LoadKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	chain, err := ParseCertChain(certPEM)
	if err != nil {
		return nil, err
	}
	if err := CheckKeyStrength(chain[0].PublicKey); err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	// Every public key type in the standard library has Equal.
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(chain[0].PublicKey) {
		return nil, errors.New("the private key does not match the certificate")
	}
	return &KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, Cert: chain[0], Key: key}, nil
}
