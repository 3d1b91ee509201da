package agent_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// newCA returns a management CA valid from now on; TLS verification runs on
// the real clock, so the fixtures do too.
func newCA(t *testing.T, name string) *pki.KeyPair {
	t.Helper()
	ca, err := pki.NewCA(name, time.Now(), pki.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue returns a server certificate from ca for hosts, valid for a day from
// from.
func issue(t *testing.T, ca *pki.KeyPair, from time.Time, hosts ...string) *pki.KeyPair {
	t.Helper()
	kp, err := pki.IssueServer(ca, pki.ParseNames(hosts), from, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// management answers /healthz with status and serves caPEM at /ca.crt, both
// below prefix, as the management API does.
func management(prefix string, status int, caPEM []byte) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix+"/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET "+prefix+"/ca.crt", func(w http.ResponseWriter, _ *http.Request) {
		w.Write(caPEM)
	})
	return mux
}

// serveTLS starts h on 127.0.0.1 over TLS with certPEM (leaf first, maybe a
// chain) and keyPEM.
func serveTLS(t *testing.T, certPEM, keyPEM []byte, h http.Handler) *httptest.Server {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point here
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// closedPort returns a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// wantFault checks err's kind and that its message and hint contain the
// given phrases.
func wantFault(t *testing.T, err error, kind fault.Kind, msg, hint []string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	t.Logf("error: %v\nhint: %s", err, fault.HintOf(err))
	if got := fault.KindOf(err); got != kind {
		t.Errorf("kind = %v, want %v (error: %v)", got, kind, err)
	}
	for _, s := range msg {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
	for _, s := range hint {
		if h := fault.HintOf(err); !strings.Contains(h, s) {
			t.Errorf("hint %q does not contain %q", h, s)
		}
	}
}

func TestLoadCA(t *testing.T) {
	ca := newCA(t, "p2ptls test CA")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.crt", ca.CertPEM)
	keyFile := write("ca.key", ca.KeyPEM)
	b64 := base64.StdEncoding.EncodeToString(ca.CertPEM)
	var wrapped strings.Builder // as 'base64' prints it by default
	for s := b64; s != ""; s = s[min(76, len(s)):] {
		wrapped.WriteString(s[:min(76, len(s))] + "\n")
	}

	accepted := []struct {
		desc, file, b64 string
	}{
		{"PEM file", caFile, ""},
		{"base64", "", b64},
		{"base64 wrapped over lines", "", wrapped.String()},
		{"blank base64 with a file", caFile, " \n"},
	}
	for _, tc := range accepted {
		t.Run(tc.desc, func(t *testing.T) {
			pool, certs, err := agent.LoadCA(tc.file, tc.b64)
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			if len(certs) != 1 || !certs[0].Equal(ca.Cert) {
				t.Fatalf("LoadCA returned %d certificates, want the CA alone", len(certs))
			}
			leaf := issue(t, ca, time.Now(), "127.0.0.1")
			if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
				t.Errorf("the pool does not verify a certificate from the CA: %v", err)
			}
		})
	}

	refused := []struct {
		desc, file, b64 string
		msg, hint       []string
	}{
		{"neither", "", "", []string{"no management CA given", "MANAGEMENT_CA_FILE", "--ca-file", "MANAGEMENT_CA_PEM_BASE64", "--ca-pem-base64"},
			[]string{"p2ptls agent bootstrap", "p2ptls ca export"}},
		{"both", caFile, b64, []string{"both", "MANAGEMENT_CA_FILE", "--ca-file", "MANAGEMENT_CA_PEM_BASE64", "--ca-pem-base64"}, []string{"one of the two"}},
		{"missing file", filepath.Join(dir, "nope.crt"), "", []string{"the CA file (MANAGEMENT_CA_FILE, --ca-file): cannot read", "nope.crt", "no such file"}, []string{"path"}},
		{"file holds a key only", keyFile, "", []string{"holds no usable certificate", "ca.key"}, []string{"p2ptls ca export"}},
		{"bad base64", "", "not*base64", []string{"MANAGEMENT_CA_PEM_BASE64", "not valid base64"}, []string{"base64 -w0"}},
		{"PEM pasted as base64", "", string(ca.CertPEM), []string{"holds PEM text, not the base64"}, []string{"MANAGEMENT_CA_FILE"}},
		{"base64 of something else", "", base64.StdEncoding.EncodeToString([]byte("hello")), []string{"MANAGEMENT_CA_PEM_BASE64", "holds no usable certificate"}, []string{"p2ptls agent bootstrap"}},
	}
	// Bounded, regular-only: a FIFO or a device as the CA file is refused
	// at once, not read forever.
	for _, h := range statetest.HostilePaths(t, t.TempDir()) {
		refused = append(refused, struct {
			desc, file, b64 string
			msg, hint       []string
		}{"file is " + h.Desc, h.Path, "", []string{"the CA file (MANAGEMENT_CA_FILE, --ca-file): cannot read " + h.Path + ": " + h.Says}, []string{"MANAGEMENT_CA_PEM_BASE64"}})
	}
	for _, tc := range refused {
		t.Run("refuses "+tc.desc, func(t *testing.T) {
			var (
				pool  *x509.CertPool
				certs []*x509.Certificate
				err   error
			)
			statetest.Within(t, 5*time.Second, func() { pool, certs, err = agent.LoadCA(tc.file, tc.b64) })
			if pool != nil || certs != nil {
				t.Errorf("LoadCA returned a pool or certificates along with its error")
			}
			wantFault(t, err, fault.Invalid, tc.msg, tc.hint)
		})
	}
}

func TestEnvLines(t *testing.T) {
	pemBytes := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	b64 := base64.StdEncoding.EncodeToString(pemBytes)
	tests := []struct {
		desc, url string
		want      []string
	}{
		{"with URL", "https://mgmt.example.com:8443", []string{"MANAGEMENT_PUBLIC_URL=https://mgmt.example.com:8443", "MANAGEMENT_CA_PEM_BASE64=" + b64}},
		{"without URL", "", []string{"MANAGEMENT_CA_PEM_BASE64=" + b64}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got := agent.EnvLines(tc.url, pemBytes)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("EnvLines = %q, want %q", got, tc.want)
			}
		})
	}
}
