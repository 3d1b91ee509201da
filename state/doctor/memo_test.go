package doctor

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// TestPairOutcomeHasEveryField: every field of pairOutcome survives the
// memo, so that one added to the struct cannot silently vanish.
func TestPairOutcomeHasEveryField(t *testing.T) {
	typ := reflect.TypeFor[pairOutcome]()
	if typ.NumField() != pairOutcomeFields {
		t.Fatalf("pairOutcome has %d fields, encodePairOutcome writes %d: add the new field to encodePairOutcome and decodePairOutcome", typ.NumField(), pairOutcomeFields)
	}
	var o pairOutcome
	v := reflect.ValueOf(&o).Elem()
	for i := range typ.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("value of " + typ.Field(i).Name)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]string{"a.example.com", "*.b.example.com"}))
		case reflect.Struct: // state.FileID
			for j := range f.NumField() {
				switch g := f.Field(j); g.Kind() {
				case reflect.Uint64:
					g.SetUint(uint64(1<<40 + j))
				case reflect.Int64:
					g.SetInt(int64(-1<<40 - j))
				default:
					t.Fatalf("FileID field %d has kind %s, which this test does not fill", j, g.Kind())
				}
			}
		default:
			t.Fatalf("field %s has kind %s, which this test does not fill", typ.Field(i).Name, f.Kind())
		}
	}
	got, err := decodePairOutcome(encodePairOutcome(&o))
	if err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, o)
	}
	// No names and an error: nil stays nil.
	e := pairOutcome{MappingID: "a", Err: "load mapping \"a\": broken"}
	if got, err := decodePairOutcome(encodePairOutcome(&e)); err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, e)
	}
}

// TestDecodePairOutcomeRefusesDamage: a truncated value, one with bytes
// after it, or of another version is refused, never a panic or a value.
func TestDecodePairOutcomeRefusesDamage(t *testing.T) {
	o := pairOutcome{MappingID: "app", Source: "self-signed", CertPath: "/s/certs/public/app/cert.pem", Key: "certs/public/app/key.pem",
		KeyID: state.FileID{Dev: 1, Ino: 2, Size: 3, Mtime: 4, Ctime: 5}, DNSNames: []string{"app.example.com"}, Covers: "app.example.com"}
	b := encodePairOutcome(&o)
	for n := range len(b) {
		if _, err := decodePairOutcome(b[:n]); err == nil {
			t.Fatalf("the first %d of %d bytes decode", n, len(b))
		}
	}
	if _, err := decodePairOutcome(append(b[:len(b):len(b)], 0)); err == nil {
		t.Fatal("a value with a byte after it decodes")
	}
	other := append([]byte{pairMemoVersion + 1}, b[1:]...)
	if _, err := decodePairOutcome(other); err == nil {
		t.Fatal("a value of another version decodes")
	}
}

// countLoads counts the pairs of stored mappings (not source file) that
// doctor loads (memo misses), until the test ends.
func countLoads(t *testing.T) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	orig := loadMapping
	loadMapping = func(ctx context.Context, s state.Store, m state.Mapping) (*mappings.Cert, error) {
		if m.Source != state.SourceFile {
			n.Add(1)
		}
		return orig(ctx, s, m)
	}
	t.Cleanup(func() { loadMapping = orig })
	return &n
}

// certForKey is a self-signed certificate for host with the key in keyPEM.
func certForKey(t *testing.T, keyPEM []byte, host string) []byte {
	t.Helper()
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now0.Add(-time.Hour), NotAfter: now0.Add(90 * day),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pki.EncodeCert(der)
}

// rewrite replaces the content of the file at p in place (same inode, as
// cp and shell redirection do), keeping its mode.
func rewrite(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWarmMemoSeesEveryChange: with doctor's memo warm (a run has
// memoized every pair, and a second run loads none), each change of a
// mapping's files is still reported, exactly as a run without the memo
// reports it.
func TestWarmMemoSeesEveryChange(t *testing.T) {
	type fixture struct {
		root           string
		certFile, link string // the file mapping's certificate, and the symlink it names
	}
	tests := []struct {
		desc   string
		setup  func(t *testing.T, f fixture) // before the memo is warmed
		change func(t *testing.T, f fixture) (root string)
		id     string // the check that reports it
		status Status
		msg    string
	}{
		{desc: "certificate rewritten in place for another host, same key", id: IDCoverage, status: Fail, msg: "mapping a: its certificate does not cover a.example.com (it covers other.example.com)",
			change: func(t *testing.T, f fixture) string {
				dir := filepath.Join(f.root, "certs", "public", "a")
				key, err := os.ReadFile(filepath.Join(dir, "key.pem"))
				if err != nil {
					t.Fatal(err)
				}
				rewrite(t, filepath.Join(dir, "cert.pem"), certForKey(t, key, "other.example.com"))
				return f.root
			}},
		{desc: "key rewritten in place with something that is not a key", id: IDCoverage, status: Fail, msg: `load mapping "a"`,
			change: func(t *testing.T, f fixture) string {
				rewrite(t, filepath.Join(f.root, "certs", "public", "a", "key.pem"), []byte("not a key\n"))
				return f.root
			}},
		{desc: "key replaced by the valid key of another mapping's certificate", id: IDCoverage, status: Fail, msg: "does not match",
			change: func(t *testing.T, f fixture) string {
				other, err := os.ReadFile(filepath.Join(f.root, "certs", "public", "b", "key.pem"))
				if err != nil {
					t.Fatal(err)
				}
				rewrite(t, filepath.Join(f.root, "certs", "public", "a", "key.pem"), other) // same size: a P-256 key
				return f.root
			}},
		{desc: "key mode changed to 0644", id: IDPermissions, status: Fail, msg: "certs/public/a/key.pem (0644)",
			change: func(t *testing.T, f fixture) string {
				if err := os.Chmod(filepath.Join(f.root, "certs", "public", "a", "key.pem"), 0o644); err != nil {
					t.Fatal(err)
				}
				return f.root
			}},
		{desc: "temporary file left in a mapping directory whose listing is memoized", id: IDOrphans, status: Warn, msg: "certs/public/a/.key.pem.tmp-77",
			change: func(t *testing.T, f fixture) string {
				writeMode(t, filepath.Join(f.root, "certs", "public", "a", ".key.pem.tmp-77"), 0o600)
				return f.root
			}},
		{desc: "file that others can read added to a mapping directory whose listing is memoized", id: IDPermissions, status: Fail, msg: "1 secret file that group or others can read or change: certs/public/b/notes.txt (0666)",
			change: func(t *testing.T, f fixture) string {
				writeMode(t, filepath.Join(f.root, "certs", "public", "b", "notes.txt"), 0o666)
				return f.root
			}},
		{desc: "file mapping's certificate symlink: its target rewritten", id: IDCoverage, status: Fail, msg: "does not match",
			change: func(t *testing.T, f fixture) string {
				kp, err := pki.SelfSigned(pki.ParseNames([]string{"f.example.com"}), now0, 90*day)
				if err != nil {
					t.Fatal(err)
				}
				rewrite(t, f.certFile, kp.CertPEM) // the symlink itself is unchanged
				return f.root
			}},
		{desc: "certificate that does not parse, state directory moved since", id: IDCoverage, status: Fail, msg: "moved/certs/public/a/cert.pem",
			setup: func(t *testing.T, f fixture) {
				rewrite(t, filepath.Join(f.root, "certs", "public", "a", "cert.pem"), []byte("not a certificate\n"))
			},
			change: func(t *testing.T, f fixture) string {
				moved := filepath.Join(filepath.Dir(f.root), "moved")
				if err := os.Rename(f.root, moved); err != nil {
					t.Fatal(err)
				}
				return moved
			}},
	}
	fixtures := make([]fixture, len(tests))
	for i := range tests {
		s := acmeState(t)
		for _, id := range []string{"a", "b"} {
			addMapping(t, s, state.Mapping{ID: id, Listener: "web", Hosts: []string{id + ".example.com"}, Source: state.SourceSelfSigned})
		}
		kp, err := pki.SelfSigned(pki.ParseNames([]string{"f.example.com"}), now0, 90*day)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		certFile, link, keyFile := filepath.Join(dir, "f.crt"), filepath.Join(dir, "live.crt"), filepath.Join(dir, "f.key")
		if err := os.WriteFile(certFile, kp.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, kp.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(certFile, link); err != nil {
			t.Fatal(err)
		}
		addMapping(t, s, state.Mapping{ID: "f", Listener: "web", Hosts: []string{"f.example.com"}, Source: state.SourceFile, CertFile: link, KeyFile: keyFile})
		fixtures[i] = fixture{root: s.Root(), certFile: certFile, link: link}
		if tests[i].setup != nil {
			tests[i].setup(t, fixtures[i])
		}
	}
	// Files changed within the racy window are never trusted by identity:
	// wait it out once, so that the memo is warm below.
	time.Sleep(time.Second + 100*time.Millisecond)
	loads := countLoads(t)
	// Each run is a new process: a new Dir, the memo read from its file.
	report := func(root string) Report {
		return Run(context.Background(), input(state.OpenDir(root, 2*time.Second)))
	}
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			root := fixtures[i].root
			before := report(root)
			loads.Store(0)
			memoFile := filepath.Join(root, filepath.FromSlash(state.MemoDir), pairMemoKind)
			saved, err := os.Stat(memoFile)
			if err != nil {
				t.Fatal(err)
			}
			if again := report(root); !reflect.DeepEqual(again, before) {
				t.Fatalf("a run with the memo warm reports\n%+v\nnot\n%+v", again, before)
			}
			// Nothing new went in (every pair and listing came from the
			// memo), so it was not written again.
			if now, err := os.Stat(memoFile); err != nil || !os.SameFile(now, saved) || !now.ModTime().Equal(saved.ModTime()) {
				t.Fatalf("a run with the memo warm wrote it again (%v)", err)
			}
			// The memo is warm: no stored mapping's pair is loaded again
			// (the file mapping's is: its certificate is a symlink).
			if n := loads.Load(); n != 0 {
				t.Fatalf("the second run loaded %d pairs: the memo is not warm", n)
			}
			root = tc.change(t, fixtures[i])
			got := report(root)
			if err := os.Remove(filepath.Join(root, filepath.FromSlash(state.MemoDir), pairMemoKind)); err != nil {
				t.Fatal(err)
			}
			cold := report(root)
			if !reflect.DeepEqual(got, cold) {
				t.Fatalf("with the memo warm, doctor reports\n%+v\nwithout it\n%+v", got, cold)
			}
			for _, c := range got.Checks {
				if c.ID == tc.id {
					want(t, c, tc.id, tc.status, tc.msg)
					return
				}
			}
			t.Fatalf("no check %s", tc.id)
		})
	}
}
