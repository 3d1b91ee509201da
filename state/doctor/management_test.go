package doctor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/backup"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

func TestModeAndListen(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		set    management.Settings
		status Status
		msg    string
	}{
		{"auto", management.Settings{Mode: "auto"}, OK, "MANAGEMENT_TLS_MODE=auto"},
		{"default is auto", management.Settings{}, OK, "MANAGEMENT_TLS_MODE=auto"},
		{"provided with files", management.Settings{Mode: "provided", CertFile: "c", KeyFile: "k"}, OK, "provided"},
		{"provided without files", management.Settings{Mode: "provided"}, Fail, "needs MANAGEMENT_TLS_CERT_FILE"},
		{"off without the allowance", management.Settings{Mode: "off"}, Fail, "requires MANAGEMENT_ALLOW_INSECURE_HTTP=true"},
		{"off with the allowance", management.Settings{Mode: "off", AllowInsecureHTTP: true}, Warn, "plain HTTP"},
		{"unknown mode", management.Settings{Mode: "tls"}, Fail, `unknown MANAGEMENT_TLS_MODE "tls"`},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := input(newStore(t))
			in.Settings = tc.set
			want(t, run(in, checkMode), IDMode, tc.status, tc.msg)
		})
	}
	in := input(newStore(t))
	want(t, run(in, checkListen), IDListen, OK, ":8443")
	in.Settings.Listen = ":0"
	want(t, run(in, checkListen), IDListen, Fail, "MANAGEMENT_LISTEN", "refuses to start")
}

func TestProvidedFiles(t *testing.T) {
	ca := mustCA(t)
	good := mustServer(t, ca, 90*day, "mgmt.example.com")
	other := mustServer(t, ca, 90*day, "mgmt.example.com")
	for _, tc := range []struct {
		desc      string
		cert, key []byte
		now       time.Time
		status    Status
		msg       string
	}{
		{"valid", append(append([]byte{}, good.CertPEM...), ca.CertPEM...), good.KeyPEM, now0, OK, "match"},
		{"key of another certificate", good.CertPEM, other.KeyPEM, now0, Fail, "does not match"},
		{"expired", good.CertPEM, good.KeyPEM, now0.Add(91 * day), Fail, "expired"},
		{"due for renewal", good.CertPEM, good.KeyPEM, now0.Add(70 * day), Warn, "expires on"},
		{"missing", nil, nil, now0, Fail, "MANAGEMENT_TLS_CERT_FILE: cannot read"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := input(newStore(t))
			in.Now = tc.now
			cf, kf := "/nonexistent/c.pem", "/nonexistent/k.pem"
			if tc.cert != nil {
				cf, kf = writeFiles(t, tc.cert, tc.key)
			}
			in.Settings = management.Settings{Mode: "provided", CertFile: cf, KeyFile: kf}
			want(t, run(in, checkProvidedFiles), IDProvidedFiles, tc.status, tc.msg)
		})
	}
	t.Run("not used in mode auto", func(t *testing.T) {
		want(t, run(input(newStore(t)), checkProvidedFiles), IDProvidedFiles, OK, "nothing to check")
	})
}

func TestPublicURL(t *testing.T) {
	resolver := map[string][]net.IP{
		"mgmt.example.com": {net.ParseIP("192.0.2.7")},
		"box.internal":     {net.ParseIP("127.0.1.1")},
	}
	for _, tc := range []struct {
		desc, url, mode string
		status          Status
		msg             string
	}{
		{"unset", "", "auto", Warn, "not set"},
		{"unparsable", "mgmt.example.com:8443", "auto", Fail, "not an http(s) URL"},
		{"http with TLS on", "http://mgmt.example.com:8443", "auto", Fail, "not https://"},
		{"http with TLS off", "http://mgmt.example.com:8080", "off", OK, "resolves to 192.0.2.7"},
		{"localhost", "https://localhost:8443", "auto", Warn, "cannot reach"},
		{"loopback IP", "https://127.0.0.1:8443", "auto", Warn, "loopback address"},
		{"IPv6 loopback", "https://[::1]:8443", "auto", Warn, "loopback address"},
		{"unspecified IP", "https://0.0.0.0:8443", "auto", Warn, "unspecified"},
		{"name that resolves to loopback only", "https://box.internal:8443", "auto", Warn, "only to loopback"},
		{"unresolvable name", "https://nowhere.example.net:8443", "auto", Warn, "does not resolve"},
		{"name that resolves", "https://mgmt.example.com:8443", "auto", OK, "resolves to 192.0.2.7"},
		{"public IP", publicURL, "auto", OK, publicURL},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := input(newStore(t))
			in.Settings = management.Settings{Mode: tc.mode, AllowInsecureHTTP: true, PublicURL: tc.url}
			in.Resolve = func(_ context.Context, host string) ([]net.IP, error) {
				if ips, ok := resolver[host]; ok {
					return ips, nil
				}
				return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
			}
			want(t, run(in, checkPublicURL), IDPublicURL, tc.status, tc.msg)
		})
	}
}

func TestPublicURLCovered(t *testing.T) {
	t.Run("covered by the auto certificate", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s, "192.0.2.10")
		want(t, run(input(s), checkPublicURLCovered), IDPublicURLCovered, OK, "covers 192.0.2.10")
	})
	t.Run("not covered by the auto certificate", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s, "mgmt.example.com")
		c := run(input(s), checkPublicURLCovered)
		want(t, c, IDPublicURLCovered, Fail, "does not cover 192.0.2.10", "mgmt.example.com")
		wantHint(t, c, "ca renew-server", "MANAGEMENT_TLS_EXTRA_HOSTS")
	})
	t.Run("no certificate yet", func(t *testing.T) {
		want(t, run(input(newStore(t)), checkPublicURLCovered), IDPublicURLCovered, OK, "serve issues one")
	})
	t.Run("provided certificate", func(t *testing.T) {
		ca := mustCA(t)
		kp := mustServer(t, ca, 90*day, "mgmt.example.com")
		cf, kf := writeFiles(t, kp.CertPEM, kp.KeyPEM)
		in := input(newStore(t))
		in.Settings = management.Settings{Mode: "provided", CertFile: cf, KeyFile: kf, PublicURL: "https://mgmt.example.com"}
		want(t, run(in, checkPublicURLCovered), IDPublicURLCovered, OK)
		in.Settings.PublicURL = "https://other.example.com"
		c := run(in, checkPublicURLCovered)
		want(t, c, IDPublicURLCovered, Fail, "other.example.com")
		wantHint(t, c, "MANAGEMENT_TLS_CERT_FILE")
	})
}

func TestExtraHosts(t *testing.T) {
	s := newStore(t)
	initCA(t, s, "192.0.2.10", "mgmt2.example.com", "10.0.0.5")
	for _, tc := range []struct {
		desc   string
		extra  []string
		status Status
		msg    string
	}{
		{"none", nil, OK, "not set"},
		{"all on the certificate", []string{"mgmt2.example.com", "10.0.0.5"}, OK, "mgmt2.example.com, 10.0.0.5"},
		{"one missing", []string{"mgmt2.example.com", "mgmt3.example.com", "10.0.0.6"}, Fail, "lacks mgmt3.example.com, 10.0.0.6"},
		{"invalid entry", []string{"bad host!"}, Fail, "MANAGEMENT_TLS_EXTRA_HOSTS"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := input(s)
			in.Settings.ExtraHosts = tc.extra
			c := run(in, checkExtraHosts)
			want(t, c, IDExtraHosts, tc.status, tc.msg)
			if tc.desc == "one missing" {
				wantHint(t, c, "ca renew-server")
			}
		})
	}
}

func TestCA(t *testing.T) {
	t.Run("none yet", func(t *testing.T) {
		c := run(input(newStore(t)), checkCA)
		want(t, c, IDCA, Warn, "no management CA yet")
		wantHint(t, c, "ca init")
	})
	t.Run("present", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		want(t, run(input(s), checkCA), IDCA, OK, "management CA SHA-256")
	})
	t.Run("key lost", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		if err := s.Delete(context.Background(), management.CAKeyFile); err != nil {
			t.Fatal(err)
		}
		c := run(input(s), checkCA)
		want(t, c, IDCA, Fail, "ca.key")
		wantHint(t, c, "backup")
	})
	t.Run("damaged", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		mustWrite(t, s, management.CACertFile, []byte("garbage"), state.PublicMode)
		want(t, run(input(s), checkCA), IDCA, Fail, "damaged")
	})
	t.Run("lost after it was recorded", func(t *testing.T) {
		// The seed's restore mistake: certs/management gone from a state
		// that had a CA. Not "serve creates one": agents trust the old.
		s := newStore(t)
		initCA(t, s)
		_, ca, err := management.CACertificate(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		fp := pki.Fingerprint(ca)
		if err := s.Delete(context.Background(), management.Dir); err != nil {
			t.Fatal(err)
		}
		c := run(input(s), checkCA)
		want(t, c, IDCA, Fail, "agents that trust CA "+fp+" will not trust the new one", "serve refuses")
		wantHint(t, c, "p2ptls restore")
		wantHint(t, c, "ca init --replace --confirm-new-ca")
	})
	t.Run("lost, with a damaged record", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		if err := s.Delete(context.Background(), management.Dir); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, s, management.CARecordFile, []byte("not = [toml"), state.SecretMode)
		want(t, run(input(s), checkCA), IDCA, Fail, "damaged")
	})
	t.Run("another CA than recorded", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		// certs/management replaced by hand with another CA.
		if err := s.Delete(context.Background(), management.Dir); err != nil {
			t.Fatal(err)
		}
		rec, _ := management.ReadCARecord(context.Background(), s)
		other := newStore(t)
		initCA(t, other)
		for _, f := range []string{management.CACertFile, management.CAKeyFile, management.ServerCertFile, management.ServerKeyFile} {
			b, err := other.Read(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s, f, b, state.SecretMode)
		}
		c := run(input(s), checkCA)
		want(t, c, IDCA, Warn, "is not the CA "+rec.FingerprintSHA256)
		wantHint(t, c, "restore certs/management")
	})
	t.Run("near its end", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		in := input(s)
		in.Now = now0.Add(pki.CAValidity - 2*365*day - day)
		want(t, run(in, checkCA), IDCA, OK, "valid until")
		in.Now = now0.Add(pki.CAValidity - 2*365*day + day)
		c := run(in, checkCA)
		want(t, c, IDCA, Warn, "expires on", "in less than two years")
		wantHint(t, c, "rotate now: p2ptls ca rotate start")
		in.Now = now0.Add(pki.CAValidity + day)
		want(t, run(in, checkCA), IDCA, Fail, "expired")
	})
}

func TestServerCertificate(t *testing.T) {
	t.Run("issued by the CA", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		want(t, run(input(s), checkServerCertificate), IDServerCertificate, OK, "issued by the management CA")
	})
	t.Run("from another CA", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		writeServer(t, s, mustServer(t, mustCA(t), 90*day, "localhost"))
		c := run(input(s), checkServerCertificate)
		want(t, c, IDServerCertificate, Fail, "not issued by the management CA")
		wantHint(t, c, "ca renew-server")
	})
	t.Run("expired and due", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		in := input(s)
		in.Now = now0.Add(300 * day)
		want(t, run(in, checkServerCertificate), IDServerCertificate, Warn, "due for renewal")
		in.Now = now0.Add(400 * day)
		want(t, run(in, checkServerCertificate), IDServerCertificate, Fail, "expired")
	})
}

// writeServer puts kp in place of the auto server certificate.
func writeServer(t *testing.T, s *state.Dir, kp *pki.KeyPair) {
	t.Helper()
	mustWrite(t, s, management.ServerKeyFile, kp.KeyPEM, state.SecretMode)
	mustWrite(t, s, management.ServerCertFile, kp.CertPEM, state.PublicMode)
}

// TestChain: the chain management serves verifies with what it publishes
// for agents, or every agent refuses it.
func TestChain(t *testing.T) {
	t.Run("auto: from the CA", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		_, ca, _ := management.CACertificate(context.Background(), s)
		want(t, run(input(s), checkChain), IDChain, OK, "verifies with the published CA "+pki.Fingerprint(ca))
	})
	t.Run("auto: no server certificate yet", func(t *testing.T) {
		want(t, run(input(newStore(t)), checkChain), IDChain, OK, "no management server certificate yet")
	})
	t.Run("auto: from another CA", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		writeServer(t, s, mustServer(t, mustCA(t), 90*day, "localhost"))
		c := run(input(s), checkChain)
		want(t, c, IDChain, Fail, "does not verify with the CA management publishes", "every agent refuses it")
		wantHint(t, c, "ca renew-server", "ca rotate status")
	})
	// A rotation's switch done with the current CA's path length of 0:
	// no client follows the cross-certificate, and doctor says so.
	t.Run("auto: through a cross-certificate the CA may not sign", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		// A CA from before rotation (path length 0), as pki.NewCA makes.
		cur := mustCA(t)
		for name, b := range map[string][]byte{management.CACertFile: cur.CertPEM, management.CAKeyFile: cur.KeyPEM} {
			if err := s.Write(context.Background(), name, b, state.SecretMode); err != nil {
				t.Fatal(err)
			}
		}
		next := mustCA(t)
		tmpl := *next.Cert
		cross, err := x509.CreateCertificate(rand.Reader, &tmpl, cur.Cert, next.Cert.PublicKey, cur.Key)
		if err != nil {
			t.Fatal(err)
		}
		kp := mustServer(t, next, 90*day, "localhost")
		kp.CertPEM = append(kp.CertPEM, pki.EncodeCert(cross)...)
		writeServer(t, s, kp)
		want(t, run(input(s), checkChain), IDChain, Fail, "path length")
	})
	t.Run("auto: an expired certificate is another check's", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		in := input(s)
		in.Now = now0.Add(500 * day)
		want(t, run(in, checkChain), IDChain, OK, "verifies")
	})
	ca := mustCA(t)
	leaf := mustServer(t, ca, 90*day, "mgmt.example.com")
	for _, tc := range []struct {
		desc   string
		chain  []byte
		status Status
		msg    string
	}{
		{"provided: leaf and its CA", append(append([]byte{}, leaf.CertPEM...), ca.CertPEM...), OK, "verifies with the published CA " + pki.Fingerprint(ca.Cert)},
		{"provided: leaf alone", leaf.CertPEM, OK, "system roots"},
		{"provided: leaf and another CA", append(append([]byte{}, leaf.CertPEM...), mustCA(t).CertPEM...), Fail, "does not verify"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := input(newStore(t))
			cf, kf := writeFiles(t, tc.chain, leaf.KeyPEM)
			in.Settings = management.Settings{Mode: "provided", CertFile: cf, KeyFile: kf}
			c := run(in, checkChain)
			want(t, c, IDChain, tc.status, tc.msg)
			if tc.status == Fail {
				wantHint(t, c, "leaf first, then its intermediates")
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		in := input(newStore(t))
		in.Settings = management.Settings{Mode: "off", AllowInsecureHTTP: true}
		want(t, run(in, checkChain), IDChain, OK, "mode off")
	})
}

func TestCABackup(t *testing.T) {
	backupNow := func(t *testing.T, s *state.Dir) {
		t.Helper()
		if _, err := backup.Create(context.Background(), s, &bytes.Buffer{}, backup.CreateOptions{Now: now0}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("never backed up", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		c := run(input(s), checkCABackup)
		want(t, c, IDCABackup, Warn, "no backup")
		wantHint(t, c, "p2ptls backup --out")
	})
	t.Run("backup holds the current CA", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		backupNow(t, s)
		want(t, run(input(s), checkCABackup), IDCABackup, OK, "holds the current management CA")
	})
	t.Run("backup holds another CA", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		backupNow(t, s)
		// The CA was replaced after the backup (by hand, record and all:
		// p2ptls never does).
		for _, name := range []string{management.Dir, management.CARecordFile} {
			if err := s.Delete(context.Background(), name); err != nil {
				t.Fatal(err)
			}
		}
		initCA(t, s)
		c := run(input(s), checkCABackup)
		want(t, c, IDCABackup, Warn, "not the current", "agents that trust the current CA break")
		wantHint(t, c, "backup")
	})
	t.Run("the CA is gone but the backup has it", func(t *testing.T) {
		s := newStore(t)
		initCA(t, s)
		backupNow(t, s)
		if err := s.Delete(context.Background(), management.Dir); err != nil {
			t.Fatal(err)
		}
		c := run(input(s), checkCABackup)
		want(t, c, IDCABackup, Fail, "no management CA", "which agents trust")
		wantHint(t, c, "restore")
	})
}

func TestNetwork(t *testing.T) {
	s := newStore(t)
	initCA(t, s, "192.0.2.10")
	_, ca, err := management.CACertificate(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("not asked for", func(t *testing.T) {
		want(t, run(input(s), checkNetwork), IDNetwork, OK, "--network")
	})
	for _, tc := range []struct {
		desc   string
		err    error
		status Status
		msg    string
	}{
		{"verifies", nil, OK, "verified it with the published management CA " + pki.Fingerprint(ca)},
		{"agent check's diagnosis", fault.Failf("add it to MANAGEMENT_TLS_EXTRA_HOSTS", "the management certificate does not cover 192.0.2.10"), Fail, "does not cover 192.0.2.10"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			in := input(s)
			in.Network = true
			var gotURL string
			in.Check = func(_ context.Context, url string, trust agent.Trust) error {
				gotURL = url
				if len(trust.CAs) != 1 || !trust.CAs[0].Equal(ca) || trust.System {
					return errors.New("trust is not the management CA")
				}
				return tc.err
			}
			c := run(in, checkNetwork)
			want(t, c, IDNetwork, tc.status, tc.msg)
			if gotURL != publicURL {
				t.Errorf("checked %q, want %q", gotURL, publicURL)
			}
			if tc.err != nil {
				wantHint(t, c, "MANAGEMENT_TLS_EXTRA_HOSTS")
			}
		})
	}
	t.Run("no URL", func(t *testing.T) {
		in := input(s)
		in.Network = true
		in.Settings.PublicURL = ""
		in.Check = func(context.Context, string, agent.Trust) error { t.Error("checked without a URL"); return nil }
		want(t, run(in, checkNetwork), IDNetwork, Warn, "not set")
	})
}

// TestServerCertificateDuringARotation: at every stage of a rotation the
// server certificate is from the CA the stage names, and doctor's server
// certificate and chain checks pass (once switched, the next CA issued it).
func TestServerCertificateDuringARotation(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	initCA(t, s)
	in := input(s)
	steps := []struct {
		stage string
		do    func() error
	}{
		{"started", func() error {
			_, err := management.StartRotation(ctx, s, in.Settings, management.DefaultOverlap, now0)
			return err
		}},
		{"switched", func() error { _, err := management.SwitchRotation(ctx, s, in.Settings, false, now0); return err }},
		{"finished", func() error { _, err := management.FinishRotation(ctx, s, in.Settings, false, now0); return err }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.stage, err)
		}
		if c := run(in, checkServerCertificate); c.Status != OK {
			t.Errorf("%s: server certificate check %s: %s", st.stage, c.Status, c.Message)
		}
		if c := run(in, checkChain); c.Status != OK {
			t.Errorf("%s: chain check %s: %s", st.stage, c.Status, c.Message)
		}
	}
}
