package packedcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"net"
	"testing"
)

// What a handshake pays for its certificate's signature: with the pair kept
// parsed (a hot entry), and rebuilt from the packed form (every other
// entry; the rebuilt key object is new, so crypto/ecdsa validates it and
// fills its per-key cache again before it signs).
//
//	go test -run XXX -bench . -benchmem ./serve/packedcert/
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

// The rebuild alone, per curve, and a rebuild followed by one signature
// (where crypto/ecdsa checks a key it has not seen): the second is what a
// handshake on an entry outside the hot set pays.
func BenchmarkRebuild(b *testing.B) {
	digest := sha256.Sum256([]byte("handshake transcript"))
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		chain, _ := issueChain(b, key)
		packed, err := Pack(&tls.Certificate{Certificate: chain, PrivateKey: key})
		if err != nil {
			b.Fatal(err)
		}
		name := curve.Params().Name
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := packed.Certificate(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"+sign", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c, err := packed.Certificate()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.PrivateKey.(crypto.Signer).Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A whole TLS 1.3 handshake over an in-memory pipe, client included, with
// the server's key kept parsed or rebuilt from the packed form each time:
// what the rebuild adds to a handshake outside the hot set.
func BenchmarkHandshake(b *testing.B) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		chain, roots := issueChain(b, key)
		pair := &tls.Certificate{Certificate: chain, PrivateKey: key}
		packed, err := Pack(pair)
		if err != nil {
			b.Fatal(err)
		}
		for _, tt := range []struct {
			name string
			get  func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		}{
			{"parsed", func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair, nil }},
			{"packed", func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return packed.Certificate() }},
		} {
			srvConf := &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: tt.get, SessionTicketsDisabled: true}
			cliConf := &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS13}
			b.Run(curve.Params().Name+"/"+tt.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					cc, sc := net.Pipe()
					done := make(chan error, 1)
					go func() { done <- tls.Server(sc, srvConf).Handshake() }()
					cerr := tls.Client(cc, cliConf).Handshake()
					cc.Close()
					serr := <-done
					sc.Close()
					if cerr != nil || serr != nil {
						b.Fatalf("handshake: client %v, server %v", cerr, serr)
					}
				}
			})
		}
	}
}
