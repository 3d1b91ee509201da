package mappings

import (
	"context"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// memoAge is past state's racy window: a file older than this when its
// summary is memoized is trusted by identity from then on.
const memoAge = 1100 * time.Millisecond

// listReads lists the state at root as a new command does (a new Dir, the
// memo loaded from its file) and returns the Infos and the files read.
func listReads(t *testing.T, root string) ([]Info, []string) {
	t.Helper()
	ctx := context.Background()
	d := state.OpenDir(root, 2*time.Second)
	cfg := mustConfig(t, d)
	var mu sync.Mutex
	var reads []string
	readHook = func(name string) {
		mu.Lock()
		defer mu.Unlock()
		reads = append(reads, name)
	}
	infos, err := List(ctx, d, cfg, "", now0)
	readHook = nil
	if err != nil {
		t.Fatal(err)
	}
	// Without the memo: every file read and parsed.
	want := []Info{}
	err = each(ctx, direct(d), cfg, "", now0, func(info Info) error {
		want = append(want, info)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(infos, want) {
		t.Fatalf("List through the memo:\n%+v\nwithout:\n%+v", infos, want)
	}
	sort.Strings(reads)
	return infos, reads
}

// summaryState has a self-signed mapping "ss", an ACME one "ac" with a
// certificate and meta.toml, and an ACME one "pend" without either (whose
// missing files are looked for on every list).
func summaryState(t *testing.T) (*state.Dir, string) {
	t.Helper()
	s, root := newStore(t)
	mustAdd(t, s, selfSignedIn("ss", "web", 90, "ss.example.com"))
	mustAdd(t, s, acmeIn("ac", "dns-01", "cf", "ac.example.com"))
	mustAdd(t, s, acmeIn("pend", "dns-01", "cf", "pend.example.com"))
	writeACME(t, s, "ac", Meta{Source: state.SourceACME, Attempts: 0})
	return s, root
}

// writeACME gives ACME mapping id a new certificate, as an issuance does.
func writeACME(t *testing.T, s state.Store, id string, meta Meta) *pki.KeyPair {
	t.Helper()
	kp := issue(t, now0.Add(-day), 90*day, id+".example.com")
	meta.IssuedAt, meta.NotAfter, meta.FingerprintSHA256 = now0, kp.Cert.NotAfter.UTC(), pki.Fingerprint(kp.Cert)
	err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
		return WriteCertificate(context.Background(), tx, id, kp, meta)
	})
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// pendingReads are looked for on every list: files that are not there.
var pendingReads = []string{certName("pend"), metaName("pend")}

func reads(names ...string) []string {
	out := slices.Concat(pendingReads, names)
	sort.Strings(out)
	return out
}

var everyRead = reads(certName("ss"), certName("ac"), metaName("ac"))

// TestSummaryMemo: a list reads only the files that changed since the
// last one, whichever way they changed, and shows what it would without
// the memo (listReads compares), also when the memo itself is damaged.
func TestSummaryMemo(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		desc   string
		change func(t *testing.T, s *state.Dir, root string)
		reads  []string
		check  func(t *testing.T, infos []Info, root string)
	}{
		{desc: "unchanged", change: func(*testing.T, *state.Dir, string) {}, reads: reads()},
		{desc: "regenerated (cert issue)", change: func(t *testing.T, s *state.Dir, _ string) {
			if err := Regenerate(ctx, s, "ss", now0); err != nil {
				t.Fatal(err)
			}
		}, reads: reads(certName("ss"))},
		{desc: "renewed (acme)", change: func(t *testing.T, s *state.Dir, _ string) {
			writeACME(t, s, "ac", Meta{Source: state.SourceACME, NextRenewalAt: now0.Add(7 * day)})
		}, reads: reads(certName("ac"), metaName("ac")), check: func(t *testing.T, infos []Info, _ string) {
			if got := infoOf(t, infos, "ac").NextRenewalAt; got == nil || !got.Equal(now0.Add(7*day)) {
				t.Errorf("next_renewal_at %v, want the renewed meta.toml's", got)
			}
		}},
		{desc: "replaced by hand (a rename)", change: func(t *testing.T, _ *state.Dir, root string) {
			p := storeFile(root, certName("ss"))
			tmp := writeFile(t, filepath.Dir(p), "new.pem", issue(t, now0, 30*day, "ss.example.com").CertPEM)
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}, reads: reads(certName("ss")), check: wantNotAfter("ss", now0.Add(30*day))},
		{desc: "rewritten in place, times put back", change: func(t *testing.T, _ *state.Dir, root string) {
			p := storeFile(root, certName("ss"))
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, issue(t, now0, 31*day, "ss.example.com").CertPEM, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, reads: reads(certName("ss")), check: wantNotAfter("ss", now0.Add(31*day))},
		{desc: "meta.toml edited in place", change: func(t *testing.T, _ *state.Dir, root string) {
			p := storeFile(root, metaName("ac"))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, append(b, "last_error = 'edited by hand'\n"...), 0o600); err != nil {
				t.Fatal(err)
			}
		}, reads: reads(metaName("ac")), check: func(t *testing.T, infos []Info, _ string) {
			if got := infoOf(t, infos, "ac").LastError; got != "edited by hand" {
				t.Errorf("last_error %q, want the edited one", got)
			}
		}},
		{desc: "certificate removed", change: func(t *testing.T, _ *state.Dir, root string) {
			if err := os.Remove(storeFile(root, certName("ss"))); err != nil {
				t.Fatal(err)
			}
		}, reads: reads(certName("ss")), check: func(t *testing.T, infos []Info, _ string) {
			if got := infoOf(t, infos, "ss").Status; got != StatusMissing {
				t.Errorf("status %q, want %q", got, StatusMissing)
			}
		}},
		{desc: "memo damaged", change: func(t *testing.T, _ *state.Dir, root string) {
			damage(t, root, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b })
		}, reads: everyRead},
		{desc: "memo cut short", change: func(t *testing.T, _ *state.Dir, root string) {
			damage(t, root, func(b []byte) []byte { return b[:len(b)/2] })
		}, reads: everyRead},
		{desc: "memo of another format", change: func(t *testing.T, _ *state.Dir, root string) {
			damage(t, root, func([]byte) []byte { return []byte("p2ptls-memo\x00 from an older p2ptls") })
		}, reads: everyRead},
		{desc: "a damaged value", change: func(t *testing.T, _ *state.Dir, root string) {
			m := state.OpenMemo(state.OpenDir(root, time.Second), certsMemo)
			id, ok := m.Stat(certName("ss"))
			if !ok {
				t.Fatal("no identity for cert.pem")
			}
			m.Put(certName("ss"), id, []byte{tagCertSummary, 0xff}, true)
			m.Save()
		}, reads: reads(certName("ss"))},
		{desc: "mapping removed", change: func(t *testing.T, s *state.Dir, _ string) {
			if _, err := Remove(ctx, s, "ss"); err != nil {
				t.Fatal(err)
			}
		}, reads: reads(), check: func(t *testing.T, _ []Info, root string) {
			m := state.OpenMemo(state.OpenDir(root, time.Second), certsMemo)
			if _, ok := m.Trusted(certName("ss")); ok {
				t.Error("the memo still holds the removed mapping's certificate")
			}
			if _, ok := m.Trusted(certName("ac")); !ok {
				t.Error("the memo lost a listed mapping's certificate")
			}
		}},
	}
	// Every state is made, then aged once past the racy window.
	states := make([]string, len(tests))
	dirs := make([]*state.Dir, len(tests))
	for i := range tests {
		dirs[i], states[i] = summaryState(t)
	}
	time.Sleep(memoAge)
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if _, got := listReads(t, states[i]); !slices.Equal(got, everyRead) {
				t.Fatalf("first list read %q, want %q", got, everyRead)
			}
			tc.change(t, dirs[i], states[i])
			infos, got := listReads(t, states[i])
			if !slices.Equal(got, tc.reads) {
				t.Errorf("list after the change read %q, want %q", got, tc.reads)
			}
			if tc.check != nil {
				tc.check(t, infos, states[i])
			}
		})
	}
}

func wantNotAfter(id string, at time.Time) func(t *testing.T, infos []Info, _ string) {
	return func(t *testing.T, infos []Info, _ string) {
		if got := infoOf(t, infos, id).NotAfter; got == nil || !got.Equal(at) {
			t.Errorf("%s: not_after %v, want %v", id, got, at)
		}
	}
}

func infoOf(t *testing.T, infos []Info, id string) Info {
	t.Helper()
	for _, info := range infos {
		if info.ID == id {
			return info
		}
	}
	t.Fatalf("no mapping %s listed", id)
	return Info{}
}

// damage rewrites the certs memo file.
func damage(t *testing.T, root string, f func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(state.MemoDir), certsMemo)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, f(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSummaryMemoRacy: a summary memoized within the racy window of its
// file's last change is not trusted by identity (the file may change again
// without its identity changing): lists read the file until one memoizes
// it when it is old enough.
func TestSummaryMemoRacy(t *testing.T) {
	_, root := summaryState(t)
	for i, want := range [][]string{everyRead, everyRead} {
		if _, got := listReads(t, root); !slices.Equal(got, want) {
			t.Fatalf("list %d (files fresh) read %q, want %q", i+1, got, want)
		}
	}
	time.Sleep(memoAge)
	for i, want := range [][]string{everyRead, reads()} {
		if _, got := listReads(t, root); !slices.Equal(got, want) {
			t.Fatalf("list %d (files old) read %q, want %q", i+3, got, want)
		}
	}
}

// TestSummaryUsable: the renewal decision's pair check is memoized by the
// key's identity and the certificate's it was checked with: a key or a
// certificate replaced is checked again, and a pair that no longer
// matches is an error, as Load's.
func TestSummaryUsable(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		desc   string
		change func(t *testing.T, root string)
		reads  []string
		err    string
	}{
		{"unchanged", func(*testing.T, string) {}, nil, ""},
		{"key replaced", func(t *testing.T, root string) {
			p := storeFile(root, keyName("ss"))
			if err := os.WriteFile(p, otherKeyPEM(t), 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{keyName("ss")}, "does not match"},
		{"certificate replaced (same key: regenerated keeps none)", func(t *testing.T, root string) {
			p := storeFile(root, certName("ss"))
			if err := os.WriteFile(p, issue(t, now0, 30*day, "ss.example.com").CertPEM, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{certName("ss"), keyName("ss")}, "does not match"},
		{"key removed", func(t *testing.T, root string) {
			if err := os.Remove(storeFile(root, keyName("ss"))); err != nil {
				t.Fatal(err)
			}
		}, []string{keyName("ss")}, "no such file"},
	}
	roots := make([]string, len(tests))
	for i := range tests {
		_, roots[i] = summaryState(t)
	}
	time.Sleep(memoAge)
	m := state.Mapping{ID: "ss", Source: state.SourceSelfSigned}
	for i, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			usable := func() ([]string, CertSummary, error) {
				var got []string
				var mu sync.Mutex
				readHook = func(name string) { mu.Lock(); got = append(got, name); mu.Unlock() }
				defer func() { readHook = nil }()
				c := NewSummaries(state.OpenDir(roots[i], time.Second))
				defer c.Save()
				sum, err := c.Usable(ctx, m)
				return got, sum, err
			}
			if got, _, err := usable(); err != nil || !slices.Equal(got, []string{certName("ss"), keyName("ss")}) {
				t.Fatalf("first Usable read %q, %v", got, err)
			}
			tc.change(t, roots[i])
			got, sum, err := usable()
			if !slices.Equal(got, tc.reads) {
				t.Errorf("Usable after the change read %q, want %q", got, tc.reads)
			}
			_, lerr := Load(ctx, state.OpenDir(roots[i], time.Second), m)
			switch {
			case tc.err == "" && (err != nil || lerr != nil):
				t.Fatalf("Usable: %v; Load: %v", err, lerr)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || lerr == nil):
				t.Fatalf("Usable: %v, want %q (Load: %v)", err, tc.err, lerr)
			case tc.err == "" && sum.DNSNames[0] != "ss.example.com":
				t.Errorf("summary %+v", sum)
			}
		})
	}
}

// TestSummaryCodec: every value round-trips, every field of what is
// memoized is encoded (a field added to CertSummary or Meta and not to its
// encoding fails here), and a damaged value is an error, never a wrong
// value.
func TestSummaryCodec(t *testing.T) {
	at := time.Date(2026, 6, 1, 12, 30, 0, 123, time.UTC)
	far := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	sum := CertSummary{NotBefore: at, NotAfter: far, Fingerprint: sha256.Sum256([]byte("x")),
		DNSNames: []string{"a.example.com", "*.b.example"}, IPAddresses: []net.IP{net.ParseIP("192.0.2.1").To4(), net.ParseIP("2001:db8::1")}}
	meta := Meta{Source: "acme", IssuedAt: at, NotAfter: far, FingerprintSHA256: "AB:CD", LastAttemptAt: at.In(time.FixedZone("", 5400)),
		LastError: "no\x00thing", LastErrorDetail: "full\ntext", BackoffReason: BackoffRateLimited, Reissue: "changed --challenge at now", NextRenewalAt: at.In(time.Local), Attempts: -2, RetryAt: at.In(time.FixedZone("CEST", 7200)),
		ARI: ARI{WindowStart: at.Add(time.Hour), WindowEnd: far, CheckAt: at.Add(-time.Second).In(time.FixedZone("", -3600))}}
	for _, v := range []any{sum, meta} {
		rv := reflect.ValueOf(v)
		for i := range rv.NumField() {
			if rv.Field(i).IsZero() {
				t.Fatalf("%T: set field %s here, and encode it", v, rv.Type().Field(i).Name)
			}
		}
	}
	gotSum, err := decodeCertSummary(encodeCertSummary(sum))
	if err != nil || !reflect.DeepEqual(gotSum, sum) {
		t.Errorf("CertSummary round trip: %+v, %v; want %+v", gotSum, err, sum)
	}
	gotMeta, err := decodeMeta(encodeMeta(meta))
	if err != nil || !reflect.DeepEqual(gotMeta, meta) {
		t.Errorf("Meta round trip: %+v, %v; want %+v", gotMeta, err, meta)
	}
	id := state.FileID{Dev: 1, Ino: 2, Size: 3, Mtime: -4, Ctime: 5}
	if got, err := decodeKeyPair(encodeKeyPair(id)); err != nil || got != id {
		t.Errorf("key pair round trip: %+v, %v", got, err)
	}
	var zero Meta
	if got, err := decodeMeta(encodeMeta(zero)); err != nil || !reflect.DeepEqual(got, zero) {
		t.Errorf("zero Meta round trip: %+v, %v", got, err)
	}
	// Every cut and every other tag is refused.
	for _, v := range [][]byte{encodeCertSummary(sum), encodeMeta(meta), encodeKeyPair(id)} {
		for n := range len(v) {
			if err := decodeAny(v[:n]); err == nil {
				t.Errorf("value %x cut to %d bytes decoded", v, n)
			}
		}
		if err := decodeAny(append(slices.Clone(v), 0)); err == nil {
			t.Errorf("value %x with a byte more decoded", v)
		}
		w := slices.Clone(v)
		w[0] = 0x7f
		if err := decodeAny(w); err == nil {
			t.Errorf("value with tag %x decoded", w[0])
		}
	}
}

// decodeAny decodes v as whatever its tag says.
func decodeAny(v []byte) error {
	if len(v) == 0 {
		_, err := decodeCertSummary(v)
		return err
	}
	var err error
	switch v[0] {
	case tagCertSummary:
		_, err = decodeCertSummary(v)
	case tagMeta:
		_, err = decodeMeta(v)
	case tagKeyPair:
		_, err = decodeKeyPair(v)
	default:
		_, err = decodeCertSummary(v)
	}
	return err
}

// TestMetaMemoIsLoadMeta: meta.toml as the memo gives it back is what
// LoadMeta decodes, for times written in UTC, with an offset and without.
func TestMetaMemoIsLoadMeta(t *testing.T) {
	tests := []string{
		"source = 'acme'\nissued_at = 2026-03-01T12:00:00Z\nattempts = 2\nretry_at = 2026-03-01T13:00:00.5Z\nlast_error = 'x'\n",
		"issued_at = 2026-03-01T12:00:00+02:00\nnext_renewal_at = 2026-03-01T12:00:00-07:30\n",
		"issued_at = 2026-03-01T12:00:00\n",
		"",
	}
	for _, text := range tests {
		want, err := parseMeta("meta.toml", []byte(text), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeMeta(encodeMeta(want))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: memo gives %+v, %v; LoadMeta %+v", text, got, err, want)
		}
	}
}

// TestFingerprintIsPKIs: the summary's fingerprint is written as
// pki.Fingerprint writes it.
func TestFingerprintIsPKIs(t *testing.T) {
	kp := issue(t, now0, 30*day, "fp.example.com")
	if got, want := summarize(kp.Cert).FingerprintSHA256(), pki.Fingerprint(kp.Cert); got != want {
		t.Errorf("fingerprint %s, want %s", got, want)
	}
}

// TestSummaryPathIsCertPath: the paths a list shows are certPath's and
// keyPath's, for a directory named uncleanly, a change of it, a store
// that is no directory, and source file.
func TestSummaryPathIsCertPath(t *testing.T) {
	base := t.TempDir()
	unclean := filepath.Join(base, "x", "..", "state") + "/"
	d := state.OpenDir(unclean, time.Second)
	mappings := []state.Mapping{
		{ID: "a.example.com", Source: state.SourceSelfSigned},
		{ID: "f", Source: state.SourceFile, CertFile: "../c.pem", KeyFile: "/k.pem"},
	}
	check := func(what string, s state.Store) {
		c := NewSummaries(s)
		for _, m := range mappings {
			if got, want := c.path(m, CertFileName), certPath(s, m); got != want {
				t.Errorf("%s: cert path %q, want %q", what, got, want)
			}
			if got, want := c.path(m, KeyFileName), keyPath(s, m); got != want {
				t.Errorf("%s: key path %q, want %q", what, got, want)
			}
		}
	}
	check("directory", d)
	check("no directory", &statetest.Recorder{Dir: d})
	if _, err := state.AddListener(context.Background(), d, state.Listener{Name: "web", Addr: ":8443"}); err != nil {
		t.Fatal(err)
	}
	err := state.Update(context.Background(), d, "test", func(tx *state.Tx) error {
		check("change", tx)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSummaryMemoRelativeRoot: a state directory named by a relative path
// (CONFIG_DIR=./state) memoizes and sees a change as an absolute one does.
func TestSummaryMemoRelativeRoot(t *testing.T) {
	_, root := summaryState(t)
	t.Chdir(filepath.Dir(root))
	rel := filepath.Base(root)
	time.Sleep(memoAge)
	for i, want := range [][]string{everyRead, reads()} {
		if _, got := listReads(t, rel); !slices.Equal(got, want) {
			t.Fatalf("list %d read %q, want %q", i+1, got, want)
		}
	}
	if err := Regenerate(context.Background(), state.OpenDir(rel, time.Second), "ss", now0); err != nil {
		t.Fatal(err)
	}
	if _, got := listReads(t, rel); !slices.Equal(got, reads(certName("ss"))) {
		t.Fatalf("list after cert issue read %q, want %q", got, reads(certName("ss")))
	}
}

// TestSummaryPairVerdictNeedsATrustedCertificate: a memoized pair verdict
// is taken only with a certificate summary the memo trusts. Here the
// verdict claims a key that does not match (as one put while the
// certificate was racy, then rewritten within the timestamp granularity,
// would) and the certificate's summary is gone: the pair is checked again,
// found broken, and the verdict dropped.
func TestSummaryPairVerdictNeedsATrustedCertificate(t *testing.T) {
	ctx := context.Background()
	_, root := summaryState(t)
	if err := os.WriteFile(storeFile(root, keyName("ss")), otherKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(memoAge)
	m := state.Mapping{ID: "ss", Source: state.SourceSelfSigned}
	memo := state.OpenMemo(state.OpenDir(root, time.Second), certsMemo)
	certID, ok1 := memo.Stat(certName("ss"))
	keyID, ok2 := memo.Stat(keyName("ss"))
	if !ok1 || !ok2 {
		t.Fatal("no identities")
	}
	memo.Put(keyName("ss"), keyID, encodeKeyPair(certID), true)
	memo.Save()
	c := NewSummaries(state.OpenDir(root, time.Second))
	if _, err := c.Usable(ctx, m); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("Usable: %v, want the key that does not match", err)
	}
	c.Save()
	if _, ok := state.OpenMemo(state.OpenDir(root, time.Second), certsMemo).Trusted(keyName("ss")); ok {
		t.Error("the refuted pair verdict is still memoized")
	}
}
