package pki_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// now is fixed so validity checks do not depend on the wall clock.
var now = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

func newCA(t *testing.T) *pki.KeyPair {
	t.Helper()
	ca, err := pki.NewCA("p2ptls test CA", now, pki.CAValidity)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	ca := newCA(t)
	c := ca.Cert
	tests := []struct {
		desc string
		ok   bool
	}{
		{"is a CA", c.IsCA && c.BasicConstraintsValid},
		{"max path length is zero", c.MaxPathLen == 0 && c.MaxPathLenZero},
		{"key usage is cert sign, CRL sign and digital signature",
			c.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature},
		{"not before is backdated one hour", c.NotBefore.Equal(now.Add(-time.Hour))},
		{"not after is ten years and three days on", c.NotAfter.Equal(now.Add((10*365 + 3) * 24 * time.Hour))},
		{"not after is at least ten calendar years on", !c.NotAfter.Before(now.AddDate(10, 0, 0))},
		{"key is ECDSA P-256", pki.KeyType(c.PublicKey) == "ECDSA P-256"},
		{"signed with ECDSA SHA-256", c.SignatureAlgorithm == x509.ECDSAWithSHA256},
		{"self-signed", c.CheckSignatureFrom(c) == nil},
		{"serial is positive and at most 128 bits", c.SerialNumber.Sign() > 0 && c.SerialNumber.BitLen() <= 128},
		{"subject key ID is 20 bytes", len(c.SubjectKeyId) == 20},
		{"common name", c.Subject.CommonName == "p2ptls test CA"},
		{"PEM round trips", func() bool {
			kp, err := pki.LoadKeyPair(ca.CertPEM, ca.KeyPEM)
			return err == nil && kp.Cert.Equal(c)
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			if !tc.ok {
				t.Error("CA certificate fails the check")
			}
		})
	}

	t.Run("serials differ", func(t *testing.T) {
		if other := newCA(t); other.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
			t.Error("two CAs got the same serial number")
		}
	})
}

func TestNewCARefuses(t *testing.T) {
	tests := []struct {
		desc     string
		cn       string
		validity time.Duration
		wantErr  string
	}{
		{"empty common name", "", pki.CAValidity, "common name is empty"},
		{"zero validity", "ca", 0, "not positive"},
		{"negative validity", "ca", -time.Hour, "not positive"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := pki.NewCA(tc.cn, now, tc.validity)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewCA error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestIssueServer(t *testing.T) {
	ca := newCA(t)
	names := pki.ParseNames([]string{"localhost", "mgmt.example.test", "127.0.0.1", "::1"})
	srv, err := pki.IssueServer(ca, names, now, pki.ServerMaxValidity)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	verifyTests := []struct {
		desc   string
		host   string
		at     time.Time
		wantOK bool
	}{
		{"DNS name localhost", "localhost", now, true},
		{"second DNS name", "mgmt.example.test", now, true},
		{"DNS name in another case", "MGMT.Example.Test", now, true},
		{"IPv4 loopback", "127.0.0.1", now, true},
		{"IPv6 loopback", "::1", now, true},
		{"within the backdating", "localhost", now.Add(-59 * time.Minute), true},
		{"on the last day", "localhost", now.Add(pki.ServerMaxValidity - time.Second), true},
		{"name not in the certificate", "other.example.test", now, false},
		{"IP not in the certificate", "10.0.0.1", now, false},
		{"after expiry", "localhost", now.Add(pki.ServerMaxValidity + time.Second), false},
		{"before the backdating", "localhost", now.Add(-61 * time.Minute), false},
	}
	for _, tc := range verifyTests {
		t.Run("verify "+tc.desc, func(t *testing.T) {
			_, err := srv.Cert.Verify(x509.VerifyOptions{
				DNSName:     tc.host,
				Roots:       roots,
				CurrentTime: tc.at,
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err == nil) != tc.wantOK {
				t.Errorf("Verify(%q at %s) error = %v, want ok=%v", tc.host, tc.at, err, tc.wantOK)
			}
		})
	}

	c := srv.Cert
	propTests := []struct {
		desc string
		ok   bool
	}{
		{"not a CA", !c.IsCA && c.BasicConstraintsValid},
		{"key usage is digital signature", c.KeyUsage == x509.KeyUsageDigitalSignature},
		{"extended key usage is server auth",
			len(c.ExtKeyUsage) == 1 && c.ExtKeyUsage[0] == x509.ExtKeyUsageServerAuth},
		{"common name is the first DNS name", c.Subject.CommonName == "localhost"},
		{"authority key ID is the CA's subject key ID",
			len(c.AuthorityKeyId) > 0 && string(c.AuthorityKeyId) == string(ca.Cert.SubjectKeyId)},
		{"issuer is the CA", c.Issuer.CommonName == ca.Cert.Subject.CommonName},
		{"key is ECDSA P-256", pki.KeyType(c.PublicKey) == "ECDSA P-256"},
		{"not before is backdated one hour", c.NotBefore.Equal(now.Add(-time.Hour))},
		{"not after is now plus validity", c.NotAfter.Equal(now.Add(pki.ServerMaxValidity))},
		{"names equal the requested ones", names.Equal(c)},
		{"PEM loads back with its key", func() bool {
			_, err := pki.LoadKeyPair(srv.CertPEM, srv.KeyPEM)
			return err == nil
		}()},
	}
	for _, tc := range propTests {
		t.Run(tc.desc, func(t *testing.T) {
			if !tc.ok {
				t.Error("server certificate fails the check")
			}
		})
	}

	t.Run("common name is the first IP without DNS names", func(t *testing.T) {
		kp, err := pki.IssueServer(ca, pki.ParseNames([]string{"::1", "127.0.0.1"}), now, 24*time.Hour)
		if err != nil {
			t.Fatalf("IssueServer: %v", err)
		}
		if cn := kp.Cert.Subject.CommonName; cn != "::1" {
			t.Errorf("common name = %q, want ::1", cn)
		}
	})
	t.Run("common name is left out when too long", func(t *testing.T) {
		long := strings.Repeat("a", 60) + ".example.test"
		kp, err := pki.IssueServer(ca, pki.ParseNames([]string{long}), now, 24*time.Hour)
		if err != nil {
			t.Fatalf("IssueServer: %v", err)
		}
		if cn := kp.Cert.Subject.CommonName; cn != "" {
			t.Errorf("common name = %q, want empty", cn)
		}
		if !pki.ParseNames([]string{long}).Equal(kp.Cert) {
			t.Errorf("SANs = %v, want %s", kp.Cert.DNSNames, long)
		}
	})
}

func TestIssueServerRefuses(t *testing.T) {
	ca := newCA(t)
	shortCA, err := pki.NewCA("short-lived CA", now, 30*24*time.Hour)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	leaf, err := pki.SelfSigned(pki.ParseNames([]string{"leaf.example.test"}), now, 24*time.Hour)
	if err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	localhost := pki.ParseNames([]string{"localhost"})
	tests := []struct {
		desc     string
		ca       *pki.KeyPair
		names    pki.Names
		validity time.Duration
		wantErr  string
	}{
		{"validity over 397 days", ca, localhost, pki.ServerMaxValidity + time.Second, "exceeds the maximum"},
		{"validity of 398 days", ca, localhost, 398 * 24 * time.Hour, "exceeds the maximum"},
		{"zero validity", ca, localhost, 0, "not positive"},
		{"no names", ca, pki.Names{}, 24 * time.Hour, "at least one DNS name or IP"},
		{"no CA", nil, localhost, 24 * time.Hour, "no CA certificate and key"},
		{"CA without key", &pki.KeyPair{Cert: ca.Cert}, localhost, 24 * time.Hour, "no CA certificate and key"},
		{"signer is not a CA", leaf, localhost, 24 * time.Hour, "is not a CA"},
		{"certificate would outlive the CA", shortCA, localhost, 60 * 24 * time.Hour, "expires at"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			kp, err := pki.IssueServer(tc.ca, tc.names, now, tc.validity)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("IssueServer = %v, %v; want error containing %q", kp, err, tc.wantErr)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	names := pki.ParseNames([]string{"*.example.com", "example.com", "192.0.2.7"})
	kp, err := pki.SelfSigned(names, now, 90*24*time.Hour)
	if err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(kp.Cert)

	tests := []struct {
		desc   string
		host   string
		wantOK bool
	}{
		{"wildcard covers one label", "a.example.com", true},
		{"apex listed separately", "example.com", true},
		{"IP address", "192.0.2.7", true},
		{"wildcard does not cover two labels", "a.b.example.com", false},
		{"other domain", "a.example.org", false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := kp.Cert.Verify(x509.VerifyOptions{
				DNSName:     tc.host,
				Roots:       pool,
				CurrentTime: now,
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err == nil) != tc.wantOK {
				t.Errorf("Verify(%q) error = %v, want ok=%v", tc.host, err, tc.wantOK)
			}
		})
	}

	c := kp.Cert
	propTests := []struct {
		desc string
		ok   bool
	}{
		{"not a CA", !c.IsCA && c.BasicConstraintsValid},
		// CheckSignatureFrom would refuse: the issuer is not a CA.
		{"self-signed", c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil &&
			c.Issuer.String() == c.Subject.String()},
		{"common name is the wildcard", c.Subject.CommonName == "*.example.com"},
		{"extended key usage is server auth",
			len(c.ExtKeyUsage) == 1 && c.ExtKeyUsage[0] == x509.ExtKeyUsageServerAuth},
		{"key is ECDSA P-256", pki.KeyType(c.PublicKey) == "ECDSA P-256"},
	}
	for _, tc := range propTests {
		t.Run(tc.desc, func(t *testing.T) {
			if !tc.ok {
				t.Error("self-signed certificate fails the check")
			}
		})
	}

	t.Run("validity over 397 days refused", func(t *testing.T) {
		if _, err := pki.SelfSigned(names, now, pki.ServerMaxValidity+time.Hour); err == nil {
			t.Error("SelfSigned accepted a validity over ServerMaxValidity")
		}
	})
}

func TestNeedsRenewal(t *testing.T) {
	const day = 24 * time.Hour
	start := now
	tests := []struct {
		desc     string
		lifetime time.Duration
		at       time.Duration // since NotBefore
		want     bool
	}{
		{"90 days: fresh", 90 * day, 0, false},
		{"90 days: exactly a third left", 90 * day, 60 * day, false},
		{"90 days: just under a third left", 90 * day, 60*day + time.Second, true},
		{"90 days: just over a third left", 90 * day, 60*day - time.Second, false},
		{"90 days: at expiry", 90 * day, 90 * day, true},
		{"90 days: expired", 90 * day, 91 * day, true},
		{"90 days: not yet valid", 90 * day, -day, false},
		{"397 days: just over a third left", 397 * day, 397*day - 397*day/3 - time.Second, false},
		{"397 days: just under a third left", 397 * day, 397*day - 397*day/3 + time.Second, true},
		{"10 days: exactly half left", 10 * day, 5 * day, false},
		{"10 days: just under half left", 10 * day, 5*day + time.Second, true},
		{"10 days: a third left", 10 * day, 7 * day, true},
		{"6 days: just over half left", 6 * day, 3*day - time.Second, false},
		{"6 days: just under half left", 6 * day, 3*day + time.Second, true},
		{"just over 10 days: under half but over a third left", 10*day + 3*time.Second, 5*day + 2*time.Second, false},
		{"just over 10 days: just under a third left", 10*day + 3*time.Second, 10*day/3*2 + 3*time.Second, true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cert := &x509.Certificate{NotBefore: start, NotAfter: start.Add(tc.lifetime)}
			if got := pki.NeedsRenewal(cert, start.Add(tc.at)); got != tc.want {
				t.Errorf("NeedsRenewal(lifetime %v, at +%v) = %v, want %v", tc.lifetime, tc.at, got, tc.want)
			}
		})
	}

	t.Run("issued certificate is fresh", func(t *testing.T) {
		kp, err := pki.SelfSigned(pki.ParseNames([]string{"localhost"}), now, 90*day)
		if err != nil {
			t.Fatalf("SelfSigned: %v", err)
		}
		if pki.NeedsRenewal(kp.Cert, now) {
			t.Error("a new certificate needs renewal")
		}
		if !pki.NeedsRenewal(kp.Cert, now.Add(61*day)) {
			t.Error("a certificate with 29 of 90 days left does not need renewal")
		}
	})
}
