package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// goLeaf is what x509.CreateCertificate makes of tmpl, signed by key.
// now is fixed, as in the external tests.
var now = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

func goLeaf(t testing.TB, tmpl *x509.Certificate, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	// No randomness: the key signs deterministically (RFC 6979), as
	// selfSignLeaf has it sign.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return c
}

// checkSameAsGo holds selfSignLeaf's certificate for tmpl to the one
// x509.CreateCertificate makes with no randomness (the key signs by RFC
// 6979): the same certificate byte for byte, a valid self-signature, and
// the outer SEQUENCE as encoding/asn1 writes it.
func checkSameAsGo(t testing.TB, tmpl *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	want := goLeaf(t, tmpl, key)
	kp, err := selfSignLeaf(tmpl, key)
	if err != nil {
		t.Fatalf("selfSignLeaf: %v", err)
	}
	got := kp.Cert
	if !bytes.Equal(got.RawTBSCertificate, want.RawTBSCertificate) {
		t.Fatalf("TBSCertificate differs from CreateCertificate's\n got %x\nwant %x", got.RawTBSCertificate, want.RawTBSCertificate)
	}
	if !bytes.Equal(got.Raw, want.Raw) {
		t.Fatalf("certificate differs from CreateCertificate's (the signature: %v)\n got %x\nwant %x", !bytes.Equal(got.Signature, want.Signature), got.Raw, want.Raw)
	}
	if err := got.CheckSignature(got.SignatureAlgorithm, got.RawTBSCertificate, got.Signature); err != nil {
		t.Fatalf("self-signature: %v", err)
	}
	outer, err := asn1.Marshal(struct {
		TBS asn1.RawValue
		Alg pkix.AlgorithmIdentifier
		Sig asn1.BitString
	}{asn1.RawValue{FullBytes: got.RawTBSCertificate}, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}},
		asn1.BitString{Bytes: got.Signature, BitLength: 8 * len(got.Signature)}})
	if err != nil || !bytes.Equal(outer, got.Raw) {
		t.Fatalf("certificate is not the DER encoding/asn1 writes (%v)", err)
	}
	block, rest := pem.Decode(kp.CertPEM)
	if block == nil || len(rest) != 0 || !bytes.Equal(block.Bytes, got.Raw) {
		t.Fatal("CertPEM does not hold the certificate")
	}
	if _, err := LoadKeyPair(kp.CertPEM, kp.KeyPEM); err != nil {
		t.Fatalf("LoadKeyPair: %v", err)
	}
}

func TestSelfSignLeafMatchesCreateCertificate(t *testing.T) {
	day := 24 * time.Hour
	long := strings.Repeat("a", 60) + ".example.org" // over 64: no common name
	many := make([]string, 300)                      // long-form lengths above 0xffff
	for i := range many {
		many[i] = strings.Repeat("x", 200) + ".example.org"
		many[i] = many[i][:190] + string(rune('a'+i%26)) + many[i][191:]
	}
	tests := []struct {
		desc     string
		hosts    []string
		now      time.Time
		validity time.Duration
	}{
		{"one name", []string{"shop.example.com"}, now, 90 * day},
		{"several names", []string{"a.example.com", "b.example.com", "c.example.net"}, now, 90 * day},
		{"wildcard: a UTF8String common name", []string{"*.example.com", "example.com"}, now, 397 * day},
		{"underscore: a UTF8String common name", []string{"_srv.example.com"}, now, day},
		{"IPv4 only: common name is the address", []string{"192.0.2.7"}, now, 30 * day},
		{"IPv6 and a name", []string{"2001:db8::1", "x.example"}, now, 30 * day},
		{"IPv4-mapped IPv6 is written in 4 bytes", []string{"::ffff:192.0.2.1", "y.example"}, now, 30 * day},
		{"common name too long: empty subject, critical SAN", []string{long}, now, 30 * day},
		{"common name too long, then a short one", []string{long, "short.example"}, now, 30 * day},
		{"hundreds of long names", many, now, 30 * day},
		{"expires after 2049: GeneralizedTime", []string{"late.example"}, time.Date(2049, 12, 1, 0, 0, 0, 0, time.UTC), 60 * day},
		{"wholly after 2050", []string{"later.example"}, time.Date(2101, 3, 4, 5, 6, 7, 0, time.UTC), 60 * day},
		{"before 2000", []string{"early.example"}, time.Date(1999, 12, 31, 23, 30, 0, 0, time.UTC), day},
		{"sub-second now, another zone", []string{"zone.example"}, time.Date(2026, 5, 6, 7, 8, 9, 987654321, time.FixedZone("X", 5*3600+1800)), 10 * day},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			tmpl, key, err := leafTemplate(ParseNames(tc.hosts), tc.now, tc.validity)
			if err != nil {
				t.Fatal(err)
			}
			if err := identify(tmpl, key); err != nil {
				t.Fatal(err)
			}
			checkSameAsGo(t, tmpl, key)
		})
	}
	t.Run("serials with the top bit set and small ones", func(t *testing.T) {
		for _, serial := range []*big.Int{big.NewInt(1), big.NewInt(127), big.NewInt(128), big.NewInt(255), new(big.Int).Lsh(big.NewInt(1), 127)} {
			tmpl, key, err := leafTemplate(ParseNames([]string{"s.example"}), now, day)
			if err != nil {
				t.Fatal(err)
			}
			if err := identify(tmpl, key); err != nil {
				t.Fatal(err)
			}
			tmpl.SerialNumber = serial
			checkSameAsGo(t, tmpl, key)
		}
	})
}

// FuzzSelfSignLeaf holds the encoder to CreateCertificate over names, times
// and validities: the same TBSCertificate, or both refuse.
func FuzzSelfSignLeaf(f *testing.F) {
	f.Add("shop.example.com", int64(1772366400), int64(90*86400))
	f.Add("*.example.com,example.com,192.0.2.1", int64(2524608000), int64(397*86400))
	f.Add("2001:db8::1", int64(-631152000), int64(1))
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, hosts string, unix, seconds int64) {
		if len(hosts) > 4096 {
			return
		}
		names := ParseNames(strings.Split(hosts, ","))
		tmpl, _, err := leafTemplate(names, time.Unix(unix, 0), time.Duration(seconds)*time.Second)
		if err != nil {
			return // refused before any encoding, by either path
		}
		if err := identify(tmpl, key); err != nil {
			t.Fatal(err)
		}
		_, goErr := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		tbs, ok := leafTBS(tmpl, &key.PublicKey)
		if !ok {
			return // CreateCertificate decides, as before
		}
		if goErr != nil {
			t.Fatalf("encoder takes what CreateCertificate refuses: %v", goErr)
		}
		if want := goLeaf(t, tmpl, key).RawTBSCertificate; !bytes.Equal(tbs, want) {
			t.Fatalf("TBSCertificate differs\n got %x\nwant %x", tbs, want)
		}
	})
}

func TestSelfSignLeafLeavesTheRestToCreateCertificate(t *testing.T) {
	// A name that is not ASCII: CreateCertificate refuses it, as before.
	tmpl, key, err := leafTemplate(Names{DNS: []string{"bücher.example"}}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identify(tmpl, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := leafTBS(tmpl, &key.PublicKey); ok {
		t.Fatal("encoder took a name that is not an IA5String")
	}
	if _, err := selfSignLeaf(tmpl, key); err == nil || !strings.Contains(err.Error(), "IA5String") {
		t.Fatalf("selfSignLeaf = %v, want CreateCertificate's refusal", err)
	}
	// A year GeneralizedTime cannot hold.
	tmpl, key, err = leafTemplate(Names{DNS: []string{"far.example"}}, time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identify(tmpl, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := leafTBS(tmpl, &key.PublicKey); ok {
		t.Fatal("encoder took a year above 9999")
	}
}

func TestEncodeECKeyMatchesMarshalPKCS8(t *testing.T) {
	// Random keys, and one whose scalar starts with a zero byte (padded to
	// 32 bytes in both): about one key in 256 has it.
	leadingZero := false
	for i := 0; i < 20 || !leadingZero; i++ {
		if i > 20000 {
			t.Fatal("no key with a leading zero byte in 20000")
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := key.Bytes()
		if d[0] != 0 && i >= 20 {
			continue
		}
		leadingZero = leadingZero || d[0] == 0
		got, err := encodeECKey(key)
		if err != nil {
			t.Fatal(err)
		}
		want, err := EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("key %d: encodeECKey differs from MarshalPKCS8PrivateKey\n got %s\nwant %s", i, got, want)
		}
	}
}

func TestSameAsAskedRefusesWhatWasNotAsked(t *testing.T) {
	tmpl, key, err := leafTemplate(ParseNames([]string{"a.example", "192.0.2.1"}), now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identify(tmpl, key); err != nil {
		t.Fatal(err)
	}
	cert := goLeaf(t, tmpl, key)
	if err := sameAsAsked(cert, tmpl, key); err != nil {
		t.Fatalf("the certificate asked for: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		desc   string
		change func(c *x509.Certificate)
		key    *ecdsa.PrivateKey
	}{
		{"another key", func(*x509.Certificate) {}, other},
		{"another serial", func(c *x509.Certificate) { c.SerialNumber = big.NewInt(7) }, key},
		{"another expiry", func(c *x509.Certificate) { c.NotAfter = c.NotAfter.Add(time.Second) }, key},
		{"another name", func(c *x509.Certificate) { c.DNSNames = []string{"b.example"} }, key},
		{"another address", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("192.0.2.2")} }, key},
		{"a CA", func(c *x509.Certificate) { c.IsCA = true }, key},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := *cert
			tc.change(&c)
			if err := sameAsAsked(&c, tmpl, tc.key); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// BenchmarkSelfSigned compares SelfSigned with what it did before (the
// same template through x509.CreateCertificate and EncodeKey).
func BenchmarkSelfSigned(b *testing.B) {
	names := ParseNames([]string{"i000001.example.org"})
	b.Run("encoder", func(b *testing.B) {
		for b.Loop() {
			if _, err := SelfSigned(names, now, 90*24*time.Hour); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CreateCertificate", func(b *testing.B) {
		for b.Loop() {
			tmpl, key, err := leafTemplate(names, now, 90*24*time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := create(tmpl, nil, key, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
