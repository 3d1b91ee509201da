package mappings

import (
	"context"
	"crypto"
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

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

// leafPEM makes a self-signed certificate for hosts with key, as an
// operator's own tooling might: isCA sets basic constraints CA:TRUE.
func leafPEM(t testing.TB, key crypto.Signer, isCA bool, notBefore, notAfter time.Time, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: hosts[0]},
		DNSNames:              hosts,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err = pki.EncodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCert(der), keyPEM
}

func ecKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// RSA keys under 2048 bits are refused (exit 2) for uploaded and file
// certificates; a CA certificate as the leaf and a lifetime beyond what
// clients accept are warnings, returned with the mapping.
func TestAddKeyStrengthAndLeafWarnings(t *testing.T) {
	s, root := newStore(t)
	dir := t.TempDir()
	const h = "edge.example.com"
	rsa1024 := rsaKey(t, 1024)
	tests := []struct {
		desc     string
		key      crypto.Signer
		isCA     bool
		from, to time.Time
		file     bool
		refused  string   // a fragment of the error; "" means accepted
		warnings []string // fragments, one per warning, in order
	}{
		{desc: "RSA 1024 uploaded", key: rsa1024, from: now0.Add(-day), to: now0.Add(90 * day), refused: "the uploaded certificate cannot be used: its RSA key has 1024 bits, fewer than the 2048 p2ptls accepts"},
		{desc: "RSA 1024 file", key: rsa1024, from: now0.Add(-day), to: now0.Add(90 * day), file: true, refused: "its RSA key has 1024 bits"},
		{desc: "RSA 2048", key: rsaKey(t, 2048), from: now0.Add(-day), to: now0.Add(90 * day)},
		{desc: "ECDSA 397 days", key: ecKey(t), from: now0.Add(-day), to: now0.Add(396 * day)},
		{desc: "825 days is fine", key: ecKey(t), from: now0.Add(-day), to: now0.Add(824 * day)},
		{desc: "826 days", key: ecKey(t), from: now0.Add(-day), to: now0.Add(825 * day), warnings: []string{"is valid for 826 days (2026-02-28 to 2028-06-03), longer than the 825 days Apple platforms accept"}},
		{desc: "200 years", key: ecKey(t), from: now0.Add(-day), to: now0.AddDate(200, 0, 0), warnings: []string{"is valid for 73049 days"}},
		{desc: "CA as leaf", key: ecKey(t), isCA: true, from: now0.Add(-day), to: now0.Add(90 * day), warnings: []string{"the uploaded certificate is a CA certificate (basic constraints CA:TRUE)"}},
		{desc: "CA as leaf for 100 years, by file", key: ecKey(t), isCA: true, from: now0.Add(-day), to: now0.AddDate(100, 0, 0), file: true,
			warnings: []string{"the certificate in " + dir + "/f.crt is a CA certificate", "is valid for 36525 days"}},
	}
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			certPEM, keyPEM := leafPEM(t, tc.key, tc.isCA, tc.from, tc.to, h)
			in := manual("", certPEM, keyPEM, h)
			in.Mapping.ID = "m" + string(rune('a'+i))
			if tc.file {
				in = Input{Mapping: in.Mapping}
				in.Mapping.Source = "file"
				in.Mapping.CertFile = writeFile(t, dir, "f.crt", certPEM)
				in.Mapping.KeyFile = writeFile(t, dir, "f.key", keyPEM)
			}
			before := snapshot(t, root)
			m, warnings, err := Add(context.Background(), s, in, now0)
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) || fault.KindOf(err) != fault.Invalid {
					t.Fatalf("Add = %v (kind %v), want Invalid containing %q", err, fault.KindOf(err), tc.refused)
				}
				assertUnchanged(t, before, root)
				return
			}
			if err != nil {
				t.Fatalf("Add: %v", err)
			}
			if len(warnings) != len(tc.warnings) {
				t.Fatalf("warnings %q, want %d: %q", warnings, len(tc.warnings), tc.warnings)
			}
			for j, w := range tc.warnings {
				if !strings.Contains(warnings[j], w) {
					t.Errorf("warning %d = %q, want it to contain %q", j, warnings[j], w)
				}
			}
			if _, err := Remove(context.Background(), s, m.ID); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The API's POST /api/v1/mappings goes through Add: credentials in the
// upstream and invisible code points in a host are refused there too (422),
// before anything is written, and the password is not in the message.
func TestAddRefusesUserinfoAndInvisibleHosts(t *testing.T) {
	s, root := newStore(t)
	for _, tc := range []struct {
		desc string
		in   Input
		want string
	}{
		{"userinfo upstream", Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"a.example.com"}, Source: state.SourceSelfSigned, Upstream: "http://admin:pa55word@127.0.0.1:8080"}},
			`upstream "http://***@127.0.0.1:8080" carries a user name or password`},
		{"zero width space", Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"a.example.com", "sh\u200bop.example.com"}, Source: state.SourceSelfSigned}},
			"contains U+200B ZERO WIDTH SPACE at character 3"},
		{"bidi override", Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"\u202emoc.example.com"}, Source: state.SourceACME, Challenge: "http-01"}},
			"U+202E RIGHT-TO-LEFT OVERRIDE at character 1"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			before := snapshot(t, root)
			_, _, err := Add(context.Background(), s, tc.in, now0)
			if err == nil || !strings.Contains(err.Error(), tc.want) || fault.KindOf(err) != fault.Invalid {
				t.Fatalf("Add = %v (kind %v), want Invalid containing %q", err, fault.KindOf(err), tc.want)
			}
			if strings.Contains(err.Error(), "pa55word") {
				t.Errorf("the password is in the message: %v", err)
			}
			assertUnchanged(t, before, root)
		})
	}
	// A valid IDN still works, stored as punycode.
	m := mustAdd(t, s, selfSignedIn("idn", "web", 0, "Bücher.example.com."))
	if m.Hosts[0] != "xn--bcher-kva.example.com" {
		t.Errorf("IDN stored as %q", m.Hosts[0])
	}
}

// serve reads a mapping's files with ReadFiles and parses them itself: a
// file mapping whose key was replaced on disk by an RSA key above 8192
// bits is refused there, unparsed, so a reload never spends minutes on it.
func TestReadFilesRefusesHugeRSAKey(t *testing.T) {
	s, _ := newStore(t)
	dir := t.TempDir()
	leaf := issue(t, now0.Add(-day), 90*day, "file.example.com")
	m := state.Mapping{ID: "f", Listener: "web", Hosts: []string{"file.example.com"}, Source: state.SourceFile,
		CertFile: writeFile(t, dir, "f.crt", chainPEM(leaf)), KeyFile: writeFile(t, dir, "f.key", leaf.KeyPEM)}
	mustAdd(t, s, Input{Mapping: m})
	if _, _, err := ReadFiles(context.Background(), s, m); err != nil {
		t.Fatalf("ReadFiles: %v", err)
	}
	// 16384 bits shaped as PKCS#1: version, modulus, … (only the size is read).
	n := new(big.Int).Lsh(big.NewInt(1), 16383)
	der, err := asn1.Marshal(struct {
		Version int
		N       *big.Int
		E       int
	}{0, n, 65537})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "f.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}))
	_, _, err = ReadFiles(context.Background(), s, m)
	if err == nil || !strings.Contains(err.Error(), dir+"/f.key: the RSA private key has 16384 bits, more than the 8192 p2ptls accepts") {
		t.Fatalf("ReadFiles = %v", err)
	}
}
