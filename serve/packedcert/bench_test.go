package packedcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"testing"
)

// What a handshake pays for its certificate's signature: with the pair kept
// parsed (a hot entry), and rebuilt from the packed form (every other
// entry; crypto/ecdsa then validates and caches the new key object).
//
//	go test -run XXX -bench Sign ./serve/packedcert/
func BenchmarkSign(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	chain, _ := issueChain(b, key)
	pair := &tls.Certificate{Certificate: chain, PrivateKey: key}
	packed, err := Pack(pair)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("handshake transcript"))
	sign := func(b *testing.B, c *tls.Certificate) {
		if _, err := c.PrivateKey.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("parsed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sign(b, pair)
		}
	})
	b.Run("packed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := packed.Certificate()
			if err != nil {
				b.Fatal(err)
			}
			sign(b, c)
		}
	})
}
