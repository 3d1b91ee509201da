package public

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// Entries of one slab load their certificates concurrently, and what each
// keeps in the slab's header (the chunk of a packed certificate, a
// certificate kept as given, a load error) stays its own: every entry is
// served its own leaf, and fails alone.
func TestEntriesOfASlabLoadConcurrently(t *testing.T) {
	const n = 24
	var ms []state.Mapping
	noCert := map[string]bool{}
	kind := func(i int) string { return [...]string{"ecdsa", "ed25519", "missing"}[i%3] }
	for i := range n {
		id := fmt.Sprintf("m%02d", i)
		ms = append(ms, state.Mapping{ID: id, Hosts: []string{id + ".example.com"}})
		if kind(i) != "ecdsa" {
			noCert[id] = true
		}
	}
	f := newFixture(t, ms, noCert, Options{})
	for i, m := range ms {
		if kind(i) == "ed25519" {
			certPEM, keyPEM := ed25519Pair(t, m.Hosts[0])
			if err := writePair(f.dir, m.ID, certPEM, keyPEM); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.s.mu.Lock()
	l := f.s.listeners["web"]
	f.s.mu.Unlock()
	entries := l.view.Load().entries
	if entries.len() != n || entries.at(0).hdr() != entries.at(n-1).hdr() {
		t.Fatalf("%d entries, the first and last in one slab: %v", entries.len(), entries.at(0).hdr() == entries.at(n-1).hdr())
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for g := range 4 {
		wg.Go(func() {
			for k := range n {
				i := (k + g*7) % n
				e := entries.at(i)
				c, err := e.certificate(f.store, &l.hot)
				switch {
				case kind(i) == "missing":
					if err == nil {
						errs <- fmt.Errorf("%s has no certificate files, yet loads", e.id())
					}
				case err != nil:
					errs <- fmt.Errorf("%s: %v", e.id(), err)
				case !slices.Contains(leafNames(c.Certificate[0]), e.id()+".example.com"):
					errs <- fmt.Errorf("%s is served the leaf of %v", e.id(), leafNames(c.Certificate[0]))
				case e.fingerprint() != sha256.Sum256(c.Certificate[0]):
					errs <- fmt.Errorf("%s: the fingerprint is not its leaf's", e.id())
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func leafNames(der []byte) []string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	return c.DNSNames
}

// ed25519Pair is a self-signed Ed25519 certificate for host: packedcert
// keeps such a pair as given, not packed.
func ed25519Pair(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}
