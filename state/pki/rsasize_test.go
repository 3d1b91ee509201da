package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// hugeRSA returns PEM blocks (PKCS#1 and PKCS#8) shaped like RSA private
// keys with a modulus of bits bits. They are not valid keys: what matters
// is that they are refused by size before crypto/x509 spends minutes
// checking them.
func hugeRSA(t *testing.T, bits int) (pkcs1, pkcs8 []byte) {
	t.Helper()
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	n.SetBit(n, 0, 1)
	half := new(big.Int).Lsh(big.NewInt(1), uint(bits/2-1))
	der, err := asn1.Marshal(struct {
		Version                   int
		N                         *big.Int
		E                         int
		D, P, Q, Dp, Dq, Qinverse *big.Int
	}{0, n, 65537, n, half, half, half, half, half})
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := asn1.Marshal(struct {
		Version    int
		Algo       pkix.AlgorithmIdentifier
		PrivateKey []byte
	}{0, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}, Parameters: asn1.NullRawValue}, der})
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: wrapped})
}

// An RSA key of 65536 bits (25 kB of PEM) took crypto/x509 minutes to
// check; every key p2ptls parses is measured first.
func TestParseKeyRefusesHugeRSABeforeParsing(t *testing.T) {
	for _, bits := range []int{65536, 16384, 8193} {
		pkcs1, pkcs8 := hugeRSA(t, bits)
		for name, b := range map[string][]byte{"PKCS#1": pkcs1, "PKCS#8": pkcs8} {
			_, err := ParseKey(b)
			want := "has " + itoa(bits) + " bits, more than the 8192 p2ptls accepts"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%d-bit %s: ParseKey = %v, want %q", bits, name, err, want)
			}
		}
	}
	// The key that costs (see slowRSA) is refused by size, unparsed.
	if _, err := ParseKey(slowRSA(t, 16384)); err == nil || !strings.Contains(err.Error(), "bits, more than the 8192 p2ptls accepts") {
		t.Errorf("16384-bit key without CRT values: %v", err)
	}
	// 8192 bits passes the size check (and then fails as the invalid key it is).
	pkcs1, _ := hugeRSA(t, 8192)
	if err := CheckKeySize(pkcs1); err != nil {
		t.Errorf("8192 bits: %v", err)
	}
	// A real 2048-bit key passes, in both encodings.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := EncodeKey(key)
	p1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	for _, b := range [][]byte{p1, p8} {
		if _, err := ParseKey(b); err != nil {
			t.Errorf("RSA 2048: %v", err)
		}
	}
}

// A certificate for an RSA public key above 8192 bits is refused too:
// clients refuse it, and serve would sign every handshake with it.
func TestLoadKeyPairRefusesHugeRSACertificate(t *testing.T) {
	ca, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n := new(big.Int).Lsh(big.NewInt(1), 16383)
	n.SetBit(n, 0, 1)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"x.example.com"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsa.PublicKey{N: n, E: 65537}, ca)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LoadKeyPair(EncodeCert(der), nil)
	if err == nil || !strings.Contains(err.Error(), "its RSA key has 16384 bits, more than the 8192") {
		t.Errorf("LoadKeyPair = %v", err)
	}
}

// slowRSA returns a PKCS#1 PEM key of bits bits whose numbers agree
// (n = p·q, e·d ≡ 1 mod φ) though p and q are not prime, written without
// its CRT values: making it takes milliseconds, and crypto/x509, which then
// recomputes and checks them, spent 3.8 s on one of 16384 bits and more
// than 2 minutes on one of 65536 (measured with go1.26.8 on this machine)
// before refusing it.
func slowRSA(t *testing.T, bits int) []byte {
	one, e := big.NewInt(1), big.NewInt(65537)
	for {
		p, _ := rand.Int(rand.Reader, new(big.Int).Lsh(one, uint(bits/2)))
		q, _ := rand.Int(rand.Reader, new(big.Int).Lsh(one, uint(bits/2)))
		p.SetBit(p, bits/2-1, 1).SetBit(p, 0, 1)
		q.SetBit(q, bits/2-1, 1).SetBit(q, 0, 1)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		if new(big.Int).GCD(nil, nil, e, phi).Cmp(one) != 0 || new(big.Int).GCD(nil, nil, p, q).Cmp(one) != 0 {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, D: new(big.Int).ModInverse(e, phi), Primes: []*big.Int{p, q}}
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
