package mappings

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

func TestListStatus(t *testing.T) {
	lifetime := 90 * day
	tests := []struct {
		name      string
		setup     func(t *testing.T, s *state.Dir) string // returns the mapping id
		now       time.Time
		status    string
		lastError string // substring; "" means empty
	}{
		{"valid", addSelfSigned, now0, StatusValid, ""},
		{"expiring", addSelfSigned, now0.Add(lifetime - lifetime/3 + time.Minute), StatusExpiring, ""},
		{"expired", addSelfSigned, now0.Add(lifetime + time.Second), StatusExpired, ""},
		{"pending", addACME, now0, StatusPending, ""},
		{"failed", func(t *testing.T, s *state.Dir) string {
			id := addACME(t, s)
			if err := SaveMeta(context.Background(), s, id, Meta{Source: state.SourceACME, LastAttemptAt: now0, LastError: "urn:ietf:params:acme:error:dns: NXDOMAIN"}); err != nil {
				t.Fatal(err)
			}
			return id
		}, now0, StatusFailed, "NXDOMAIN"},
		{"acme with a damaged meta.toml", func(t *testing.T, s *state.Dir) string {
			id := addACME(t, s)
			if err := s.Write(context.Background(), metaName(id), []byte("= nonsense"), state.SecretMode); err != nil {
				t.Fatal(err)
			}
			return id
		}, now0, StatusFailed, "meta.toml"},
		{"self-signed without files", func(t *testing.T, s *state.Dir) string {
			id := addSelfSigned(t, s)
			if err := s.Delete(context.Background(), MappingDir(id)); err != nil {
				t.Fatal(err)
			}
			return id
		}, now0, StatusMissing, "there is no certificate at"},
		{"garbage certificate", func(t *testing.T, s *state.Dir) string {
			id := addSelfSigned(t, s)
			if err := s.Write(context.Background(), certName(id), fixture(t, "garbage-cert.pem"), state.PublicMode); err != nil {
				t.Fatal(err)
			}
			return id
		}, now0, StatusMissing, "malformed certificate"},
		{"file deleted from disk", func(t *testing.T, s *state.Dir) string {
			leaf := issue(t, now0, lifetime, "disk.example.com")
			dir := t.TempDir()
			m := mustAdd(t, s, Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"disk.example.com"}, Source: state.SourceFile,
				CertFile: writeFile(t, dir, "c.pem", leaf.CertPEM), KeyFile: writeFile(t, dir, "k.pem", leaf.KeyPEM)}})
			if err := os.Remove(m.CertFile); err != nil {
				t.Fatal(err)
			}
			return m.ID
		}, now0, StatusMissing, "c.pem"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newStore(t)
			id := tc.setup(t, s)
			infos, err := List(context.Background(), s, mustConfig(t, s), "", tc.now)
			if err != nil || len(infos) != 1 || infos[0].ID != id {
				t.Fatalf("List = %+v, %v", infos, err)
			}
			info := infos[0]
			if info.Status != tc.status {
				t.Errorf("status = %q, want %q (%+v)", info.Status, tc.status, info)
			}
			if tc.lastError == "" && info.LastError != "" || !strings.Contains(info.LastError, tc.lastError) {
				t.Errorf("last_error = %q, want %q", info.LastError, tc.lastError)
			}
			_, details, err := Show(context.Background(), s, mustConfig(t, s), id, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if hasCert := info.NotAfter != nil; hasCert != (details != nil) {
				t.Errorf("Show details %+v for list entry %+v", details, info)
			}
			if details != nil && details.Status != info.Status {
				t.Errorf("details status %q, list status %q", details.Status, info.Status)
			}
		})
	}
}

func addSelfSigned(t *testing.T, s *state.Dir) string {
	return mustAdd(t, s, selfSignedIn("", "web", 90, "self.example.com")).ID
}

func addACME(t *testing.T, s *state.Dir) string {
	return mustAdd(t, s, acmeIn("", "dns-01", "cf", "*.example.com", "example.com")).ID
}

// next_renewal_at is when pki.NeedsRenewal starts to say yes.
func TestRenewalTimeMatchesNeedsRenewal(t *testing.T) {
	for _, days := range []int{1, 5, 10, 11, 30, 90, MaxDays} {
		kp, err := pki.SelfSigned(pki.ParseNames([]string{"a.example.com"}), now0, time.Duration(days)*day)
		if err != nil {
			t.Fatal(err)
		}
		at := pki.RenewalTime(kp.Cert)
		if pki.NeedsRenewal(kp.Cert, at.Add(-time.Second)) || !pki.NeedsRenewal(kp.Cert, at.Add(time.Second)) {
			t.Errorf("%d days: renewal time %v disagrees with pki.NeedsRenewal", days, at)
		}
	}
}

func TestACMENextRenewalComesFromMeta(t *testing.T) {
	s, _ := newStore(t)
	id := addACME(t, s)
	// Stand-in for an issued certificate: ACME will write these files.
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"*.example.com", "example.com"}), now0, 90*day)
	if err != nil {
		t.Fatal(err)
	}
	ari := now0.Add(40 * day)
	meta := newMeta(state.SourceACME, kp, now0)
	meta.NextRenewalAt = ari
	if err := writeMaterial(context.Background(), s, id, kp, meta); err != nil {
		t.Fatal(err)
	}
	info, _, err := Show(context.Background(), s, mustConfig(t, s), id, now0)
	if err != nil || info.Status != StatusValid || info.NextRenewalAt == nil || !info.NextRenewalAt.Equal(ari) {
		t.Errorf("Show = %+v, %v; want valid, next renewal %v", info, err, ari)
	}
}

func TestListFiltersByListener(t *testing.T) {
	s, _ := newStore(t)
	mustAdd(t, s, selfSignedIn("w1", "web", 0, "a.example.com"))
	mustAdd(t, s, selfSignedIn("a1", "api", 0, "a.example.com"))
	mustAdd(t, s, acmeIn("w2", "http-01", "", "b.example.com"))
	cfg := mustConfig(t, s)
	// In the order of the ids, not of the adds.
	for listener, want := range map[string]string{"": "a1 w1 w2", "web": "w1 w2", "api": "a1"} {
		infos, err := List(context.Background(), s, cfg, listener, now0)
		if err != nil || ids(infos) != want {
			t.Errorf("List(%q) = %q, %v; want %q", listener, ids(infos), err, want)
		}
	}
	_, err := List(context.Background(), s, cfg, "nope", now0)
	wantFault(t, err, fault.NotFound, `listener "nope" does not exist`)
	wantHint(t, err, "p2ptls listener list")

	_, _, err = Show(context.Background(), s, cfg, "nope", now0)
	wantFault(t, err, fault.NotFound, `mapping "nope" does not exist`)
	wantHint(t, err, "p2ptls mapping list")
}

// The JSON of list entries is what scripts read: every field present, no
// certificate means null times, no mapping means [].
func TestInfoJSON(t *testing.T) {
	s, _ := newStore(t)
	infos, err := List(context.Background(), s, mustConfig(t, s), "", now0)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(infos); string(b) != "[]" {
		t.Errorf("empty list is %s, want []", b)
	}
	mustAdd(t, s, acmeIn("", "dns-01", "cf", "*.example.com"))
	mustAdd(t, s, selfSignedIn("", "web", 0, "self.example.com"))
	infos, err = List(context.Background(), s, mustConfig(t, s), "", now0)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	b, _ := json.Marshal(infos)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	keys := []string{"id", "listener", "hosts", "source", "challenge", "dns_credential", "key_type", "upstream", "status", "not_before", "not_after",
		"next_renewal_at", "last_error", "fingerprint_sha256", "cert_file", "key_file"}
	for _, entry := range got {
		for _, k := range keys {
			if _, ok := entry[k]; !ok {
				t.Errorf("entry %v has no %q", entry["id"], k)
			}
		}
	}
	// Mappings are listed in the order of their ids.
	pending, valid := got[1], got[0]
	if pending["not_after"] != nil || pending["status"] != StatusPending || pending["dns_credential"] != "cf" {
		t.Errorf("pending entry: %v", pending)
	}
	if na, _ := valid["not_after"].(string); !strings.HasSuffix(na, "Z") {
		t.Errorf("not_after %v is not RFC 3339 UTC", valid["not_after"])
	}
}

// key_type is the ACME mapping's key type, ec256 for one whose record
// names none (added without, or written by hand), "" for the sources whose
// key p2ptls does not choose.
func TestInfoKeyType(t *testing.T) {
	s, _ := newStore(t)
	rsa := acmeIn("rsa", "http-01", "", "rsa.example.com")
	rsa.Mapping.KeyType = "rsa2048"
	mustAdd(t, s, rsa)
	mustAdd(t, s, acmeIn("plain", "http-01", "", "plain.example.com"))
	mustAdd(t, s, selfSignedIn("self", "web", 0, "self.example.com"))
	cfg := mustConfig(t, s)
	if m, _ := cfg.Mapping("plain"); m.KeyType != "" {
		t.Fatalf("the test wants a record without key_type, Add stored %q", m.KeyType)
	}
	want := map[string]string{"rsa": "rsa2048", "plain": DefaultKeyType, "self": ""}
	infos, err := List(context.Background(), s, cfg, "", now0)
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		if info.KeyType != want[info.ID] {
			t.Errorf("List: %s has key_type %q, want %q", info.ID, info.KeyType, want[info.ID])
		}
		shown, _, err := Show(context.Background(), s, cfg, info.ID, now0)
		if err != nil || shown.KeyType != want[info.ID] {
			t.Errorf("Show(%s): key_type %q, %v, want %q", info.ID, shown.KeyType, err, want[info.ID])
		}
	}
	if len(infos) != len(want) {
		t.Errorf("List: %d mappings, want %d", len(infos), len(want))
	}
}

// ChainPEM is the chain as uploaded (leaf, then its CA), encoded again:
// the same certificates, CERTIFICATE blocks only, even from a file
// mapping whose certificate file starts with its key; nil without a
// certificate, NotFound for no mapping.
func TestChainPEM(t *testing.T) {
	s, _ := newStore(t)
	leaf := issue(t, now0.Add(-day), 90*day, "chain.example.com")
	mustAdd(t, s, manual("chain", chainPEM(leaf), leaf.KeyPEM, "chain.example.com"))
	both := writeFile(t, t.TempDir(), "both.pem", bytes.Join([][]byte{leaf.KeyPEM, chainPEM(leaf)}, nil))
	mustAdd(t, s, Input{Mapping: state.Mapping{ID: "file", Listener: "api", Hosts: []string{"chain.example.com"}, Source: state.SourceFile, CertFile: both, KeyFile: both}})
	mustAdd(t, s, acmeIn("pending", "http-01", "", "pending.example.com"))
	cfg := mustConfig(t, s)
	want := chainPEM(leaf)
	for _, id := range []string{"chain", "file"} {
		info, got, err := ChainPEM(context.Background(), s, cfg, id, now0)
		if err != nil || info.ID != id || !bytes.Equal(got, want) {
			t.Errorf("ChainPEM(%s) = %q, %v; want the chain %q", id, got, err, want)
		}
	}
	if info, got, err := ChainPEM(context.Background(), s, cfg, "pending", now0); err != nil || got != nil || info.Status != StatusPending {
		t.Errorf("ChainPEM(pending) = %s, %q, %v; want no chain", info.Status, got, err)
	}
	_, _, err := ChainPEM(context.Background(), s, cfg, "nope", now0)
	wantFault(t, err, fault.NotFound, `mapping "nope" does not exist`)
}

func TestInspect(t *testing.T) {
	leaf := issue(t, now0, 90*day, "shop.example.com", "10.0.0.1")
	// A combined file: chain and key together.
	d, err := Inspect(bytes.Join([][]byte{leaf.CertPEM, leaf.KeyPEM, testCA.CertPEM}, nil), now0)
	if err != nil {
		t.Fatal(err)
	}
	if d.Subject != "CN=shop.example.com" || d.Issuer != "CN=Test CA" || strings.Join(d.DNSNames, ",") != "shop.example.com" ||
		strings.Join(d.IPAddresses, ",") != "10.0.0.1" || d.KeyType != "ECDSA P-256" || d.Status != StatusValid ||
		d.Serial != strings.ToUpper(leaf.Cert.SerialNumber.Text(16)) || d.FingerprintSHA256 != pki.Fingerprint(leaf.Cert) ||
		!d.NotAfter.Equal(leaf.Cert.NotAfter) || !d.NotBefore.Equal(leaf.Cert.NotBefore) {
		t.Errorf("Inspect = %+v", d)
	}
	if len(d.Chain) != 2 || d.Chain[0].FingerprintSHA256 != d.FingerprintSHA256 ||
		d.Chain[1].Subject != "CN=Test CA" || d.Chain[1].Issuer != "CN=Test CA" || !d.Chain[1].NotAfter.Equal(testCA.Cert.NotAfter) {
		t.Errorf("chain = %+v", d.Chain)
	}
	if d, err := Inspect(leaf.CertPEM, leaf.Cert.NotAfter.Add(time.Second)); err != nil || d.Status != StatusExpired {
		t.Errorf("Inspect after expiry = %+v, %v", d, err)
	}
	for _, name := range []string{"garbage-cert.pem", "not-pem.txt"} {
		_, err := Inspect(fixture(t, name), now0)
		wantFault(t, err, fault.Invalid, "cannot read a certificate")
		wantHint(t, err, "CERTIFICATE block")
	}
}

func TestMetaFile(t *testing.T) {
	s, root := newStore(t)
	if m, err := LoadMeta(context.Background(), s, "none"); err != nil || m != (Meta{}) {
		t.Errorf("LoadMeta of nothing = %+v, %v", m, err)
	}
	want := Meta{Source: state.SourceACME, LastAttemptAt: now0, LastError: "rate limited"}
	if err := SaveMeta(context.Background(), s, "x", want); err != nil {
		t.Fatal(err)
	}
	wantMode(t, storeFile(root, metaName("x")), state.SecretMode)
	b, err := s.Read(context.Background(), metaName("x"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "issued_at") || strings.Contains(string(b), "not_after") {
		t.Errorf("zero fields written:\n%s", b)
	}
	got, err := LoadMeta(context.Background(), s, "x")
	if err != nil || !got.LastAttemptAt.Equal(now0) || got.LastError != want.LastError || got.Source != want.Source {
		t.Errorf("LoadMeta = %+v, %v", got, err)
	}
}

func TestLoad(t *testing.T) {
	leaf := issue(t, now0, 90*day, "shop.example.com")
	dir := t.TempDir()
	s, _ := newStore(t)
	m := mustAdd(t, s, Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"shop.example.com"}, Source: state.SourceFile,
		CertFile: writeFile(t, dir, "c.pem", chainPEM(leaf)), KeyFile: writeFile(t, dir, "k.pem", leaf.KeyPEM)}})
	c, err := Load(context.Background(), s, m)
	if err != nil || len(c.Chain) != 2 || !bytes.Equal(c.KeyPEM, leaf.KeyPEM) {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	// The operator replaces the key with one that does not match.
	writeFile(t, dir, "k.pem", otherKeyPEM(t))
	if _, err := Load(context.Background(), s, m); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("Load of a mismatched pair: %v", err)
	}
	self := mustAdd(t, s, selfSignedIn("", "api", 0, "shop.example.com"))
	if err := s.Delete(context.Background(), keyName(self.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), s, self); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load without key: %v", err)
	}
}

// BenchmarkList lists 10k mappings, each with its certificate file.
func BenchmarkList(b *testing.B) {
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = "m" + strconv.Itoa(i)
	}
	s, cfg := benchState(b, ids)
	for _, bc := range []struct {
		name string
		sums func() *Summaries
	}{
		{"memo", func() *Summaries { return NewSummaries(s) }},
		{"no memo", func() *Summaries { return direct(s) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				n := 0
				err := each(context.Background(), bc.sums(), cfg, "web", now0, func(info Info) error {
					if info.Status != StatusValid {
						return errors.New(info.Status + ": " + info.LastError)
					}
					n++
					return nil
				})
				if err != nil || n != 10000 {
					b.Fatalf("List: %d, %v", n, err)
				}
			}
		})
	}
}
