package packedcert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"
)

const host = "packed.example.com"

// Each key type p2ptls may be given, packed and rebuilt, must complete a
// real handshake that the client verifies against the certificate's root.
func TestHandshakeWithEveryKeyType(t *testing.T) {
	tests := []struct {
		name   string
		key    func() (crypto.Signer, error)
		packed bool
	}{
		{"ecdsa p256", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }, true},
		{"ecdsa p384", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) }, true},
		{"ecdsa p521", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) }, true},
		{"ed25519", func() (crypto.Signer, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err }, true},
		{"rsa 2048 (kept parsed)", func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leafKey, err := tt.key()
			if err != nil {
				t.Fatal(err)
			}
			chain, roots := issueChain(t, leafKey)
			c, err := Pack(&tls.Certificate{Certificate: chain, PrivateKey: leafKey})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.parsed == nil; got != tt.packed {
				t.Errorf("packed = %v, want %v", got, tt.packed)
			}
			if got, want := c.Fingerprint(), sha256.Sum256(chain[0]); got != want {
				t.Errorf("Fingerprint() = %x, want the leaf's SHA-256 %x", got, want)
			}
			state := handshake(t, c, roots)
			if got := len(state.PeerCertificates); got != len(chain) {
				t.Fatalf("client received %d certificates, want the chain of %d", got, len(chain))
			}
			for i, cert := range state.PeerCertificates {
				if string(cert.Raw) != string(chain[i]) {
					t.Errorf("certificate %d differs from the one packed", i)
				}
			}
		})
	}
}

func TestPackRefusesAnEmptyChain(t *testing.T) {
	if (Cert{}).Fingerprint() != [sha256.Size]byte{} {
		t.Error("the zero Cert has a fingerprint")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Pack(&tls.Certificate{PrivateKey: key}); err == nil {
		t.Fatal("Pack accepted a pair without certificates")
	}
	if _, err := (Cert{}).Certificate(); err == nil {
		t.Fatal("the zero Cert returned a certificate")
	}
}

// The rebuilt certificate is the server's own per handshake: changing it
// must not change what the next handshake gets.
func TestCertificatesAreIndependent(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain, _ := issueChain(t, key)
	c, err := Pack(&tls.Certificate{Certificate: chain, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Certificate()
	a.Certificate = nil
	*a.PrivateKey.(*ecdsa.PrivateKey) = ecdsa.PrivateKey{}
	b, err := c.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Certificate) != len(chain) || !b.PrivateKey.(*ecdsa.PrivateKey).Equal(key) {
		t.Fatal("changing one rebuilt certificate changed the packed one")
	}
}

// issueChain makes a root and a leaf for host signed by it, returning the
// chain as a server sends it (leaf, then root) and a pool with the root.
func issueChain(t testing.TB, leafKey crypto.Signer) ([][]byte, *x509.CertPool) {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "packedcert test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, root, leafKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return [][]byte{leafDER, rootDER}, pool
}

// handshake runs a TLS 1.3 server that takes its certificate from c over
// loopback TCP and returns what the verifying client saw.
func handshake(t *testing.T, c Cert, roots *x509.CertPool) tls.ConnectionState {
	t.Helper()
	return handshakeGet(t, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.Certificate() }, roots)
}

// handshakeGet is handshake with the server's GetCertificate.
func handshakeGet(t *testing.T, get func(*tls.ClientHelloInfo) (*tls.Certificate, error), roots *x509.CertPool) tls.ConnectionState {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer conn.Close()
		srv := tls.Server(conn, &tls.Config{
			MinVersion:     tls.VersionTLS13,
			GetCertificate: get,
		})
		srvErr <- srv.Handshake()
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatalf("handshake: %v (server: %v)", err, <-srvErr)
	}
	defer conn.Close()
	if err := <-srvErr; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	return conn.ConnectionState()
}

// A rebuilt ECDSA pair is the key and chain that were packed, for every
// curve (coordinates with leading zero bytes included) and for chains that
// fit in the rebuilt object and longer ones.
func TestRebuildKeepsKeyAndChain(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		for _, n := range []int{1, 3, 4, 7} {
			t.Run(fmt.Sprintf("%s/chain=%d", curve.Params().Name, n), func(t *testing.T) {
				for range 20 { // some keys have a coordinate shorter than the curve's size
					key, err := ecdsa.GenerateKey(curve, rand.Reader)
					if err != nil {
						t.Fatal(err)
					}
					chain := make([][]byte, n)
					for i := range chain {
						chain[i] = fmt.Appendf(nil, "certificate %d of %d", i, n)
					}
					c, err := Pack(&tls.Certificate{Certificate: chain, PrivateKey: key})
					if err != nil {
						t.Fatal(err)
					}
					got, err := c.Certificate()
					if err != nil {
						t.Fatal(err)
					}
					k := got.PrivateKey.(*ecdsa.PrivateKey)
					kb, err := k.Bytes()
					if err != nil {
						t.Fatal(err)
					}
					want, _ := key.Bytes()
					if !k.Equal(key) || !bytes.Equal(kb, want) || !k.PublicKey.Equal(&key.PublicKey) {
						t.Fatalf("rebuilt key differs: %x, want %x", kb, want)
					}
					if len(got.Certificate) != n {
						t.Fatalf("rebuilt chain has %d certificates, want %d", len(got.Certificate), n)
					}
					for i := range chain {
						if !bytes.Equal(got.Certificate[i], chain[i]) {
							t.Fatalf("certificate %d is %q, want %q", i, got.Certificate[i], chain[i])
						}
					}
				}
			})
		}
	}
}

// Rebuilding an ECDSA pair with a chain of up to three certificates is one
// heap allocation (it was nine), see rebuilt.
func TestRebuildIsOneAllocation(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain, _ := issueChain(t, key)
	c, err := Pack(&tls.Certificate{Certificate: chain, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := c.Certificate(); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("Certificate allocates %v times, want 1", n)
	}
}

// An ECDSA pair keeps its public point once, in the leaf, where the
// certificate has it; a leaf without it (a pair assembled by hand) keeps
// the point beside the key. Either rebuilds the key it was given, and a
// packed offset outside the leaf is an error, not a panic.
func TestPublicPointFromTheLeaf(t *testing.T) {
	keyOf := func(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		size := (curve.Params().BitSize + 7) / 8
		t.Run(curve.Params().Name, func(t *testing.T) {
			key := keyOf(t, curve)
			own, _ := issueChain(t, key)
			other, _ := issueChain(t, keyOf(t, curve))
			for _, tc := range []struct {
				name    string
				chain   [][]byte
				keyLen  int // raw key bytes packed
				inLeaf  bool
				corrupt bool
			}{
				{"its own leaf", own, size + 2, true, false},
				{"a leaf of another key", other, 3 * size, false, false},
				{"an offset past the leaf", own, size + 2, true, true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c, err := Pack(&tls.Certificate{Certificate: tc.chain, PrivateKey: key})
					if err != nil {
						t.Fatal(err)
					}
					want := 1 + 1 + tc.keyLen
					for _, der := range tc.chain {
						want += 4 + len(der)
					}
					packed := c.packed()
					if len(packed) != want {
						t.Errorf("packed %d bytes, want %d", len(packed), want)
					}
					kind := keyKind(packed[len(packed)-tc.keyLen-1])
					if got := kind&pointInLeaf != 0; got != tc.inLeaf {
						t.Errorf("point in leaf = %v, want %v", got, tc.inLeaf)
					}
					if tc.corrupt {
						packed[len(packed)-2], packed[len(packed)-1] = 0xff, 0xf0
						if _, err := c.Certificate(); err == nil {
							t.Fatal("an offset past the leaf rebuilt a key")
						}
						return
					}
					got, err := c.Certificate()
					if err != nil {
						t.Fatal(err)
					}
					if !got.PrivateKey.(*ecdsa.PrivateKey).Equal(key) {
						t.Error("the rebuilt key is not the one packed")
					}
				})
			}
		})
	}
}
