package management

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// validated returns set after Validate.
func validated(t *testing.T, set Settings) Settings {
	t.Helper()
	if err := set.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return set
}

func TestShowAuto(t *testing.T) {
	base := validated(t, Settings{Mode: ModeAuto, PublicURL: "https://mgmt.example.com:8443"})
	tests := []struct {
		desc        string
		extraHosts  []string
		wantMissing []string
	}{
		{desc: "certificate carries every wanted name", wantMissing: []string{}},
		{
			desc:        "settings ask for names the certificate lacks",
			extraHosts:  []string{"10.9.9.9", "extra.example.com"},
			wantMissing: []string{"extra.example.com", "10.9.9.9"}, // DNS names first
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, root := newStore(t)
			mustInit(t, s, base.WantedNames(), now0)
			ca := loadPair(t, s, CACertFile, CAKeyFile).Cert
			srv := loadPair(t, s, ServerCertFile, ServerKeyFile).Cert

			set := base
			set.ExtraHosts = tc.extraHosts
			info, err := Show(context.Background(), s, validated(t, set))
			if err != nil {
				t.Fatalf("Show: %v", err)
			}
			if info.Mode != ModeAuto {
				t.Errorf("mode = %q, want auto", info.Mode)
			}
			if info.CA == nil || info.Server == nil {
				t.Fatalf("CA = %v, server = %v; want both", info.CA, info.Server)
			}
			if info.CA.FingerprintSHA256 != pki.Fingerprint(ca) {
				t.Errorf("CA fingerprint = %q, want %q", info.CA.FingerprintSHA256, pki.Fingerprint(ca))
			}
			if info.Server.FingerprintSHA256 != pki.Fingerprint(srv) {
				t.Errorf("server fingerprint = %q, want %q", info.Server.FingerprintSHA256, pki.Fingerprint(srv))
			}
			if want := root + "/" + CACertFile; info.CA.File != want {
				t.Errorf("CA file = %q, want %q", info.CA.File, want)
			}
			if want := root + "/" + ServerCertFile; info.Server.File != want {
				t.Errorf("server file = %q, want %q", info.Server.File, want)
			}
			if !info.CA.NotAfter.Equal(ca.NotAfter) || !info.Server.NotAfter.Equal(srv.NotAfter) {
				t.Errorf("NotAfter = %v / %v, want %v / %v", info.CA.NotAfter, info.Server.NotAfter, ca.NotAfter, srv.NotAfter)
			}
			if info.Missing == nil || !slices.Equal(info.Missing, tc.wantMissing) {
				t.Errorf("missing = %#v, want %#v", info.Missing, tc.wantMissing)
			}
		})
	}
}

func TestShowWithoutServerOrCA(t *testing.T) {
	tests := []struct {
		desc       string
		set        Settings
		prepare    func(t *testing.T, s state.Store)
		wantErr    bool
		wantCA     bool
		wantServer bool
	}{
		{
			desc:    "auto without CA",
			set:     Settings{Mode: ModeAuto},
			wantErr: true,
		},
		{
			desc: "auto with a CA but no server certificate",
			set:  Settings{Mode: ModeAuto},
			prepare: func(t *testing.T, s state.Store) {
				mustInit(t, s, testNames(), now0)
				if err := s.Delete(context.Background(), ServerCertFile); err != nil {
					t.Fatal(err)
				}
			},
			wantCA: true,
		},
		{
			desc: "off without CA",
			set:  Settings{Mode: ModeOff, AllowInsecureHTTP: true},
		},
		{
			desc:    "off with a CA",
			set:     Settings{Mode: ModeOff, AllowInsecureHTTP: true},
			prepare: func(t *testing.T, s state.Store) { mustInit(t, s, testNames(), now0) },
			wantCA:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := newStore(t)
			if tc.prepare != nil {
				tc.prepare(t, s)
			}
			info, err := Show(context.Background(), s, validated(t, tc.set))
			if tc.wantErr {
				wantFault(t, err, fault.Failure, "no management CA")
				return
			}
			if err != nil {
				t.Fatalf("Show: %v", err)
			}
			if info.Mode != tc.set.Mode {
				t.Errorf("mode = %q, want %q", info.Mode, tc.set.Mode)
			}
			if (info.CA != nil) != tc.wantCA || (info.Server != nil) != tc.wantServer {
				t.Errorf("CA = %v, server = %v; want CA: %v, server: %v", info.CA, info.Server, tc.wantCA, tc.wantServer)
			}
			if info.Missing == nil {
				t.Error("missing is nil, want an empty list")
			}
		})
	}
}

func TestShowDamagedServerCertificate(t *testing.T) {
	s, _ := newStore(t)
	mustInit(t, s, testNames(), now0)
	if err := s.Write(context.Background(), ServerCertFile, []byte("garbage"), state.PublicMode); err != nil {
		t.Fatal(err)
	}
	_, err := Show(context.Background(), s, validated(t, Settings{}))
	wantFault(t, err, fault.Failure, ServerCertFile, "damaged")
	wantHint(t, err, "renew-server")
}

func TestShowProvided(t *testing.T) {
	// Show checks mode provided's files against the wall clock, so these
	// certificates are issued now rather than at now0.
	now := time.Now()
	c := newChain(t, now, 90*24*time.Hour)
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "leaf.key", c.leaf.KeyPEM)

	tests := []struct {
		desc     string
		certPEM  []byte
		wantCA   *pki.KeyPair
		wantKind fault.Kind
		wantErr  string
	}{
		{desc: "leaf, intermediate and root", certPEM: c.pem(), wantCA: c.root},
		{desc: "leaf and intermediate", certPEM: bytes.Join([][]byte{c.leaf.CertPEM, c.inter.CertPEM}, nil), wantCA: c.inter},
		{desc: "leaf only", certPEM: c.leaf.CertPEM},
		{desc: "no certificate", certPEM: c.leaf.KeyPEM, wantKind: fault.Invalid, wantErr: "MANAGEMENT_TLS_CERT_FILE"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			certFile := writeFile(t, t.TempDir(), "chain.pem", tc.certPEM)
			s, _ := newStore(t)
			set := validated(t, Settings{Mode: ModeProvided, CertFile: certFile, KeyFile: keyFile})

			info, err := Show(context.Background(), s, set)
			if tc.wantErr != "" {
				wantFault(t, err, tc.wantKind, tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Show: %v", err)
			}
			if info.Mode != ModeProvided {
				t.Errorf("mode = %q, want provided", info.Mode)
			}
			if info.Server == nil || info.Server.FingerprintSHA256 != pki.Fingerprint(c.leaf.Cert) {
				t.Errorf("server = %+v, want the leaf %s", info.Server, pki.Fingerprint(c.leaf.Cert))
			} else if info.Server.File != certFile {
				t.Errorf("server file = %q, want %q", info.Server.File, certFile)
			}
			switch {
			case tc.wantCA == nil && info.CA != nil:
				t.Errorf("CA = %+v, want none", info.CA)
			case tc.wantCA != nil && (info.CA == nil || info.CA.FingerprintSHA256 != pki.Fingerprint(tc.wantCA.Cert)):
				t.Errorf("CA = %+v, want %q (the last certificate)", info.CA, tc.wantCA.Cert.Subject)
			}
			if got := snapshot(t, s); len(got) != 0 {
				t.Errorf("Show in mode provided wrote %d auto mode files", len(got))
			}
		})
	}
}

// TestShowJSON pins the JSON field names scripts rely on.
func TestShowJSON(t *testing.T) {
	s, _ := newStore(t)
	set := validated(t, Settings{ExtraHosts: []string{"10.0.0.1", "2001:db8::1"}})
	mustInit(t, s, set.WantedNames(), now0)
	info, err := Show(context.Background(), s, set)
	if err != nil {
		t.Fatalf("Show: %v", err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Mode *string `json:"mode"`
		CA   *struct {
			Subject           *string    `json:"subject"`
			FingerprintSHA256 *string    `json:"fingerprint_sha256"`
			NotAfter          *time.Time `json:"not_after"`
		} `json:"ca"`
		Server *struct {
			DNSNames    []string   `json:"dns_names"`
			IPAddresses []string   `json:"ip_addresses"`
			NotAfter    *time.Time `json:"not_after"`
		} `json:"server"`
		Missing []string `json:"missing_names"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	ca := loadPair(t, s, CACertFile, CAKeyFile).Cert
	srv := loadPair(t, s, ServerCertFile, ServerKeyFile).Cert
	switch {
	case doc.Mode == nil || *doc.Mode != ModeAuto:
		t.Errorf("mode missing or wrong in %s", b)
	case doc.CA == nil || doc.Server == nil:
		t.Fatalf("ca or server missing in %s", b)
	}
	// The serialNumber attribute keeps the CAs of one installation apart
	// (a rotation's current and next).
	if doc.CA.Subject == nil || *doc.CA.Subject != ca.Subject.String() || !strings.HasSuffix(*doc.CA.Subject, ",CN="+caCommonName) {
		t.Errorf("ca.subject missing or wrong in %s", b)
	}
	if doc.CA.FingerprintSHA256 == nil || *doc.CA.FingerprintSHA256 != pki.Fingerprint(ca) {
		t.Errorf("ca.fingerprint_sha256 missing or wrong in %s", b)
	}
	if doc.CA.NotAfter == nil || !doc.CA.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("ca.not_after missing or wrong in %s", b)
	}
	if doc.Server.NotAfter == nil || !doc.Server.NotAfter.Equal(srv.NotAfter) {
		t.Errorf("server.not_after missing or wrong in %s", b)
	}
	if !equalSets(doc.Server.DNSNames, srv.DNSNames) || !slices.Contains(doc.Server.DNSNames, "localhost") {
		t.Errorf("server.dns_names = %q, want %q", doc.Server.DNSNames, srv.DNSNames)
	}
	if want := []string{"10.0.0.1", "2001:db8::1", "127.0.0.1", "::1"}; !equalSets(doc.Server.IPAddresses, want) {
		t.Errorf("server.ip_addresses = %q, want %q", doc.Server.IPAddresses, want)
	}
	if doc.Missing == nil || len(doc.Missing) != 0 {
		t.Errorf("missing_names = %#v in %s, want []", doc.Missing, b)
	}
}

func TestLoadProvided(t *testing.T) {
	c := newChain(t, now0, 90*24*time.Hour)
	dir := t.TempDir()
	chainFile := writeFile(t, dir, "chain.pem", c.pem())
	keyFile := writeFile(t, dir, "leaf.key", c.leaf.KeyPEM)
	otherKeyFile := writeFile(t, dir, "other.key", newKeyPEM(t))
	garbageFile := writeFile(t, dir, "garbage.pem", []byte("garbage"))
	missing := dir + "/missing.pem"

	tests := []struct {
		desc              string
		certFile, keyFile string
		now               time.Time
		wantErr           []string // Invalid, containing these; nil for success
	}{
		{desc: "valid chain", certFile: chainFile, keyFile: keyFile, now: now0},
		{desc: "valid until its last day", certFile: chainFile, keyFile: keyFile, now: c.leaf.Cert.NotAfter.Add(-time.Minute)},
		{desc: "missing certificate file", certFile: missing, keyFile: keyFile, now: now0,
			wantErr: []string{"MANAGEMENT_TLS_CERT_FILE"}},
		{desc: "missing key file", certFile: chainFile, keyFile: missing, now: now0,
			wantErr: []string{"MANAGEMENT_TLS_KEY_FILE"}},
		{desc: "certificate file without certificate", certFile: garbageFile, keyFile: keyFile, now: now0,
			wantErr: []string{"MANAGEMENT_TLS_CERT_FILE", "no PEM CERTIFICATE"}},
		{desc: "key file without key", certFile: chainFile, keyFile: garbageFile, now: now0,
			wantErr: []string{"MANAGEMENT_TLS_KEY_FILE", "private key"}},
		{desc: "key of another certificate", certFile: chainFile, keyFile: otherKeyFile, now: now0,
			wantErr: []string{"does not match"}},
		{desc: "expired leaf", certFile: chainFile, keyFile: keyFile, now: c.leaf.Cert.NotAfter.Add(time.Second),
			wantErr: []string{"expired", chainFile}},
		{desc: "leaf not yet valid", certFile: chainFile, keyFile: keyFile, now: c.leaf.Cert.NotBefore.Add(-time.Second),
			wantErr: []string{"not valid before", chainFile}},
	}
	// serve rereads both files on rotation: a FIFO or a device there is
	// refused at once instead of wedging it.
	for _, h := range statetest.HostilePaths(t, t.TempDir()) {
		tests = append(tests,
			struct {
				desc              string
				certFile, keyFile string
				now               time.Time
				wantErr           []string
			}{"certificate file is " + h.Desc, h.Path, keyFile, now0, []string{"MANAGEMENT_TLS_CERT_FILE: cannot read " + h.Path + ": " + h.Says}},
			struct {
				desc              string
				certFile, keyFile string
				now               time.Time
				wantErr           []string
			}{"key file is " + h.Desc, chainFile, h.Path, now0, []string{"MANAGEMENT_TLS_KEY_FILE: cannot read " + h.Path + ": " + h.Says}})
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			var (
				kp  *pki.KeyPair
				err error
			)
			statetest.Within(t, 5*time.Second, func() { kp, err = LoadProvided(tc.certFile, tc.keyFile, tc.now) })
			if tc.wantErr != nil {
				wantFault(t, err, fault.Invalid, tc.wantErr...)
				if fault.HintOf(err) == "" {
					t.Errorf("error %q has no hint", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadProvided: %v", err)
			}
			if !kp.Cert.Equal(c.leaf.Cert) {
				t.Errorf("leaf = %q, want %q", kp.Cert.Subject, c.leaf.Cert.Subject)
			}
			if !bytes.Equal(kp.CertPEM, c.pem()) {
				t.Error("CertPEM is not the whole chain as given")
			}
		})
	}
}
