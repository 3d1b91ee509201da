package packedcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"runtime"
	"testing"
	"time"
)

// retire makes the arena start a new chunk for the next certificate, so
// that the one in use is referenced by its Certs alone.
func retire() {
	arena.Lock()
	arena.cur = nil
	arena.Unlock()
}

// collectUntil runs the garbage collector until done or 10 s have passed
// (cleanups run on their own goroutine, after the cycle that found the
// chunk unreachable), and reports done.
func collectUntil(done func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		runtime.GC()
		if done() {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return done()
}

// rebuiltAlone packs a pair into a chunk of its own and returns only the
// certificate rebuilt from it: the Cert is gone when it returns.
func rebuiltAlone(t *testing.T, chain [][]byte, key crypto.Signer) *tls.Certificate {
	t.Helper()
	retire()
	c, err := Pack(&tls.Certificate{Certificate: chain, PrivateKey: key})
	if err != nil {
		t.Fatal(err)
	}
	retire()
	r, err := c.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A certificate rebuilt for a handshake keeps the memory its chain is in
// mapped, however long the handshake holds it after every Cert of that
// chunk is gone (a reload replaced the entry): the chunk is unmapped only
// once nothing can read it. Without that, reading the chain below faults.
// The chunk freed meanwhile shows that the collector did run cleanups.
func TestRebuiltCertificateKeepsItsChunk(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func() (crypto.Signer, error)
	}{
		{"ecdsa p256", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }},
		{"ed25519", func() (crypto.Signer, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := tc.key()
			if err != nil {
				t.Fatal(err)
			}
			chain, roots := issueChain(t, key)
			held := rebuiltAlone(t, chain, key)
			// A witness: a chunk nothing holds is unmapped.
			_ = rebuiltAlone(t, chain, key)
			with := MappedBytes()
			if !collectUntil(func() bool { return MappedBytes() < with }) {
				t.Fatalf("a chunk nothing holds is still mapped: %d bytes mapped with it, %d now", with, MappedBytes())
			}
			for i, der := range held.Certificate {
				if string(der) != string(chain[i]) {
					t.Fatalf("certificate %d of the held chain changed", i)
				}
			}
			handshakeGet(t, func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return held, nil }, roots)
		})
	}
}

// Chunks whose certificates are all gone are unmapped: a reload's
// replaced certificates do not accumulate.
func TestChunksOfGoneCertificatesAreUnmapped(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain, _ := issueChain(t, key)
	retire()
	certs := make([]Cert, 3*chunkSize/len(chain[0]))
	chunks := map[*chunk]bool{}
	for i := range certs {
		var err error
		if certs[i], err = Pack(&tls.Certificate{Certificate: chain, PrivateKey: key}); err != nil {
			t.Fatal(err)
		}
		chunks[certs[i].at] = true
	}
	var theirs int64
	for c := range chunks {
		theirs += int64(len(c.mem))
	}
	if len(chunks) < 3 {
		t.Fatalf("%d certificates took %d chunks; want at least 3", len(certs), len(chunks))
	}
	with := MappedBytes()
	certs, chunks = nil, nil
	retire()
	// Other tests' chunks may go meanwhile: that only lowers the count.
	if !collectUntil(func() bool { return MappedBytes() <= with-theirs }) {
		t.Fatalf("%d bytes mapped after the certificates are gone, %d with them, which had %d", MappedBytes(), with, theirs)
	}
}
