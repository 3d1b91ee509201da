package mappings

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

func TestAddRefuses(t *testing.T) {
	good := issue(t, now0, 90*day, "shop.example.com", "*.shop.example.com")
	expired := issue(t, now0.Add(-60*day), 30*day, "shop.example.com")
	future := issue(t, now0.Add(48*time.Hour), 30*day, "shop.example.com")
	narrow := issue(t, now0, 90*day, "a.shop.example.com")
	files := t.TempDir()
	goodCert := writeFile(t, files, "good.crt", chainPEM(good))
	goodKey := writeFile(t, files, "good.key", good.KeyPEM)
	garbageCert := writeFile(t, files, "garbage.crt", fixture(t, "garbage-cert.pem"))
	fileIn := func(cert, key string, hosts ...string) Input {
		return Input{Mapping: state.Mapping{Listener: "web", Hosts: hosts, Source: state.SourceFile, CertFile: cert, KeyFile: key}}
	}
	withUpstream := selfSignedIn("", "web", 0, "up.example.com")
	withUpstream.Mapping.Upstream = "127.0.0.1:8080"
	withKeyType := acmeIn("", "http-01", "", "kt.example.com")
	withKeyType.Mapping.KeyType = "dsa1024"
	manualDays := manual("", good.CertPEM, good.KeyPEM, "shop.example.com")
	manualDays.Mapping.Days = 30

	tests := []struct {
		name string
		in   Input
		kind fault.Kind
		msg  []string
		hint string
	}{
		{"no host", selfSignedIn("x", "web", 0), fault.Invalid, []string{"at least one host"}, "--host"},
		{"host with scheme", selfSignedIn("", "web", 0, "https://a.example.com/"), fault.Invalid, []string{"scheme, port or path"}, "DNS name"},
		{"IP host with a zone", selfSignedIn("", "web", 0, "fe80::1%eth0"), fault.Invalid, []string{"has the zone"}, ""},
		{"single-label host", selfSignedIn("", "web", 0, "intranet"), fault.Invalid, []string{"single label"}, ""},
		{"host twice in the mapping", selfSignedIn("", "web", 0, "a.example.com", "A.example.com."), fault.Invalid, []string{`lists host "a.example.com" twice`}, "list each host once"},
		{"bad id", selfSignedIn("Bad/ID", "web", 0, "a.example.com"), fault.Invalid, []string{`mapping id "Bad/ID" is invalid`}, "--id"},
		{"unknown source", Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"a.example.com"}, Source: "letsencrypt"}}, fault.Invalid, []string{`unknown source "letsencrypt"`}, `"acme"`},
		{"bad listener name", selfSignedIn("", "Web!", 0, "a.example.com"), fault.Invalid, []string{"listener name"}, "listener list"},
		{"unknown listener", selfSignedIn("", "nope", 0, "a.example.com"), fault.Invalid, []string{`listener "nope" does not exist`}, "p2ptls listener list"},
		{"id in use", selfSignedIn("taken", "api", 0, "other.example.com"), fault.Failure, []string{`mapping "taken" already exists`}, "mapping remove taken"},
		{"host mapped on the listener", selfSignedIn("", "web", 0, "new.example.com", "Taken.Example.com"), fault.Invalid, []string{`host "taken.example.com" is already mapped on listener "web" by mapping "taken"`}, `remove it from mapping "taken"`},
		{"bad upstream", withUpstream, fault.Invalid, []string{"upstream"}, "http://"},
		{"days 398", selfSignedIn("", "web", 398, "a.example.com"), fault.Invalid, []string{"398 days"}, "--days between 1 and 397"},
		{"days negative", selfSignedIn("", "web", -1, "a.example.com"), fault.Invalid, []string{"-1 days"}, "--days"},
		{"days with manual", manualDays, fault.Invalid, []string{"source manual does not take a validity in days"}, "self-signed"},
		{"certificate with self-signed", Input{Mapping: selfSignedIn("", "web", 0, "a.example.com").Mapping, CertPEM: good.CertPEM}, fault.Invalid, []string{"does not take an uploaded certificate"}, ""},
		{"wildcard with http-01", acmeIn("", "http-01", "", "*.example.com"), fault.Invalid, []string{"wildcard", "DNS-01"}, "--challenge dns-01"},
		{"wildcard with tls-alpn-01", acmeIn("", "tls-alpn-01", "", "example.com", "*.example.com"), fault.Invalid, []string{"wildcard", "DNS-01"}, "--challenge dns-01"},
		{"unknown challenge", acmeIn("", "dns-02", "", "a.example.com"), fault.Invalid, []string{`unknown challenge "dns-02"`}, "dns-01"},
		{"dns-01 without credential", acmeIn("", "dns-01", "", "a.example.com"), fault.Invalid, []string{"needs a DNS credential"}, "--dns-credential"},
		{"dns-01 with unknown credential", acmeIn("", "dns-01", "nope", "a.example.com"), fault.Invalid, []string{`DNS credential "nope" does not exist`}, "dns-credential add"},
		{"unknown key type", withKeyType, fault.Invalid, []string{`unknown key_type "dsa1024"`}, "ec256"},
		{"manual without key", manual("", good.CertPEM, nil, "shop.example.com"), fault.Invalid, []string{"needs a certificate and its private key"}, "--key-file"},
		{"manual not PEM", manual("", fixture(t, "not-pem.txt"), good.KeyPEM, "shop.example.com"), fault.Invalid, []string{"the uploaded certificate cannot be used", "no PEM CERTIFICATE block"}, "leaf first"},
		{"manual garbage certificate", manual("", fixture(t, "garbage-cert.pem"), good.KeyPEM, "shop.example.com"), fault.Invalid, []string{"the uploaded certificate cannot be used", "certificate 1"}, ""},
		{"manual key is a certificate", manual("", good.CertPEM, good.CertPEM, "shop.example.com"), fault.Invalid, []string{"the uploaded private key cannot be used", "no PEM private key block"}, ""},
		{"manual mismatched key", manual("", good.CertPEM, otherKeyPEM(t), "shop.example.com"), fault.Invalid, []string{"the private key does not match the certificate"}, "belongs to it"},
		{"manual expired", manual("", expired.CertPEM, expired.KeyPEM, "shop.example.com"), fault.Invalid, []string{"the uploaded certificate expired on"}, "--allow-expired"},
		{"manual not yet valid", manual("", future.CertPEM, future.KeyPEM, "shop.example.com"), fault.Invalid, []string{"is not valid before"}, "--allow-expired"},
		{"manual does not cover a host", manual("", good.CertPEM, good.KeyPEM, "shop.example.com", "other.example.com", "a.b.shop.example.com"), fault.Invalid, []string{"does not cover other.example.com, a.b.shop.example.com", "shop.example.com, *.shop.example.com"}, "map only the hosts it covers"},
		{"wildcard host needs a wildcard name", manual("", narrow.CertPEM, narrow.KeyPEM, "*.shop.example.com"), fault.Invalid, []string{"does not cover *.shop.example.com"}, ""},
		{"manual expired and not covering: coverage first", Input{Mapping: manual("", expired.CertPEM, expired.KeyPEM, "x.example.com").Mapping, CertPEM: expired.CertPEM, KeyPEM: expired.KeyPEM, AllowExpired: true}, fault.Invalid, []string{"does not cover x.example.com"}, ""},
		{"file without key path", fileIn(goodCert, "", "shop.example.com"), fault.Invalid, []string{"source file needs a certificate file and a key file"}, "--key-file"},
		{"file missing", fileIn(filepath.Join(files, "nope.crt"), goodKey, "shop.example.com"), fault.Invalid, []string{"cannot read " + filepath.Join(files, "nope.crt"), "no such file"}, "check the path"},
		{"file garbage", fileIn(garbageCert, goodKey, "shop.example.com"), fault.Invalid, []string{"the certificate in " + garbageCert + " cannot be used"}, ""},
		{"file key does not match", fileIn(goodCert, writeFile(t, files, "other.key", otherKeyPEM(t)), "shop.example.com"), fault.Invalid, []string{"the private key in " + filepath.Join(files, "other.key"), "does not match"}, ""},
		{"file expired", fileIn(writeFile(t, files, "old.crt", expired.CertPEM), writeFile(t, files, "old.key", expired.KeyPEM), "shop.example.com"), fault.Invalid, []string{"expired on"}, "--allow-expired"},
		{"file with days", Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"shop.example.com"}, Source: state.SourceFile, CertFile: goodCert, KeyFile: goodKey, Days: 3}}, fault.Invalid, []string{"source file does not take a validity in days"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newStore(t)
			mustAdd(t, s, selfSignedIn("taken", "web", 0, "taken.example.com"))
			before := snapshot(t, root)
			_, _, err := Add(context.Background(), s, tc.in, now0)
			wantFault(t, err, tc.kind, tc.msg...)
			t.Logf("%v (hint: %s)", err, fault.HintOf(err))
			if tc.hint != "" {
				wantHint(t, err, tc.hint)
			}
			if strings.Contains(err.Error(), "mappings[") {
				t.Errorf("error %q names a config index the user never saw", err)
			}
			assertUnchanged(t, before, root)
		})
	}
}

// Bad input is refused before the lock: a held lock does not delay it.
func TestAddBadInputDoesNotWaitForTheLock(t *testing.T) {
	s, root := newStore(t)
	unlock, err := s.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	before := snapshot(t, root)
	start := time.Now()
	_, _, err = Add(context.Background(), s, acmeIn("", "http-01", "", "*.example.com"), now0)
	wantFault(t, err, fault.Invalid, "DNS-01")
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing bad input took %v: it waited for the lock", d)
	}
	_, _, err = Add(context.Background(), s, selfSignedIn("", "web", 0, "ok.example.com"), now0)
	wantFault(t, err, fault.Locked, "locked by")
	assertUnchanged(t, before, root)
}

func TestAddSources(t *testing.T) {
	leaf := issue(t, now0, 90*day, "shop.example.com", "*.shop.example.com")
	files := t.TempDir()
	certFile := writeFile(t, files, "shop.crt", chainPEM(leaf))
	keyFile := writeFile(t, files, "shop.key", leaf.KeyPEM)
	rel, err := filepath.Rel(mustGetwd(t), certFile)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		in       Input
		want     state.Mapping // the saved mapping
		files    bool          // certificate files in the state
		status   string
		certFile string // Info.CertFile; "" means the state's
	}{
		{"manual with a chain, exact and wildcard SANs", manual("", chainPEM(leaf), leaf.KeyPEM, "Shop.Example.com.", "a.shop.example.com", "*.shop.example.com"),
			state.Mapping{ID: "shop-example-com", Listener: "web", Hosts: []string{"shop.example.com", "a.shop.example.com", "*.shop.example.com"}, Source: state.SourceManual},
			true, StatusValid, ""},
		{"file, relative path made absolute", Input{Mapping: state.Mapping{ID: "files", Listener: "web", Hosts: []string{"shop.example.com"}, Source: state.SourceFile, CertFile: rel, KeyFile: keyFile, Upstream: "http://127.0.0.1:8080"}},
			state.Mapping{ID: "files", Listener: "web", Hosts: []string{"shop.example.com"}, Source: state.SourceFile, CertFile: certFile, KeyFile: keyFile, Upstream: "http://127.0.0.1:8080"},
			false, StatusValid, certFile},
		{"self-signed, default days", selfSignedIn("", "web", 0, "*.dev.example.com", "dev.example.com"),
			state.Mapping{ID: "wildcard-dev-example-com", Listener: "web", Hosts: []string{"*.dev.example.com", "dev.example.com"}, Source: state.SourceSelfSigned, Days: DefaultDays},
			true, StatusValid, ""},
		{"self-signed, 397 days", selfSignedIn("long", "api", MaxDays, "long.example.com"),
			state.Mapping{ID: "long", Listener: "api", Hosts: []string{"long.example.com"}, Source: state.SourceSelfSigned, Days: MaxDays},
			true, StatusValid, ""},
		{"acme http-01", acmeIn("", "http-01", "", "www.example.com"),
			state.Mapping{ID: "www-example-com", Listener: "web", Hosts: []string{"www.example.com"}, Source: state.SourceACME, Challenge: "http-01"},
			false, StatusPending, ""},
		{"acme dns-01, wildcard and apex", acmeIn("", "dns-01", "cf", "*.example.com", "example.com"),
			state.Mapping{ID: "wildcard-example-com", Listener: "web", Hosts: []string{"*.example.com", "example.com"}, Source: state.SourceACME, Challenge: "dns-01", DNSCredential: "cf"},
			false, StatusPending, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newStore(t)
			m, warnings, err := Add(context.Background(), s, tc.in, now0)
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) > 0 {
				t.Errorf("warnings %q", warnings)
			}
			if !equalMapping(m, tc.want) {
				t.Errorf("Add returned\n %+v, want\n %+v", m, tc.want)
			}
			cfg := mustConfig(t, s)
			if len(cfg.Mappings) != 1 || !equalMapping(cfg.Mappings[0], tc.want) {
				t.Fatalf("saved mappings %+v, want [%+v]", cfg.Mappings, tc.want)
			}
			dir := storeFile(root, MappingDir(m.ID))
			if _, err := os.Stat(dir); tc.files != (err == nil) {
				t.Fatalf("mapping directory exists: %v, want %v", err == nil, tc.files)
			}
			if tc.files {
				wantMode(t, storeFile(root, "certs"), state.DirMode)
				wantMode(t, storeFile(root, PublicDir), state.DirMode)
				wantMode(t, dir, state.DirMode)
				wantMode(t, filepath.Join(dir, CertFileName), state.PublicMode)
				wantMode(t, filepath.Join(dir, KeyFileName), state.SecretMode)
				wantMode(t, filepath.Join(dir, MetaFileName), state.SecretMode)
				meta, err := LoadMeta(context.Background(), s, m.ID)
				if err != nil {
					t.Fatal(err)
				}
				if meta.Source != m.Source || !meta.IssuedAt.Equal(now0) || meta.FingerprintSHA256 == "" || meta.NotAfter.IsZero() || meta.NextRenewalAt.IsZero() {
					t.Errorf("meta.toml = %+v", meta)
				}
			}

			// list -> show -> load -> remove
			infos, err := List(context.Background(), s, cfg, "", now0)
			if err != nil || len(infos) != 1 {
				t.Fatalf("List = %+v, %v", infos, err)
			}
			info := infos[0]
			if info.ID != m.ID || info.Status != tc.status || info.Source != m.Source || !slices.Equal(info.Hosts, m.Hosts) ||
				info.Challenge != m.Challenge || info.DNSCredential != m.DNSCredential || info.Upstream != m.Upstream || info.LastError != "" {
				t.Errorf("List: %+v", info)
			}
			wantCertFile := tc.certFile
			if wantCertFile == "" {
				wantCertFile = filepath.Join(dir, CertFileName)
			}
			if info.CertFile != wantCertFile {
				t.Errorf("cert_file = %q, want %q", info.CertFile, wantCertFile)
			}
			shown, details, err := Show(context.Background(), s, cfg, m.ID, now0)
			if err != nil {
				t.Fatal(err)
			}
			if shown.ID != info.ID || shown.Status != info.Status {
				t.Errorf("Show = %+v, List said %+v", shown, info)
			}
			cert, loadErr := Load(context.Background(), s, m)
			if tc.status == StatusPending {
				if details != nil || info.NotAfter != nil || info.NextRenewalAt != nil || info.FingerprintSHA256 != "" {
					t.Errorf("pending mapping has certificate data: %+v %+v", info, details)
				}
				if !errors.Is(loadErr, os.ErrNotExist) {
					t.Errorf("Load of a pending mapping: %v, want fs.ErrNotExist", loadErr)
				}
			} else {
				if loadErr != nil {
					t.Fatalf("Load: %v", loadErr)
				}
				if details == nil || details.FingerprintSHA256 != info.FingerprintSHA256 || details.FingerprintSHA256 == "" ||
					!slices.Equal(details.DNSNames, cert.Chain[0].DNSNames) || details.KeyType != "ECDSA P-256" || details.Status != StatusValid {
					t.Errorf("Show details %+v for %+v", details, info)
				}
				if info.NotAfter == nil || !info.NotAfter.Equal(cert.Chain[0].NotAfter) || info.NextRenewalAt == nil {
					t.Errorf("List times: %+v", info)
				}
				if m.Source == state.SourceSelfSigned {
					if got := cert.Chain[0].NotAfter.Sub(now0); got != time.Duration(m.Days)*day {
						t.Errorf("self-signed lifetime after now = %v, want %d days", got, m.Days)
					}
				}
			}

			removed, err := Remove(context.Background(), s, m.ID)
			if err != nil || removed.ID != m.ID {
				t.Fatalf("Remove = %+v, %v", removed, err)
			}
			if cfg := mustConfig(t, s); len(cfg.Mappings) != 0 {
				t.Errorf("mappings after remove: %+v", cfg.Mappings)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("mapping directory after remove: %v", err)
			}
			if m.Source == state.SourceFile {
				if _, err := os.Stat(certFile); err != nil {
					t.Errorf("remove touched the operator's file: %v", err)
				}
			}
		})
	}
}

func equalMapping(a, b state.Mapping) bool {
	return reflect.DeepEqual(a, b)
}

func mustGetwd(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestAddAllowExpired(t *testing.T) {
	expired := issue(t, now0.Add(-60*day), 30*day, "old.example.com")
	s, _ := newStore(t)
	in := manual("old", expired.CertPEM, expired.KeyPEM, "old.example.com")
	in.AllowExpired = true
	m, warnings, err := Add(context.Background(), s, in, now0)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "expired on") {
		t.Errorf("warnings = %q, want one about the expiry", warnings)
	}
	infos, err := List(context.Background(), s, mustConfig(t, s), "", now0)
	if err != nil || len(infos) != 1 || infos[0].Status != StatusExpired || infos[0].ID != m.ID {
		t.Errorf("List = %+v, %v; want status expired", infos, err)
	}

	future := issue(t, now0.Add(48*time.Hour), 30*day, "soon.example.com")
	in = manual("soon", future.CertPEM, future.KeyPEM, "soon.example.com")
	in.AllowExpired = true
	if _, warnings, err = Add(context.Background(), s, in, now0); err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "not valid before") {
		t.Fatalf("Add not yet valid: %q, %v", warnings, err)
	}
	info, _, err := Show(context.Background(), s, mustConfig(t, s), "soon", now0)
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != StatusExpired || !strings.Contains(info.LastError, "not valid before") {
		t.Errorf("not yet valid certificate listed as %q (%q)", info.Status, info.LastError)
	}
}

func TestAddWarnsOfADisabledCredential(t *testing.T) {
	s, _ := newStore(t)
	addCredential(t, s, "off", false)
	_, warnings, err := Add(context.Background(), s, acmeIn("", "dns-01", "off", "*.example.com"), now0)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "dns-credential enable off") {
		t.Errorf("warnings = %q", warnings)
	}
}

func TestAddSameHostOnAnotherListener(t *testing.T) {
	s, _ := newStore(t)
	first := mustAdd(t, s, selfSignedIn("", "web", 0, "a.example.com"))
	second := mustAdd(t, s, selfSignedIn("", "api", 0, "a.example.com"))
	if first.ID != "a-example-com" || second.ID != "a-example-com-2" {
		t.Errorf("ids %q and %q, want a-example-com and a-example-com-2", first.ID, second.ID)
	}
}
