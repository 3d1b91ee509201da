package agent_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

func TestBootstrap(t *testing.T) {
	ca := newCA(t, "p2ptls test CA")
	other := newCA(t, "some other CA")
	now := time.Now()
	leaf := issue(t, ca, now, "127.0.0.1")
	srv := serveTLS(t, leaf.CertPEM, leaf.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	fp := pki.Fingerprint(ca.Cert)
	plainHex := strings.ReplaceAll(fp, ":", "")

	spellings := []struct{ desc, fingerprint string }{
		{"as 'p2ptls ca show' prints it", fp},
		{"lower-case", strings.ToLower(fp)},
		{"plain hex", plainHex},
		{"with sha256: prefix", "sha256:" + strings.ToLower(plainHex)},
	}
	for _, tc := range spellings {
		t.Run("accepts fingerprint "+tc.desc, func(t *testing.T) {
			caPEM, gotFP, err := agent.Bootstrap(context.Background(), srv.URL, tc.fingerprint)
			if err != nil {
				t.Fatalf("Bootstrap: %v (hint: %s)", err, fault.HintOf(err))
			}
			if !bytes.Equal(caPEM, ca.CertPEM) || gotFP != fp {
				t.Fatalf("Bootstrap = %q, %s; want the CA PEM and %s", caPEM, gotFP, fp)
			}
		})
	}

	t.Run("bootstrapped CA passes Check through the environment lines", func(t *testing.T) {
		caPEM, _, err := agent.Bootstrap(context.Background(), srv.URL+"/", fp)
		if err != nil {
			t.Fatal(err)
		}
		lines := agent.EnvLines(srv.URL, caPEM)
		_, cas, err := agent.LoadCA("", strings.TrimPrefix(lines[1], "MANAGEMENT_CA_PEM_BASE64="))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.Check(context.Background(), strings.TrimPrefix(lines[0], "MANAGEMENT_PUBLIC_URL="), agent.Trust{CAs: cas}); err != nil {
			t.Fatalf("Check: %v", err)
		}
	})

	// The server hands out a CA it does not hold a certificate from, as a
	// machine in the middle serving the real CA would.
	foreign := issue(t, other, now, "127.0.0.1")
	impostor := serveTLS(t, foreign.CertPEM, foreign.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	otherHost := issue(t, ca, now, "other.example")
	noIPSAN := serveTLS(t, otherHost.CertPEM, otherHost.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	garbage := serveTLS(t, leaf.CertPEM, leaf.KeyPEM, management("", http.StatusOK, []byte("<html>hello</html>")))
	servesLeaf := serveTLS(t, leaf.CertPEM, leaf.KeyPEM, management("", http.StatusOK, leaf.CertPEM))
	huge := serveTLS(t, leaf.CertPEM, leaf.KeyPEM, management("", http.StatusOK, append(bytes.Clone(ca.CertPEM), make([]byte, 1<<20)...)))

	refused := []struct {
		desc, url, fingerprint string
		kind                   fault.Kind
		msg, hint              []string
	}{
		{"wrong fingerprint", srv.URL, pki.Fingerprint(other.Cert), fault.Failure,
			[]string{"the CA served by " + srv.URL + " has fingerprint " + fp + ", not the expected " + pki.Fingerprint(other.Cert)},
			[]string{"p2ptls ca show", "do not trust this server"}},
		{"TLS certificate not from the served CA", impostor.URL, fp, fault.Failure,
			[]string{"the TLS certificate of " + impostor.URL, `issued by "some other CA"`, "does not chain to the CA it serves"},
			[]string{"do not trust this server"}},
		{"TLS certificate without the host", noIPSAN.URL, fp, fault.Failure,
			[]string{"does not cover 127.0.0.1 (it covers other.example)"}, []string{"MANAGEMENT_TLS_EXTRA_HOSTS"}},
		{"garbage at /ca.crt", garbage.URL, fp, fault.Failure,
			[]string{garbage.URL + "/ca.crt did not serve a PEM certificate"}, []string{"MANAGEMENT_PUBLIC_URL"}},
		{"a server certificate at /ca.crt", servesLeaf.URL, pki.Fingerprint(leaf.Cert), fault.Failure,
			[]string{"served by " + servesLeaf.URL + "/ca.crt is not a CA certificate"}, []string{"do not trust this server"}},
		{"oversized /ca.crt", huge.URL, fp, fault.Failure,
			[]string{"answered more than 1048576 bytes"}, nil},
		{"nothing listening", "https://" + closedPort(t), fp, fault.Failure,
			[]string{"is not reachable from here"}, nil},
		{"malformed fingerprint", srv.URL, "AB:CD", fault.Invalid,
			[]string{"--fingerprint: invalid SHA-256 fingerprint"}, []string{"p2ptls ca show"}},
		{"http URL", strings.Replace(srv.URL, "https://", "http://", 1), fp, fault.Invalid,
			[]string{"does not start with https://"}, nil},
	}
	for _, tc := range refused {
		t.Run("refuses "+tc.desc, func(t *testing.T) {
			caPEM, gotFP, err := agent.Bootstrap(context.Background(), tc.url, tc.fingerprint)
			if caPEM != nil || gotFP != "" {
				t.Errorf("Bootstrap returned a CA along with its error")
			}
			wantFault(t, err, tc.kind, tc.msg, tc.hint)
		})
	}
}
