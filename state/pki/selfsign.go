package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
	"unicode/utf8"
)

// selfSignLeaf signs tmpl (a leafTemplate with its serial and subject key
// ID) with key, its own key, and returns what create returns for it.
//
// The DER is byte for byte what x509.CreateCertificate makes of the same
// template (TestSelfSignLeafMatchesCreateCertificate holds it to that), at
// a third of the cost: CreateCertificate encodes by reflection
// (encoding/asn1) and verifies the signature it just made, which costs
// twice the signing. That check is there for a crypto.Signer that may
// misbehave (a token, a remote KMS); here the signer is the standard
// library's own ECDSA on a key generated a moment ago that signs this one
// certificate and nothing else. What can go wrong in this encoder is caught
// by parsing the result and comparing its key, names and validity with
// what was asked for, as below, and by the tests. A template this encoder
// does not cover (a name that is not ASCII, a year it cannot write) goes
// to x509.CreateCertificate, which refuses or encodes it as before.
func selfSignLeaf(tmpl *x509.Certificate, key *ecdsa.PrivateKey) (*KeyPair, error) {
	tbs, ok := leafTBS(tmpl, &key.PublicKey)
	if !ok {
		return create(tmpl, nil, key, key)
	}
	digest := sha256.Sum256(tbs)
	// Deterministic ECDSA (RFC 6979, HMAC-DRBG over SHA-256 of the key and
	// the digest) costs half of a randomized signature (hedged, HMAC-DRBG
	// over SHA-512 and fresh randomness): 10k certificates of an import
	// take 0.4 s less CPU. It is as secure: the nonce is secret and unique
	// per message without needing the RNG at signing time; the key comes
	// from crypto/rand and signs this one certificate. It also makes the
	// certificate byte for byte what CreateCertificate makes with no
	// randomness (TestSelfSignLeafMatchesCreateCertificate).
	sig, err := key.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	var sigAlgBuf [16]byte
	sigAlg := appendECDSAWithSHA256(sigAlgBuf[:0])
	der := make([]byte, 0, len(tbs)+len(sigAlg)+len(sig)+16)
	der = appendTLV(der, tagSequence, len(tbs)+len(sigAlg)+derLen(len(sig)+1), func(b []byte) []byte {
		b = append(b, tbs...)
		b = append(b, sigAlg...)
		return appendTLV(b, tagBitString, len(sig)+1, func(b []byte) []byte {
			return append(append(b, 0), sig...) // no unused bits
		})
	})
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	if err := sameAsAsked(cert, tmpl, key); err != nil {
		return nil, fmt.Errorf("check new certificate: %w", err)
	}
	keyPEM, err := encodeECKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{CertPEM: EncodeCert(der), KeyPEM: keyPEM, Cert: cert, Key: key}, nil
}

// sameAsAsked checks that cert, as parsed, says what tmpl asked for.
func sameAsAsked(cert, tmpl *x509.Certificate, key *ecdsa.PrivateKey) error {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	switch {
	case !ok || !pub.Equal(&key.PublicKey):
		return errors.New("it does not carry the key it was made for")
	case cert.SerialNumber.Cmp(tmpl.SerialNumber) != 0:
		return errors.New("its serial number is not the one chosen")
	case !cert.NotBefore.Equal(tmpl.NotBefore.Truncate(time.Second)) || !cert.NotAfter.Equal(tmpl.NotAfter.Truncate(time.Second)):
		return errors.New("its validity is not the one asked for")
	case len(cert.DNSNames) != len(tmpl.DNSNames) || len(cert.IPAddresses) != len(tmpl.IPAddresses):
		return errors.New("its names are not the ones asked for")
	case cert.IsCA || cert.KeyUsage != tmpl.KeyUsage:
		return errors.New("its usage is not the one asked for")
	}
	for i, n := range cert.DNSNames {
		if n != tmpl.DNSNames[i] {
			return errors.New("its names are not the ones asked for")
		}
	}
	for i, ip := range cert.IPAddresses {
		if !ip.Equal(tmpl.IPAddresses[i]) {
			return errors.New("its names are not the ones asked for")
		}
	}
	return nil
}

// DER tags used below.
const (
	tagBoolean     = 0x01
	tagInteger     = 0x02
	tagBitString   = 0x03
	tagOctetString = 0x04
	tagOID         = 0x06
	tagUTF8String  = 0x0c
	tagPrintable   = 0x13
	tagUTCTime     = 0x17
	tagGeneralized = 0x18
	tagSequence    = 0x30
	tagSet         = 0x31
	tagExplicit0   = 0xa0
	tagExplicit1   = 0xa1
	tagExplicit3   = 0xa3
	tagSANDNS      = 0x82 // [2] IMPLICIT IA5String
	tagSANIP       = 0x87 // [7] IMPLICIT OCTET STRING
)

// Encoded object identifiers (content bytes).
var (
	oidECDSAWithSHA256 = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02} // 1.2.840.10045.4.3.2
	oidECPublicKey     = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}       // 1.2.840.10045.2.1
	oidP256            = []byte{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // 1.2.840.10045.3.1.7
	oidCommonName      = []byte{0x55, 0x04, 0x03}                               // 2.5.4.3
	oidKeyUsage        = []byte{0x55, 0x1d, 0x0f}                               // 2.5.29.15
	oidExtKeyUsage     = []byte{0x55, 0x1d, 0x25}                               // 2.5.29.37
	oidBasicCons       = []byte{0x55, 0x1d, 0x13}                               // 2.5.29.19
	oidSubjectKeyID    = []byte{0x55, 0x1d, 0x0e}                               // 2.5.29.14
	oidSAN             = []byte{0x55, 0x1d, 0x11}                               // 2.5.29.17
	oidServerAuth      = []byte{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01} // 1.3.6.1.5.5.7.3.1
	oidClientAuth      = []byte{0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02} // 1.3.6.1.5.5.7.3.2
)

// derLen is the size of a TLV whose content is n bytes.
func derLen(n int) int {
	switch {
	case n < 0x80:
		return 2 + n
	case n <= 0xff:
		return 3 + n
	case n <= 0xffff:
		return 4 + n
	default:
		return 5 + n
	}
}

// appendTLV appends tag, the DER length n and the content that fill
// appends, which must be exactly n bytes.
func appendTLV(b []byte, tag byte, n int, fill func([]byte) []byte) []byte {
	b = append(b, tag)
	switch {
	case n < 0x80:
		b = append(b, byte(n))
	case n <= 0xff:
		b = append(b, 0x81, byte(n))
	case n <= 0xffff:
		b = append(b, 0x82, byte(n>>8), byte(n))
	default:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	start := len(b)
	b = fill(b)
	if len(b)-start != n {
		panic(fmt.Sprintf("pki: DER content of tag %#x is %d bytes, announced %d", tag, len(b)-start, n))
	}
	return b
}

// appendRaw appends a TLV of tag holding content.
func appendRaw(b []byte, tag byte, content []byte) []byte {
	return appendTLV(b, tag, len(content), func(b []byte) []byte { return append(b, content...) })
}

// seq builds a constructed value from its parts, each already encoded.
func seq(tag byte, parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	return appendTLV(make([]byte, 0, derLen(n)), tag, n, func(b []byte) []byte {
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	})
}

func appendECDSAWithSHA256(b []byte) []byte {
	return appendTLV(b, tagSequence, derLen(len(oidECDSAWithSHA256)), func(b []byte) []byte {
		return appendRaw(b, tagOID, oidECDSAWithSHA256)
	})
}

// derInteger is the content of a DER INTEGER holding n (not negative).
func derInteger(n *big.Int) []byte {
	if n.Sign() == 0 {
		return []byte{0}
	}
	b := n.Bytes()
	if b[0]&0x80 != 0 {
		b = append([]byte{0}, b...)
	}
	return b
}

// derTime encodes t (UTC) as encoding/asn1 does: UTCTime from 1950 to
// 2049, GeneralizedTime otherwise, whole seconds.
func derTime(t time.Time) ([]byte, bool) {
	t = t.UTC()
	year := t.Year()
	var s string
	tag := byte(tagUTCTime)
	switch {
	case 1950 <= year && year < 2050:
		s = t.Format("060102150405Z")
	case 0 <= year && year <= 9999:
		tag = tagGeneralized
		s = t.Format("20060102150405Z")
	default:
		return nil, false
	}
	return appendRaw(nil, tag, []byte(s)), true
}

// printable reports whether encoding/asn1 marshals s as a PrintableString.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			'\'' <= b && b <= ')' || '+' <= b && b <= '/' || b == ' ' || b == ':' || b == '=' || b == '?') {
			return false
		}
	}
	return true
}

// ia5 reports whether s is an IA5String (ASCII), as SANs must be.
func ia5(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// leafTBS encodes the TBSCertificate of a self-signed leaf made by
// leafTemplate, as x509.CreateCertificate does; ok is false for a template
// it does not cover.
func leafTBS(tmpl *x509.Certificate, pub *ecdsa.PublicKey) (tbs []byte, ok bool) {
	if tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() <= 0 || tmpl.IsCA || !tmpl.BasicConstraintsValid ||
		tmpl.KeyUsage != x509.KeyUsageDigitalSignature || len(tmpl.ExtraExtensions) > 0 ||
		len(tmpl.AuthorityKeyId) > 0 || len(tmpl.SubjectKeyId) == 0 || len(tmpl.EmailAddresses) > 0 || len(tmpl.URIs) > 0 ||
		len(tmpl.DNSNames)+len(tmpl.IPAddresses) == 0 || !utf8.ValidString(tmpl.Subject.CommonName) {
		return nil, false
	}
	// Only a common name: everything else of a pkix.Name is empty.
	probe := tmpl.Subject
	probe.CommonName = ""
	if len(probe.ToRDNSequence()) > 0 || len(tmpl.Subject.ExtraNames) > 0 || len(tmpl.RawSubject) > 0 {
		return nil, false
	}
	var ekus [][]byte
	for _, u := range tmpl.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			ekus = append(ekus, appendRaw(nil, tagOID, oidServerAuth))
		case x509.ExtKeyUsageClientAuth:
			ekus = append(ekus, appendRaw(nil, tagOID, oidClientAuth))
		default:
			return nil, false
		}
	}
	if len(tmpl.UnknownExtKeyUsage) > 0 {
		return nil, false
	}
	point, err := pub.Bytes()
	if err != nil || len(point) != 65 || pub.Curve != elliptic.P256() {
		return nil, false
	}
	notBefore, ok1 := derTime(tmpl.NotBefore)
	notAfter, ok2 := derTime(tmpl.NotAfter)
	if !ok1 || !ok2 {
		return nil, false
	}

	// Subject (= issuer): SEQUENCE OF SET OF AttributeTypeAndValue.
	subject := []byte{tagSequence, 0}
	if cn := tmpl.Subject.CommonName; cn != "" {
		strTag := byte(tagUTF8String)
		if printable(cn) {
			strTag = tagPrintable
		}
		subject = seq(tagSequence, seq(tagSet, seq(tagSequence, appendRaw(nil, tagOID, oidCommonName), appendRaw(nil, strTag, []byte(cn)))))
	}
	spki := seq(tagSequence,
		seq(tagSequence, appendRaw(nil, tagOID, oidECPublicKey), appendRaw(nil, tagOID, oidP256)),
		appendRaw(nil, tagBitString, append([]byte{0}, point...)))

	ext := func(oid []byte, critical bool, value []byte) []byte {
		if critical {
			return seq(tagSequence, appendRaw(nil, tagOID, oid), []byte{tagBoolean, 1, 0xff}, appendRaw(nil, tagOctetString, value))
		}
		return seq(tagSequence, appendRaw(nil, tagOID, oid), appendRaw(nil, tagOctetString, value))
	}
	exts := [][]byte{
		// digitalSignature only: one bit, the first, 7 bits unused.
		ext(oidKeyUsage, true, []byte{tagBitString, 2, 7, 0x80}),
	}
	if len(ekus) > 0 {
		exts = append(exts, ext(oidExtKeyUsage, false, seq(tagSequence, ekus...)))
	}
	// Not a CA, no path length: the empty SEQUENCE.
	exts = append(exts, ext(oidBasicCons, true, []byte{tagSequence, 0}))
	exts = append(exts, ext(oidSubjectKeyID, false, appendRaw(nil, tagOctetString, tmpl.SubjectKeyId)))
	var sans [][]byte
	for _, n := range tmpl.DNSNames {
		if !ia5(n) {
			return nil, false
		}
		sans = append(sans, appendRaw(nil, tagSANDNS, []byte(n)))
	}
	for _, ip := range tmpl.IPAddresses {
		raw := ip.To4()
		if raw == nil {
			raw = ip
		}
		if len(raw) != net.IPv4len && len(raw) != net.IPv6len {
			return nil, false
		}
		sans = append(sans, appendRaw(nil, tagSANIP, raw))
	}
	// RFC 5280 4.2.1.6: critical when the subject is empty.
	exts = append(exts, ext(oidSAN, tmpl.Subject.CommonName == "", seq(tagSequence, sans...)))

	var sigAlgBuf [16]byte
	return seq(tagSequence,
		[]byte{tagExplicit0, 3, tagInteger, 1, 2}, // version 3
		appendRaw(nil, tagInteger, derInteger(tmpl.SerialNumber)),
		appendECDSAWithSHA256(sigAlgBuf[:0]),
		subject,
		seq(tagSequence, notBefore, notAfter),
		subject,
		spki,
		seq(tagExplicit3, seq(tagSequence, exts...)),
	), true
}

// encodeECKey is EncodeKey for a P-256 key, without reflection: PKCS#8
// holding the SEC 1 key with its public point and no curve (the PKCS#8
// algorithm names it), as x509.MarshalPKCS8PrivateKey writes it
// (TestEncodeECKeyMatchesMarshalPKCS8).
func encodeECKey(key *ecdsa.PrivateKey) ([]byte, error) {
	d, err := key.Bytes()
	if err != nil || len(d) != 32 {
		return EncodeKey(key)
	}
	point, err := key.PublicKey.Bytes()
	if err != nil || len(point) != 65 {
		return EncodeKey(key)
	}
	sec1 := seq(tagSequence,
		[]byte{tagInteger, 1, 1}, // ecPrivkeyVer1
		appendRaw(nil, tagOctetString, d),
		seq(tagExplicit1, appendRaw(nil, tagBitString, append([]byte{0}, point...))))
	der := seq(tagSequence,
		[]byte{tagInteger, 1, 0},
		seq(tagSequence, appendRaw(nil, tagOID, oidECPublicKey), appendRaw(nil, tagOID, oidP256)),
		appendRaw(nil, tagOctetString, sec1))
	out := pem.EncodeToMemory(&pem.Block{Type: blockPKCS8, Bytes: der})
	clear(d)
	clear(sec1)
	clear(der)
	return out, nil
}
