package main

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/pki"
)

// setACMESettings adds lines to the [acme] table of the state's
// p2ptls.toml, as an operator's hand edit would.
func setACMESettings(t *testing.T, dir string, lines ...string) {
	t.Helper()
	file := filepath.Join(dir, "p2ptls.toml")
	b := string(mustRead(t, file))
	if !strings.Contains(b, "\n[acme]\n") {
		t.Fatalf("%s has no [acme] table:\n%s", file, b)
	}
	b = strings.Replace(b, "\n[acme]\n", "\n[acme]\n"+strings.Join(lines, "\n")+"\n", 1)
	if err := os.WriteFile(file, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tomlString quotes s as a TOML literal string.
func tomlString(t *testing.T, s string) string {
	t.Helper()
	if strings.ContainsAny(s, "'\n") {
		t.Fatalf("%q does not fit a TOML literal string", s)
	}
	return "'" + s + "'"
}

// putDueCertificate replaces mapping id's certificate with one for hosts
// that has 10 minutes of a lifetime of almost three hours left (less than
// half: due), from another CA than the ACME server's, as a certificate
// left from before a move to ACME (or a long outage) would be. It returns
// the certificate.
// A self-signed one (selfSigned) names no issuer key at all.
func putDueCertificate(t *testing.T, dir, id string, selfSigned bool, hosts ...string) *x509.Certificate {
	t.Helper()
	made, lifetime := time.Now().Add(-100*time.Minute), 110*time.Minute
	var kp *pki.KeyPair
	if selfSigned {
		var err error
		if kp, err = pki.SelfSigned(pki.ParseNames(hosts), made, lifetime); err != nil {
			t.Fatal(err)
		}
	} else {
		ca, err := pki.NewCA("another CA", time.Now().Add(-24*time.Hour), 30*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if kp, err = pki.IssueServer(ca, pki.ParseNames(hosts), made, lifetime); err != nil {
			t.Fatal(err)
		}
	}
	if (len(kp.Cert.AuthorityKeyId) == 0) != selfSigned {
		t.Fatalf("the test certificate's issuer key id is %x", kp.Cert.AuthorityKeyId)
	}
	if !pki.NeedsRenewal(kp.Cert, time.Now()) || time.Until(kp.Cert.NotAfter) < 5*time.Minute {
		t.Fatalf("the test certificate (%s to %s) is not due, or about to expire", kp.Cert.NotBefore, kp.Cert.NotAfter)
	}
	certDir := filepath.Join(dir, "certs", "public", id)
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "key.pem"), kp.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "cert.pem"), kp.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return kp.Cert
}

// TestServeRenewsDueCertificateAtStart: serve renews certificates that
// are due when it starts, within seconds (it first looked six hours after
// starting), and serves the new ones; the deploy hook of p2ptls.toml runs
// for each with the documented environment, and a p2ptls command that
// changes the state, run from the hook, neither deadlocks nor fails.
// Neither certificate is the ACME server's: one from another CA, which
// the order named as replaced and the server refused (every attempt
// failed, "no known issuer"), and a self-signed one, whose missing
// issuer key id made a malformed ARI id.
func TestServeRenewsDueCertificateAtStart(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	const host, host2 = "due.example.test", "self.example.test"
	a.must(t, "mapping", "add", "--listener", "web", "--host", host, "--acme", "--challenge", "tls-alpn-01", "--id", "due")
	a.must(t, "mapping", "add", "--listener", "web", "--host", host2, "--acme", "--challenge", "http-01", "--id", "self")
	old := putDueCertificate(t, a.dir, "due", false, host)
	old2 := putDueCertificate(t, a.dir, "self", true, host2)
	envFile := filepath.Join(t.TempDir(), "hook.env")
	hook := fmt.Sprintf(`echo "$P2PTLS_MAPPING_ID|$P2PTLS_HOSTS|$CONFIG_DIR|$P2PTLS_CERT_FILE" >> %s && `+
		`{ %s mapping show hooked >/dev/null 2>&1 || %s mapping add --listener web --host hooked.example.test --self-signed --id hooked; } && `+
		`%s cert list --output json > /dev/null && echo hook-output-line`, envFile, binary, binary, binary)
	setACMESettings(t, a.dir, "deploy_hook = "+tomlString(t, hook), `deploy_hook_timeout = "2m"`)

	started := time.Now()
	a.serve = startServe(t, a.env2())
	if err := serves(a.web, host, old.SerialNumber); err != nil {
		t.Logf("before the renewal: %v", err) // the renewal may already be done
	}
	for _, c := range []struct {
		id, host string
		old      *x509.Certificate
	}{{"due", host, old}, {"self", host2, old2}} {
		var renewed *x509.Certificate
		eventually(t, 90*time.Second, func() error {
			leaf, err := handshake(a.web, c.host, a.env.Roots(t))
			if err != nil {
				return fmt.Errorf("handshake: %v\n%s", err, a.serve.output())
			}
			renewed = leaf
			return nil
		})
		t.Logf("serve renewed %s %v after it started", c.id, time.Since(started).Round(time.Millisecond))
		if renewed.SerialNumber.Cmp(c.old.SerialNumber) == 0 {
			t.Fatalf("%s: the old certificate is still served", c.id)
		}
		a.verifyIssued(t, c.id, c.host)
		if m := a.mapping(t, c.id); m.Status != "valid" || m.Attempts != 0 || m.LastError != "" {
			t.Errorf("%s after the renewal: %+v", c.id, m)
		}
	}

	// The hook ran once, after the renewal, with the documented
	// environment, and its own p2ptls commands went through.
	eventually(t, 60*time.Second, func() error {
		if n := strings.Count(a.serve.output(), "deploy hook ran"); n != 2 {
			return fmt.Errorf("%d deploy hooks in the log, want 2:\n%s", n, a.serve.output())
		}
		return nil
	})
	want := fmt.Sprintf("due|%s|%s|%s\nself|%s|%s|%s", host, a.dir, a.mappingCertFile("due"), host2, a.dir, a.mappingCertFile("self"))
	if got := strings.TrimSpace(string(mustRead(t, envFile))); got != want {
		t.Errorf("the hook saw\n%s\nwant\n%s", got, want)
	}
	logs := a.serve.output()
	if !strings.Contains(logs, "hook-output-line") {
		t.Errorf("the hook's output is not in serve's log:\n%s", logs)
	}
	if strings.Contains(logs, "good-token-123456") {
		t.Errorf("a secret in serve's log:\n%s", logs)
	}
	a.mapping(t, "hooked") // the hook's mapping add was saved
	eventually(t, 30*time.Second, func() error {
		_, err := servedSerial(a.web, "hooked.example.test")
		return err
	})
}

// A renewal serve attempts and fails is counted in
// p2ptls_cert_renewal_failures_total for its mapping, and the mapping's
// p2ptls_cert_last_renewal_success drops to 0: the renewal loop reports
// each attempt to the metrics.
func TestServeCountsFailedRenewalsInMetrics(t *testing.T) {
	t.Parallel()
	a := newACMEState(t)
	const host = "fails.example.test"
	a.must(t, "mapping", "add", "--listener", "web", "--host", host, "--acme", "--challenge", "http-01", "--id", "fails")
	putDueCertificate(t, a.dir, "fails", false, host)
	a.env.StopPebble() // the CA is away: serve's renewal at start fails
	plain := freeAddr(t)
	a.serve = startServe(t, append(a.env2(), "METRICS_LISTEN="+plain))
	c := &http.Client{Timeout: 10 * time.Second}
	labels := map[string]string{"listener": "web", "mapping": "fails", "source": "acme"}
	eventually(t, 90*time.Second, func() error {
		code, fams, body := scrapeMetrics(t, c, "http://"+plain+"/metrics", "")
		if code != http.StatusOK {
			return fmt.Errorf("scrape: %d %s", code, body)
		}
		if n, ok := metricValue(fams, "p2ptls_cert_renewal_failures_total", labels); !ok || n < 1 {
			return fmt.Errorf("renewal failures %v (present %v), want at least 1\n%s", n, ok, a.serve.output())
		}
		if v, ok := metricValue(fams, "p2ptls_cert_last_renewal_success", labels); !ok || v != 0 {
			return fmt.Errorf("last renewal success %v (present %v), want 0", v, ok)
		}
		return nil
	})
}
