package management

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

func TestInitCreatesCAAndServer(t *testing.T) {
	s, root := newStore(t)
	names := testNames()
	mustInit(t, s, names, now0)

	t.Run("file and directory modes", func(t *testing.T) {
		wantModes := map[string]fs.FileMode{
			".":            0o700,
			"certs":        0o700,
			Dir:            0o700,
			CACertFile:     0o644,
			CAKeyFile:      0o600,
			ServerCertFile: 0o644,
			ServerKeyFile:  0o600,
		}
		for name, want := range wantModes {
			fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(name)))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("mode of %s = %v, want %v", name, got, want)
			}
		}
	})

	ca := loadPair(t, s, CACertFile, CAKeyFile)
	t.Run("CA", func(t *testing.T) {
		c := ca.Cert
		if !c.IsCA || !c.BasicConstraintsValid {
			t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want a CA", c.IsCA, c.BasicConstraintsValid)
		}
		if got := pki.KeyType(c.PublicKey); got != "ECDSA P-256" {
			t.Errorf("key type = %q, want ECDSA P-256", got)
		}
		if k, ok := ca.Key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("CA key is %T, want an ECDSA P-256 key", ca.Key)
		}
		if c.Subject.CommonName != caCommonName {
			t.Errorf("subject CN = %q, want %q", c.Subject.CommonName, caCommonName)
		}
		if !c.NotAfter.Equal(now0.Add(pki.CAValidity)) {
			t.Errorf("NotAfter = %v, want %v (10 years)", c.NotAfter, now0.Add(pki.CAValidity))
		}
		if tenYears := now0.AddDate(10, 0, 0); c.NotAfter.Before(tenYears) || c.NotAfter.After(tenYears.AddDate(0, 0, 4)) {
			t.Errorf("NotAfter = %v, want about ten years after %v", c.NotAfter, now0)
		}
		if c.NotBefore.After(now0) {
			t.Errorf("NotBefore = %v is after now %v", c.NotBefore, now0)
		}
	})

	t.Run("server", func(t *testing.T) {
		srv := loadPair(t, s, ServerCertFile, ServerKeyFile).Cert
		if err := srv.CheckSignatureFrom(ca.Cert); err != nil {
			t.Errorf("server certificate is not signed by the CA: %v", err)
		}
		verifyServer(t, ca.Cert, srv, now0)
		if srv.IsCA {
			t.Error("server certificate is a CA")
		}
		if got, want := sans(srv), sortedNames(names); !slices.Equal(got, want) {
			t.Errorf("SANs = %q, want exactly %q", got, want)
		}
		if !names.Equal(srv) {
			t.Error("names.Equal(server certificate) = false")
		}
		if got := srv.NotAfter.Sub(now0); got > 397*24*time.Hour {
			t.Errorf("server certificate lives %v after now, want at most 397 days", got)
		}
		if !srv.NotAfter.Equal(now0.Add(ServerValidity)) {
			t.Errorf("NotAfter = %v, want %v", srv.NotAfter, now0.Add(ServerValidity))
		}
	})
}

func TestInitRefusesExistingCA(t *testing.T) {
	s, _ := newStore(t)
	mustInit(t, s, testNames(), now0)
	before := snapshot(t, s)

	err := Init(context.Background(), s, pki.ParseNames([]string{"other.example.com"}), now0.Add(time.Hour))
	wantFault(t, err, fault.Failure, "never replaced")
	wantHint(t, err, "renew-server")
	assertSame(t, before, snapshot(t, s), allFiles...)
}

func TestEnsureOnEmptyStore(t *testing.T) {
	s, _ := newStore(t)
	names := testNames()
	srv, did, err := Ensure(context.Background(), s, names, now0)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if did == "" {
		t.Error("Ensure on an empty store says it did nothing")
	}
	if got := snapshot(t, s); len(got) != len(allFiles) {
		t.Fatalf("Ensure created %d of the %d files", len(got), len(allFiles))
	}
	ca := loadPair(t, s, CACertFile, CAKeyFile)
	onDisk := loadPair(t, s, ServerCertFile, ServerKeyFile)
	if !bytes.Equal(srv.CertPEM, onDisk.CertPEM) || !bytes.Equal(srv.KeyPEM, onDisk.KeyPEM) {
		t.Error("Ensure returned another server key pair than it saved")
	}
	verifyServer(t, ca.Cert, onDisk.Cert, now0)
	if !names.Equal(onDisk.Cert) {
		t.Errorf("SANs = %q, want %q", sans(onDisk.Cert), sortedNames(names))
	}
}

// TestEnsureExisting starts every case from an Init with testNames at now0.
func TestEnsureExisting(t *testing.T) {
	initial := testNames()
	// The server certificate's lifetime, from its NotBefore (an hour before
	// now0) to its NotAfter; it is re-issued when less than a third remains.
	lifetime := ServerValidity + time.Hour
	lastThird := now0.Add(ServerValidity).Add(-lifetime / 3)

	tests := []struct {
		desc    string
		prepare func(t *testing.T, s state.Store)
		names   pki.Names
		now     time.Time
		wantDid string // "" when nothing must change
	}{
		{
			desc:  "same names",
			names: initial,
			now:   now0,
		},
		{
			desc:  "same names in another order and case",
			names: pki.ParseNames([]string{"::1", "LOCALHOST", "127.0.0.1", "10.0.0.1", "Mgmt.Example.com"}),
			now:   now0.Add(24 * time.Hour),
		},
		{
			desc:  "just before the last third of the lifetime",
			names: initial,
			now:   lastThird.Add(-time.Hour),
		},
		{
			desc:    "different names",
			names:   pki.ParseNames([]string{"new.example.com", "10.0.0.2", "localhost"}),
			now:     now0,
			wantDid: "names changed",
		},
		{
			desc:    "a name fewer",
			names:   pki.ParseNames([]string{"mgmt.example.com", "localhost", "127.0.0.1", "::1"}),
			now:     now0,
			wantDid: "names changed",
		},
		{
			desc:    "inside the last third of the lifetime",
			names:   initial,
			now:     lastThird.Add(time.Hour),
			wantDid: "nears expiry",
		},
		{
			desc:    "expired",
			names:   initial,
			now:     now0.Add(ServerValidity + 24*time.Hour),
			wantDid: "nears expiry",
		},
		{
			desc: "server key does not match the certificate",
			prepare: func(t *testing.T, s state.Store) {
				if err := s.Write(context.Background(), ServerKeyFile, newKeyPEM(t), state.SecretMode); err != nil {
					t.Fatal(err)
				}
			},
			names:   initial,
			now:     now0,
			wantDid: "damaged",
		},
		{
			desc: "server certificate missing",
			prepare: func(t *testing.T, s state.Store) {
				if err := s.Delete(context.Background(), ServerCertFile); err != nil {
					t.Fatal(err)
				}
			},
			names:   initial,
			now:     now0,
			wantDid: "missing",
		},
		{
			desc: "server key missing",
			prepare: func(t *testing.T, s state.Store) {
				if err := s.Delete(context.Background(), ServerKeyFile); err != nil {
					t.Fatal(err)
				}
			},
			names:   initial,
			now:     now0,
			wantDid: "key is missing",
		},
		{
			desc: "server certificate from another CA",
			prepare: func(t *testing.T, s state.Store) {
				other := mustServer(t, mustCA(t, "other CA", now0), now0, ServerValidity,
					"mgmt.example.com", "10.0.0.1", "localhost", "127.0.0.1", "::1")
				if err := s.Write(context.Background(), ServerCertFile, other.CertPEM, state.PublicMode); err != nil {
					t.Fatal(err)
				}
				if err := s.Write(context.Background(), ServerKeyFile, other.KeyPEM, state.SecretMode); err != nil {
					t.Fatal(err)
				}
			},
			names:   initial,
			now:     now0,
			wantDid: "not issued by the current CA",
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := newStore(t)
			mustInit(t, s, initial, now0)
			if tc.prepare != nil {
				tc.prepare(t, s)
			}
			before := snapshot(t, s)

			srv, did, err := Ensure(context.Background(), s, tc.names, tc.now)
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			after := snapshot(t, s)
			if tc.wantDid == "" {
				if did != "" {
					t.Errorf("Ensure says %q, want nothing done", did)
				}
				assertSame(t, before, after, allFiles...)
			} else {
				if !strings.Contains(did, tc.wantDid) {
					t.Errorf("Ensure says %q, want it to contain %q", did, tc.wantDid)
				}
				assertSame(t, before, after, CACertFile, CAKeyFile)
				assertChanged(t, before, after, ServerCertFile, ServerKeyFile)
			}

			// Whatever happened, the store now holds a server certificate for
			// exactly the names, from the original CA, fresh at now.
			ca := loadPair(t, s, CACertFile, CAKeyFile)
			onDisk := loadPair(t, s, ServerCertFile, ServerKeyFile)
			if !bytes.Equal(srv.CertPEM, onDisk.CertPEM) || !bytes.Equal(srv.KeyPEM, onDisk.KeyPEM) {
				t.Error("Ensure returned another server key pair than the saved one")
			}
			verifyServer(t, ca.Cert, onDisk.Cert, tc.now)
			if got, want := sans(onDisk.Cert), sortedNames(tc.names); !slices.Equal(got, want) {
				t.Errorf("SANs = %q, want %q", got, want)
			}
			if pki.NeedsRenewal(onDisk.Cert, tc.now) {
				t.Error("the server certificate still needs renewal")
			}
			if tc.wantDid != "" && !onDisk.Cert.NotAfter.Equal(tc.now.Add(ServerValidity)) {
				t.Errorf("re-issued NotAfter = %v, want %v", onDisk.Cert.NotAfter, tc.now.Add(ServerValidity))
			}
		})
	}
}

func TestEnsureBrokenCA(t *testing.T) {
	t.Run("CA certificate without its key is refused", func(t *testing.T) {
		s, _ := newStore(t)
		mustInit(t, s, testNames(), now0)
		if err := s.Delete(context.Background(), CAKeyFile); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, s)

		_, _, err := Ensure(context.Background(), s, testNames(), now0)
		wantFault(t, err, fault.Failure, CAKeyFile)
		wantHint(t, err, "backup")
		after := snapshot(t, s)
		assertSame(t, before, after, allFiles...)
		if _, ok := after[CAKeyFile]; ok {
			t.Error("Ensure created a new CA key")
		}
	})

	t.Run("damaged CA certificate is refused", func(t *testing.T) {
		s, _ := newStore(t)
		mustInit(t, s, testNames(), now0)
		if err := s.Write(context.Background(), CACertFile, []byte("garbage\n"), state.PublicMode); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, s)

		_, _, err := Ensure(context.Background(), s, testNames(), now0)
		wantFault(t, err, fault.Failure, "damaged")
		wantHint(t, err, "backup")
		assertSame(t, before, snapshot(t, s), allFiles...)
	})

	t.Run("CA key without its certificate makes a fresh CA", func(t *testing.T) {
		// A state from before the CA record, whose ca.crt is gone: the CA
		// exists exactly when ca.crt exists, so there is none and nobody
		// trusts the orphaned key. (With the record, TestEnsureRefusesLostCA.)
		s, _ := newStore(t)
		mustInit(t, s, testNames(), now0)
		for _, name := range []string{CACertFile, CARecordFile} {
			if err := s.Delete(context.Background(), name); err != nil {
				t.Fatal(err)
			}
		}
		before := snapshot(t, s)

		_, did, err := Ensure(context.Background(), s, testNames(), now0)
		if err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if !strings.Contains(did, "created") {
			t.Errorf("Ensure says %q, want it to say it created the CA", did)
		}
		after := snapshot(t, s)
		assertChanged(t, before, after, allFiles...)
		ca := loadPair(t, s, CACertFile, CAKeyFile) // the new key matches the new certificate
		verifyServer(t, ca.Cert, loadPair(t, s, ServerCertFile, ServerKeyFile).Cert, now0)
	})

	t.Run("expired CA is not replaced", func(t *testing.T) {
		s, _ := newStore(t)
		mustInit(t, s, testNames(), now0)
		before := snapshot(t, s)

		_, _, err := Ensure(context.Background(), s, testNames(), now0.Add(pki.CAValidity+24*time.Hour))
		if err == nil {
			t.Fatal("Ensure with an expired CA succeeded")
		}
		wantFault(t, err, fault.Failure, "cannot issue a server certificate any more")
		assertSame(t, before, snapshot(t, s), CACertFile, CAKeyFile)
	})
}

func TestRenewServer(t *testing.T) {
	tests := []struct {
		desc     string
		prepare  func(t *testing.T, s state.Store)
		wantKind fault.Kind
		wantHint string // "" for success
	}{
		{
			desc:     "without a CA",
			wantKind: fault.Failure,
			wantHint: "'p2ptls ca init'",
		},
		{
			desc: "CA key missing",
			prepare: func(t *testing.T, s state.Store) {
				mustInit(t, s, testNames(), now0)
				if err := s.Delete(context.Background(), CAKeyFile); err != nil {
					t.Fatal(err)
				}
			},
			wantKind: fault.Failure,
			wantHint: "backup",
		},
		{
			desc:    "with a CA",
			prepare: func(t *testing.T, s state.Store) { mustInit(t, s, testNames(), now0) },
		},
	}
	names := pki.ParseNames([]string{"renewed.example.com", "192.0.2.1"})
	now := now0.Add(30 * 24 * time.Hour)
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := newStore(t)
			if tc.prepare != nil {
				tc.prepare(t, s)
			}
			before := snapshot(t, s)

			srv, err := RenewServer(context.Background(), s, names, now)
			after := snapshot(t, s)
			if tc.wantHint != "" {
				wantFault(t, err, tc.wantKind)
				wantHint(t, err, tc.wantHint)
				assertSame(t, before, after, allFiles...)
				return
			}
			if err != nil {
				t.Fatalf("RenewServer: %v", err)
			}
			assertSame(t, before, after, CACertFile, CAKeyFile)
			assertChanged(t, before, after, ServerCertFile, ServerKeyFile)
			old, err := pki.ParseCertChain(before[ServerCertFile])
			if err != nil {
				t.Fatal(err)
			}
			if srv.Cert.SerialNumber.Cmp(old[0].SerialNumber) == 0 {
				t.Error("serial number did not change")
			}
			onDisk := loadPair(t, s, ServerCertFile, ServerKeyFile)
			if !bytes.Equal(srv.CertPEM, onDisk.CertPEM) {
				t.Error("RenewServer returned another certificate than it saved")
			}
			verifyServer(t, loadPair(t, s, CACertFile, CAKeyFile).Cert, onDisk.Cert, now)
			if got, want := sans(onDisk.Cert), sortedNames(names); !slices.Equal(got, want) {
				t.Errorf("SANs = %q, want %q", got, want)
			}
		})
	}
}

func TestCACertificate(t *testing.T) {
	tests := []struct {
		desc    string
		prepare func(t *testing.T, s state.Store)
		wantErr string // "" for success
	}{
		{
			desc:    "no CA",
			wantErr: "no management CA",
		},
		{
			desc:    "CA",
			prepare: func(t *testing.T, s state.Store) { mustInit(t, s, testNames(), now0) },
		},
		{
			desc: "damaged CA certificate",
			prepare: func(t *testing.T, s state.Store) {
				mustInit(t, s, testNames(), now0)
				if err := s.Write(context.Background(), CACertFile, []byte("-----BEGIN GARBAGE-----\nnot base64\n"), state.PublicMode); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "damaged",
		},
		{
			desc: "CA certificate that does not parse",
			prepare: func(t *testing.T, s state.Store) {
				mustInit(t, s, testNames(), now0)
				if err := s.Write(context.Background(), CACertFile, pki.EncodeCert([]byte("not DER")), state.PublicMode); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "damaged",
		},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := newStore(t)
			if tc.prepare != nil {
				tc.prepare(t, s)
			}
			pemBytes, cert, err := CACertificate(context.Background(), s)
			if tc.wantErr != "" {
				wantFault(t, err, fault.Failure, tc.wantErr)
				if fault.HintOf(err) == "" {
					t.Errorf("error %q has no hint", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CACertificate: %v", err)
			}
			onDisk := loadPair(t, s, CACertFile, CAKeyFile)
			if !bytes.Equal(pemBytes, onDisk.CertPEM) {
				t.Errorf("PEM = %q, want the content of %s", pemBytes, CACertFile)
			}
			if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN CERTIFICATE-----\n")) {
				t.Errorf("PEM = %q, want a CERTIFICATE block", pemBytes)
			}
			if !cert.Equal(onDisk.Cert) || !cert.IsCA {
				t.Error("parsed certificate is not the CA")
			}
		})
	}
}
