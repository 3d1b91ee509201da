package pki

import (
	"bytes"
	"encoding/pem"
	"fmt"
)

// MaxRSABits is the longest RSA key accepted. The cost of checking and
// using an RSA key grows with the cube of its size: crypto/x509 takes
// about a third of a second to parse an 8192-bit private key, seconds for
// 16384 bits and minutes for 65536 (what 1 MiB of PEM can hold), and every
// handshake would sign with it. Go's TLS clients refuse server keys above
// 8192 bits anyway.
const MaxRSABits = 8192

// rsaEncryption is the DER of OID 1.2.840.113549.1.1.1.
var rsaEncryption = []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}

// CheckKeySize refuses a PEM private key (PKCS#1, or PKCS#8 holding RSA)
// whose RSA modulus is longer than MaxRSABits, by reading only the DER
// structure, before anything parses the key: the parse itself is what
// costs. Other blocks and keys are left to ParseKey.
func CheckKeySize(keyPEM []byte) error {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil
		}
		der := block.Bytes
		switch block.Type {
		case blockPKCS1:
		case blockPKCS8:
			if der = pkcs8RSA(der); der == nil {
				continue
			}
		default:
			continue
		}
		if bits := pkcs1ModulusBits(der); bits > MaxRSABits {
			return fmt.Errorf("the RSA private key has %d bits, more than the %d p2ptls accepts; use a 2048-, 3072- or 4096-bit RSA key, or an ECDSA key", bits, MaxRSABits)
		}
	}
}

// pkcs8RSA returns the PKCS#1 key inside a PKCS#8 PrivateKeyInfo when its
// algorithm is rsaEncryption, else nil.
func pkcs8RSA(der []byte) []byte {
	seq, _, ok := derElem(der, 0x30)
	if !ok {
		return nil
	}
	if _, seq, ok = derElem(seq, 0x02); !ok { // version
		return nil
	}
	alg, seq, ok := derElem(seq, 0x30)
	if !ok {
		return nil
	}
	oid, _, ok := derElem(alg, 0x06)
	if !ok || !bytes.Equal(oid, rsaEncryption) {
		return nil
	}
	key, _, ok := derElem(seq, 0x04)
	if !ok {
		return nil
	}
	return key
}

// pkcs1ModulusBits returns the bit length of the modulus of a PKCS#1
// RSAPrivateKey, 0 when der is not one.
func pkcs1ModulusBits(der []byte) int {
	seq, _, ok := derElem(der, 0x30)
	if !ok {
		return 0
	}
	if _, seq, ok = derElem(seq, 0x02); !ok { // version
		return 0
	}
	n, _, ok := derElem(seq, 0x02)
	if !ok {
		return 0
	}
	n = bytes.TrimLeft(n, "\x00")
	if len(n) == 0 {
		return 0
	}
	bits := 8 * len(n)
	for b := n[0]; b&0x80 == 0; b <<= 1 {
		bits--
	}
	return bits
}

// derElem reads one DER element with the given tag from b and returns its
// content and what follows it. Only what RSA keys use is handled: one-byte
// tags and definite lengths of up to four octets.
func derElem(b []byte, tag byte) (content, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != tag {
		return nil, nil, false
	}
	n, hdr := int(b[1]), 2
	if n&0x80 != 0 {
		octets := n & 0x7f
		if octets == 0 || octets > 4 || len(b) < 2+octets {
			return nil, nil, false
		}
		n = 0
		for _, c := range b[2 : 2+octets] {
			n = n<<8 | int(c)
		}
		hdr += octets
	}
	if n < 0 || n > len(b)-hdr {
		return nil, nil, false
	}
	return b[hdr : hdr+n], b[hdr+n:], true
}
