package agent_test

import (
	"context"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

func trusting(certs ...*x509.Certificate) agent.Trust {
	return agent.Trust{CAs: certs}
}

// silentServer accepts connections on 127.0.0.1 and never says a word.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c) // until the client gives up
				c.Close()
			}()
		}
	}()
	return "https://" + l.Addr().String()
}

func TestCheck(t *testing.T) {
	ca := newCA(t, "p2ptls test CA")
	other := newCA(t, "some other CA")
	roots := trusting(ca.Cert)
	now := time.Now()

	good := issue(t, ca, now, "mgmt.example", "127.0.0.1")
	healthy := serveTLS(t, good.CertPEM, good.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	healthyUnderPath := serveTLS(t, good.CertPEM, good.KeyPEM, management("/mgmt", http.StatusOK, ca.CertPEM))

	success := []struct{ desc, url string }{
		{"base URL", healthy.URL},
		{"base URL with trailing slash", healthy.URL + "/"},
		{"URL with a path", healthyUnderPath.URL + "/mgmt"},
		{"URL with a path and trailing slash", healthyUnderPath.URL + "/mgmt/"},
	}
	for _, tc := range success {
		t.Run(tc.desc, func(t *testing.T) {
			res, err := agent.Check(context.Background(), tc.url, roots)
			if err != nil {
				t.Fatalf("Check: %v (hint: %s)", err, fault.HintOf(err))
			}
			want := &agent.CheckResult{
				URL:           tc.url,
				ServerNames:   []string{"mgmt.example", "127.0.0.1"},
				NotAfter:      good.Cert.NotAfter,
				CAFingerprint: pki.Fingerprint(ca.Cert),
				TLSVersion:    "TLS 1.3",
			}
			if !reflect.DeepEqual(res, want) {
				t.Errorf("Check = %+v, want %+v", res, want)
			}
		})
	}

	foreign := issue(t, other, now, "127.0.0.1")
	wrongCA := serveTLS(t, foreign.CertPEM, foreign.KeyPEM, management("", http.StatusOK, other.CertPEM))
	wrongCAWithChain := serveTLS(t, append(foreign.CertPEM, other.CertPEM...), foreign.KeyPEM, management("", http.StatusOK, other.CertPEM))
	otherHost := issue(t, ca, now, "other.example")
	noIPSAN := serveTLS(t, otherHost.CertPEM, otherHost.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	ipOnly := issue(t, ca, now, "127.0.0.1")
	noLocalhost := serveTLS(t, ipOnly.CertPEM, ipOnly.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	old := issue(t, ca, now.Add(-48*time.Hour), "127.0.0.1")
	expired := serveTLS(t, old.CertPEM, old.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	early := issue(t, ca, now.Add(48*time.Hour), "127.0.0.1")
	notYetValid := serveTLS(t, early.CertPEM, early.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	plain := httptest.NewUnstartedServer(management("", http.StatusOK, ca.CertPEM))
	plain.Config.ErrorLog = log.New(io.Discard, "", 0)
	plain.Start()
	t.Cleanup(plain.Close)
	public := newCA(t, "some public CA")
	publicLeaf := issue(t, public, now, "www.example.org")
	publicListener := serveTLS(t, publicLeaf.CertPEM, publicLeaf.KeyPEM, http.NotFoundHandler())
	otherHostLeaf := issue(t, other, now, "mgmt.other.example")
	otherInstall := serveTLS(t, otherHostLeaf.CertPEM, otherHostLeaf.KeyPEM, management("", http.StatusOK, other.CertPEM))
	otherOld := issue(t, other, now.Add(-48*time.Hour), "127.0.0.1")
	otherExpired := serveTLS(t, otherOld.CertPEM, otherOld.KeyPEM, management("", http.StatusOK, other.CertPEM))
	unhealthy := serveTLS(t, good.CertPEM, good.KeyPEM, management("", http.StatusInternalServerError, ca.CertPEM))

	failures := []struct {
		desc      string
		url       string
		roots     agent.Trust
		timeout   time.Duration
		kind      fault.Kind
		msg, hint []string
	}{
		{"server certificate from another installation's CA", wrongCA.URL, roots, 0, fault.Failure,
			[]string{"the server at " + wrongCA.URL + " presents a certificate", `issued by "some other CA"`, "that the given CA " + pki.Fingerprint(ca.Cert) + " did not issue",
				"it is a p2ptls management server whose CA is " + pki.Fingerprint(other.Cert)},
			[]string{"wrong or lost CA", "'p2ptls ca show' on the management host prints " + pki.Fingerprint(other.Cert),
				"p2ptls agent bootstrap --url " + wrongCA.URL + " --fingerprint " + pki.Fingerprint(other.Cert) + " --out FILE", "p2ptls agent env"}},
		{"server certificate from another CA that the server sends along", wrongCAWithChain.URL, roots, 0, fault.Failure,
			[]string{`issued by "some other CA", whose fingerprint is ` + pki.Fingerprint(other.Cert), "did not issue"},
			[]string{"wrong or lost CA"}},
		// Go's own verification checks the host first: these would get the
		// MANAGEMENT_TLS_EXTRA_HOSTS hint, which cannot mend them.
		{"public listener: another CA, another host, no /ca.crt", publicListener.URL, roots, 0, fault.Failure,
			[]string{`issued by "some public CA"`, "that the given CA " + pki.Fingerprint(ca.Cert) + " did not issue", "publishes no CA at /ca.crt",
				"does not point at the p2ptls management listener"},
			[]string{"MANAGEMENT_LISTEN", "public HTTPS listener"}},
		{"another installation: its CA, another host", otherInstall.URL, roots, 0, fault.Failure,
			[]string{"did not issue", "whose CA is " + pki.Fingerprint(other.Cert)}, []string{"wrong or lost CA"}},
		{"expired certificate from another CA", otherExpired.URL, roots, 0, fault.Failure,
			[]string{"did not issue", "whose CA is " + pki.Fingerprint(other.Cert)}, []string{"wrong or lost CA"}},
		{"no CA trusts nothing", healthy.URL, agent.Trust{}, 0, fault.Failure,
			[]string{`issued by "p2ptls test CA"`, "that the given CAs (none) did not issue", "whose CA is " + pki.Fingerprint(ca.Cert)}, []string{"p2ptls agent bootstrap"}},
		{"certificate without the IP", noIPSAN.URL, roots, 0, fault.Failure,
			[]string{"does not cover 127.0.0.1 (it covers other.example)"},
			[]string{"add 127.0.0.1 to MANAGEMENT_TLS_EXTRA_HOSTS", "p2ptls ca renew-server"}},
		{"certificate without localhost", strings.Replace(noLocalhost.URL, "127.0.0.1", "localhost", 1), roots, 0, fault.Failure,
			[]string{"does not cover localhost (it covers 127.0.0.1)"},
			[]string{"add localhost to MANAGEMENT_TLS_EXTRA_HOSTS", "p2ptls ca renew-server"}},
		{"expired certificate", expired.URL, roots, 0, fault.Failure,
			[]string{"expired at " + old.Cert.NotAfter.UTC().Format(time.RFC3339), "127.0.0.1"},
			[]string{"p2ptls ca renew-server"}},
		{"certificate not valid yet", notYetValid.URL, roots, 0, fault.Failure,
			[]string{"is not valid before " + early.Cert.NotBefore.UTC().Format(time.RFC3339), "clock says"},
			[]string{"clocks", "p2ptls ca renew-server"}},
		{"nothing listening", "https://" + closedPort(t), roots, 0, fault.Failure,
			[]string{"MANAGEMENT_PUBLIC_URL https://127.0.0.1:", "is not reachable from here: connection refused"},
			[]string{"serve is running", "firewalls"}},
		{"plain HTTP on an https URL", strings.Replace(plain.URL, "http://", "https://", 1), roots, 0, fault.Failure,
			[]string{"answers plain HTTP, not TLS", "management TLS is off there", "port is wrong"},
			[]string{"MANAGEMENT_LISTEN", "not off"}},
		{"server that never answers", silentServer(t), roots, 200 * time.Millisecond, fault.Failure,
			[]string{"accepted the connection but did not complete a TLS handshake in time"},
			[]string{"MANAGEMENT_LISTEN"}},
		{"unhealthy server", unhealthy.URL, roots, 0, fault.Failure,
			[]string{"GET " + unhealthy.URL + "/healthz answered \"500 Internal Server Error\""},
			[]string{"serve logs"}},
		{"wrong path", healthy.URL + "/api", roots, 0, fault.Failure,
			[]string{"GET " + healthy.URL + "/api/healthz answered \"404 Not Found\""},
			[]string{"MANAGEMENT_PUBLIC_URL"}},
		{"empty URL", "", roots, 0, fault.Invalid,
			[]string{"MANAGEMENT_PUBLIC_URL (--url) is empty"}, []string{"https://"}},
		{"http URL", "http://127.0.0.1:8443", roots, 0, fault.Invalid,
			[]string{"MANAGEMENT_PUBLIC_URL (--url)", "does not start with https://"}, []string{"MANAGEMENT_PUBLIC_URL"}},
		{"URL without scheme", "mgmt.example.com:8443", roots, 0, fault.Invalid,
			[]string{"MANAGEMENT_PUBLIC_URL (--url)", "does not start with https://"}, []string{"MANAGEMENT_PUBLIC_URL"}},
		{"URL without host", "https:///healthz", roots, 0, fault.Invalid,
			[]string{"MANAGEMENT_PUBLIC_URL (--url)", "names no host"}, []string{"MANAGEMENT_PUBLIC_URL"}},
		{"malformed URL", "https://127.0.0.1:port", roots, 0, fault.Invalid,
			[]string{"MANAGEMENT_PUBLIC_URL (--url)", "is not a valid URL", "invalid port"}, []string{"MANAGEMENT_PUBLIC_URL"}},
	}
	for _, tc := range failures {
		t.Run("diagnoses "+tc.desc, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			res, err := agent.Check(ctx, tc.url, tc.roots)
			if res != nil {
				t.Errorf("Check returned a result along with its error: %+v", res)
			}
			wantFault(t, err, tc.kind, tc.msg, tc.hint)
		})
	}
}

// TestChecker: the bounded form doctor calls passes Check's verdict on and
// gives up on a silent server once its timeout is over, whatever the
// caller's context allows.
func TestChecker(t *testing.T) {
	ca := newCA(t, "p2ptls test CA")
	other := newCA(t, "some other CA")
	good := issue(t, ca, time.Now(), "127.0.0.1")
	healthy := serveTLS(t, good.CertPEM, good.KeyPEM, management("", http.StatusOK, ca.CertPEM))
	for _, tc := range []struct {
		desc    string
		url     string
		roots   agent.Trust
		timeout time.Duration
		msg     string // "" for success
	}{
		// A generous bound where the check must succeed: CI is slow.
		{"healthy", healthy.URL, trusting(ca.Cert), 20 * time.Second, ""},
		{"signed by another CA", healthy.URL, trusting(other.Cert), 20 * time.Second, "did not issue"},
		{"never answers", silentServer(t), trusting(ca.Cert), 300 * time.Millisecond, "did not complete a TLS handshake in time"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- agent.Checker(tc.timeout)(context.Background(), tc.url, tc.roots) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("Checker did not return: its timeout was not applied")
			}
			switch {
			case tc.msg == "" && err != nil:
				t.Fatalf("Checker: %v", err)
			case tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)):
				t.Fatalf("Checker: %v, want an error with %q", err, tc.msg)
			}
		})
	}
}
