// Package packedcert keeps a parsed certificate chain and private key in a
// form the garbage collector does not have to scan: one byte slice.
//
// A parsed tls.Certificate with an ECDSA key is about 13 heap objects (the
// chain, the key and its big.Ints), and crypto/ecdsa adds a few more in its
// per-key cache once the key has signed. At 100k mappings that is millions
// of objects that every GC cycle marks, and a TLS server allocates enough
// per handshake to run a cycle every few thousand handshakes: that work is
// most of what 100k certificates add to the cost of a handshake. A Cert
// holds ECDSA and Ed25519 pairs as one pointer-free slice and rebuilds the
// tls.Certificate for each handshake, which costs a few small allocations
// and no parsing. Other keys (RSA) are kept parsed: an RSA signature costs
// far more than the GC work its key causes.
package packedcert

// The deprecated big.Int fields of crypto/ecdsa keys are used on purpose:
// ecdsa.ParseRawPrivateKey, the only other way to build a key, derives the
// public key again on every rebuild (26 µs against 0.5 µs for P-256, about
// 10 % of a handshake outside the hot set; see BenchmarkRebuild).
//lint:file-ignore SA1019 rebuilding keys from D, X and Y is 50 times cheaper than ParseRawPrivateKey

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"runtime"
)

// Cert is a certificate chain and its private key. The zero Cert holds
// nothing; Certificate then fails.
type Cert struct {
	// at[off:off+n] is the chain and the key, in a chunk off the Go heap
	// (see arena.go): a count byte, each certificate as a 4-byte
	// big-endian length and its DER, then a key-kind byte and the key's
	// raw bytes (see keyKind and pointInLeaf). at keeps the chunk mapped.
	at     *chunk
	off, n uint32
	// parsed is the certificate as given, for keys that are not packed.
	parsed *tls.Certificate
}

// packed is c's bytes, nil for none.
func (c Cert) packed() []byte {
	if c.at == nil {
		return nil
	}
	return c.at.mem[c.off : c.off+c.n : c.off+c.n]
}

// keyKind is how the raw key bytes at the end of packed read.
type keyKind byte

const (
	// ECDSA keys are D, X and Y, each as long as the curve's byte size
	// (with pointInLeaf: D and where X and Y are in the leaf).
	keyP256 keyKind = iota + 1
	keyP384
	keyP521
	// An Ed25519 key is its 64-byte private key.
	keyEd25519
)

// pointInLeaf, added to an ECDSA kind, says that the raw bytes are D and a
// 2-byte big-endian offset into the leaf's DER where X and Y are: the
// leaf's public key is the uncompressed point 0x04||X||Y, so keeping them
// again would be 64 more bytes per P-256 pair (6 MB at 100k mappings).
const pointInLeaf keyKind = 0x10

var curves = map[keyKind]elliptic.Curve{keyP256: elliptic.P256(), keyP384: elliptic.P384(), keyP521: elliptic.P521()}

// maxChain bounds the chain length to what the count byte holds.
const maxChain = 255

// Pack makes a Cert of c, a pair from tls.X509KeyPair or the like. Only the
// chain and the key are kept: Leaf, OCSP staples and SCTs are dropped, since
// a server handshake works without them and p2ptls sets none.
func Pack(c *tls.Certificate) (Cert, error) {
	if len(c.Certificate) == 0 {
		return Cert{}, errors.New("pack certificate: the chain is empty")
	}
	var kind keyKind
	var raw []byte
	switch k := c.PrivateKey.(type) {
	case *ecdsa.PrivateKey:
		kind = curveKind(k.Curve)
		if kind == 0 {
			break
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		raw = make([]byte, 1+3*size)
		raw[0] = 4 // uncompressed
		k.D.FillBytes(raw[1+2*size:])
		k.X.FillBytes(raw[1 : 1+size])
		k.Y.FillBytes(raw[1+size : 1+2*size])
		// Any place the leaf holds these bytes will do, the public key's
		// or not: they are X and Y.
		if at := bytes.Index(c.Certificate[0], raw[:1+2*size]); at >= 0 && at+1 <= math.MaxUint16 {
			kind |= pointInLeaf
			raw = binary.BigEndian.AppendUint16(raw[1+2*size:], uint16(at+1))
		} else {
			raw = append(raw[1+2*size:], raw[1:1+2*size]...) // D, X, Y
		}
	case ed25519.PrivateKey:
		kind, raw = keyEd25519, k
	}
	if kind == 0 || len(c.Certificate) > maxChain {
		keep := tls.Certificate{Certificate: c.Certificate, PrivateKey: c.PrivateKey}
		return Cert{parsed: &keep}, nil
	}
	n := 1 + 1 + len(raw)
	for _, der := range c.Certificate {
		n += 4 + len(der)
	}
	at, off := place(n)
	b := at.mem[off : off : off+n]
	b = append(b, byte(len(c.Certificate)))
	for _, der := range c.Certificate {
		b = binary.BigEndian.AppendUint32(b, uint32(len(der)))
		b = append(b, der...)
	}
	b = append(b, byte(kind))
	b = append(b, raw...)
	if len(b) != n {
		panic("packedcert: packed size miscounted") // append would have left the chunk
	}
	return Cert{at: at, off: uint32(off), n: uint32(n)}, nil
}

func curveKind(c elliptic.Curve) keyKind {
	for kind, curve := range curves {
		if curve == c {
			return kind
		}
	}
	return 0
}

// Fingerprint is the SHA-256 of the leaf's DER; the zero value when c
// holds nothing. It is computed when asked (about a microsecond) rather
// than kept: 32 bytes per certificate on the Go heap cost more at 100k
// mappings than the few handshakes that ask.
func (c Cert) Fingerprint() [sha256.Size]byte {
	if c.parsed != nil {
		if len(c.parsed.Certificate) == 0 {
			return [sha256.Size]byte{}
		}
		return sha256.Sum256(c.parsed.Certificate[0])
	}
	b := c.packed()
	if len(b) < 5 || b[0] == 0 {
		return [sha256.Size]byte{}
	}
	sum := sha256.Sum256(b[5 : 5+binary.BigEndian.Uint32(b[1:])])
	runtime.KeepAlive(c.at) // b is in c.at's chunk
	return sum
}

// Certificate returns a tls.Certificate for one handshake. Its chain shares
// c's memory and must not be modified.
func (c Cert) Certificate() (*tls.Certificate, error) {
	if c.parsed != nil {
		return c.parsed, nil
	}
	b := c.packed()
	if len(b) == 0 {
		return nil, errors.New("no certificate was packed")
	}
	n := int(b[0])
	b = b[1:]
	// Find the key first: an ECDSA pair is built in one allocation.
	at := b
	for range n {
		at = at[4+int(binary.BigEndian.Uint32(at)):]
	}
	kind, raw := keyKind(at[0]), at[1:]
	var r *rebuilt
	var ed *rebuiltEd25519
	var chain [][]byte
	switch {
	case kind == keyEd25519:
		ed = &rebuiltEd25519{at: c.at}
		if n <= len(ed.chain) {
			chain = ed.chain[:n:n]
		} else {
			chain = make([][]byte, n)
		}
	case curves[kind&^pointInLeaf] == nil:
		return nil, fmt.Errorf("packed certificate has unknown key kind %d", kind)
	default:
		r = &rebuilt{at: c.at}
		if n <= len(r.chain) {
			chain = r.chain[:n:n]
		} else {
			chain = make([][]byte, n)
		}
	}
	for i := range chain {
		l := int(binary.BigEndian.Uint32(b))
		chain[i] = b[4 : 4+l : 4+l]
		b = b[4+l:]
	}
	if ed != nil {
		if len(raw) != len(ed.key) {
			return nil, errors.New("packed Ed25519 key has the wrong size")
		}
		// On the heap: crypto/ed25519 caches each key by a weak pointer
		// to it, which the runtime makes only for heap memory.
		copy(ed.key[:], raw)
		ed.cert = tls.Certificate{Certificate: chain, PrivateKey: ed25519.PrivateKey(ed.key[:])}
		return &ed.cert, nil
	}
	curve := curves[kind&^pointInLeaf]
	size := (curve.Params().BitSize + 7) / 8
	d, xy := raw[:size], raw[size:]
	if kind&pointInLeaf != 0 {
		at, leaf := int(binary.BigEndian.Uint16(raw[size:])), chain[0]
		if len(raw) != size+2 || at+2*size > len(leaf) {
			return nil, errors.New("packed certificate's public key is not in its leaf")
		}
		xy = leaf[at : at+2*size]
	}
	words := (size*8 + bits.UintSize - 1) / bits.UintSize
	// crypto/ecdsa validates the key when it first signs with it.
	r.key = ecdsa.PrivateKey{
		PublicKey: ecdsa.PublicKey{Curve: curve,
			X: setBytes(&r.x, r.words[words:2*words:2*words], xy[:size]),
			Y: setBytes(&r.y, r.words[2*words:3*words:3*words], xy[size:2*size])},
		D: setBytes(&r.d, r.words[:words:words], d),
	}
	r.cert = tls.Certificate{Certificate: chain, PrivateKey: &r.key}
	return &r.cert, nil
}

// maxKeyWords is how many big.Words the largest coordinate (P-521's, 66
// bytes) takes.
const maxKeyWords = (66*8 + bits.UintSize - 1) / bits.UintSize

// rebuilt is what Certificate returns for an ECDSA pair, in one heap
// object: the tls.Certificate, the key, its three numbers and their words,
// and a short chain. Apart, they are nine small objects per handshake
// outside the hot set, and crypto/ecdsa's cache of checked keys adds a
// weak pointer and a cleanup to the key, which the runtime keeps in a
// per-span list it searches linearly: with 48-byte keys packed 170 to a
// span, that search was most of what the cache cost.
//
// Its chain is in c's chunk, which at keeps mapped for as long as the
// certificate is held (see arena.go).
type rebuilt struct {
	cert    tls.Certificate
	key     ecdsa.PrivateKey
	x, y, d big.Int
	words   [3 * maxKeyWords]big.Word
	chain   [3][]byte // leaf and up to two intermediates
	at      *chunk
}

// rebuiltEd25519 is what Certificate returns for an Ed25519 pair: its
// chain is in the chunk at keeps mapped.
type rebuiltEd25519 struct {
	cert  tls.Certificate
	key   [ed25519.PrivateKeySize]byte
	chain [3][]byte
	at    *chunk
}

// setBytes sets z to the big-endian number b, using w (len(w) words, as
// many as b needs) as z's storage, and returns z.
func setBytes(z *big.Int, w []big.Word, b []byte) *big.Int {
	clear(w)
	for i, j := len(b)-1, 0; i >= 0; i, j = i-1, j+1 {
		w[j/(bits.UintSize/8)] |= big.Word(b[i]) << (8 * (j % (bits.UintSize / 8)))
	}
	return z.SetBits(w)
}

// Owner keeps the chunk a packed Cert lies in mapped. With Loc it lets a
// holder of many Certs keep their locations apart from what keeps them
// mapped: serve's entries hold no pointers, so the collector need not scan
// them, and a slab of entries holds the owners of theirs.
type Owner struct{ at *chunk }

// Loc is where a packed Cert lies in its Owner's chunk.
type Loc struct{ off, n uint32 }

// Split is c's owner and location; ok is false when c is not packed (the
// zero Cert, or one kept as given), which Join cannot make again.
func (c Cert) Split() (o Owner, l Loc, ok bool) {
	return Owner{c.at}, Loc{c.off, c.n}, c.at != nil
}

// Join is the packed Cert at l in o's chunk, as Split found it.
func Join(o Owner, l Loc) Cert { return Cert{at: o.at, off: l.off, n: l.n} }
