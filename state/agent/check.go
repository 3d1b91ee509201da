package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

const (
	// timeout bounds one exchange with management, dial to last body byte.
	timeout = 10 * time.Second

	// maxBody is far more than a CA certificate or "ok" needs, and keeps a
	// wrong server from making us read without end.
	maxBody = 1 << 20

	urlHint  = "set MANAGEMENT_PUBLIC_URL (or --url) to the https:// address agents reach management at, e.g. https://mgmt.example.com:8443"
	portHint = "check that MANAGEMENT_PUBLIC_URL names the p2ptls management listener (MANAGEMENT_LISTEN on the management host, default :8443)"
)

// CheckResult describes a verified connection to management.
type CheckResult struct {
	// URL is the management base URL that was checked.
	URL string `json:"url"`
	// ServerNames are the DNS names and IP addresses the server certificate
	// covers.
	ServerNames []string `json:"server_names"`
	// NotAfter is when the server certificate expires.
	NotAfter time.Time `json:"not_after"`
	// CAFingerprint is the SHA-256 fingerprint of the trusted CA that
	// verified the server certificate.
	CAFingerprint string `json:"ca_fingerprint"`
	// TLSVersion is the negotiated version, e.g. "TLS 1.3".
	TLSVersion string `json:"tls_version"`
}

// Check connects to the management server at rawURL as an agent does,
// trusting only roots, and asks it GET /healthz. A failure says which common
// mistake it is: a URL this machine cannot reach, a CA that did not sign the
// server certificate, a certificate lacking the URL's host, an expired
// certificate, management TLS off or the wrong port, or an unhealthy server.
// A nil roots trusts nothing.
func Check(ctx context.Context, rawURL string, roots *x509.CertPool) (*CheckResult, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	// A nil pool would make crypto/tls trust the system roots instead.
	if roots == nil {
		roots = x509.NewCertPool()
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	state, _, err := get(ctx, u, cfg, "healthz")
	if err != nil {
		return nil, err
	}
	chain := state.VerifiedChains[0]
	return &CheckResult{
		URL:           u.String(),
		ServerNames:   certNames(chain[0]),
		NotAfter:      chain[0].NotAfter,
		CAFingerprint: pki.Fingerprint(chain[len(chain)-1]),
		TLSVersion:    tls.VersionName(state.Version),
	}, nil
}

// Checker is Check bounded by timeout, returning only its error: the form
// doctor's network check takes, the same from the CLI and from the API.
func Checker(timeout time.Duration) func(ctx context.Context, rawURL string, roots *x509.CertPool) error {
	return func(ctx context.Context, rawURL string, roots *x509.CertPool) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := Check(ctx, rawURL, roots)
		return err
	}
}

// parseURL accepts an https:// URL with a host, the only kind an agent can
// verify management at.
func parseURL(raw string) (*url.URL, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, fault.Invalidf(urlHint, "no management URL given: MANAGEMENT_PUBLIC_URL (--url) is empty")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fault.Invalidf(urlHint, "MANAGEMENT_PUBLIC_URL (--url) %q is not a valid URL: %v", raw, errors.Unwrap(err))
	case u.Scheme != "https":
		return nil, fault.Invalidf(urlHint, "MANAGEMENT_PUBLIC_URL (--url) %q does not start with https://, and agents reach management over TLS only", raw)
	case u.Hostname() == "":
		return nil, fault.Invalidf(urlHint, "MANAGEMENT_PUBLIC_URL (--url) %q names no host", raw)
	}
	return u, nil
}

// get fetches path below base over a new TLS connection made with cfg and
// returns the connection state and the body of a 200 answer. It dials, shakes
// hands and speaks HTTP one step after the other, rather than through
// http.Client, so that the step a failure happened in is known: that is what
// tells an unreachable server from a TLS mistake or an HTTP one. No proxy is
// used: the question is whether this machine reaches management directly.
func get(ctx context.Context, base *url.URL, cfg *tls.Config, path string) (tls.ConnectionState, []byte, error) {
	var none tls.ConnectionState
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	port := base.Port()
	if port == "" {
		port = "443"
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", net.JoinHostPort(base.Hostname(), port))
	if err != nil {
		return none, nil, unreachable(base, err)
	}
	defer raw.Close()
	// Expiring the deadline interrupts the handshake and the HTTP exchange
	// alike, whether the timeout ran out or the caller cancelled.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()

	conn := tls.Client(raw, cfg)
	if err := conn.Handshake(); err != nil {
		return none, nil, handshakeFailure(base, err)
	}

	endpoint := below(base, path)
	req := &http.Request{Method: http.MethodGet, URL: endpoint, Header: make(http.Header), Close: true}
	if err := req.Write(conn); err != nil {
		return none, nil, httpFailure(endpoint, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return none, nil, httpFailure(endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return none, nil, fault.Failf(portHint+", and look at the serve logs there",
			"GET %s answered %q, not 200 OK", endpoint, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return none, nil, httpFailure(endpoint, err)
	}
	if len(body) > maxBody {
		return none, nil, fault.Failf(portHint, "GET %s answered more than %d bytes, which is not what p2ptls serves there", endpoint, maxBody)
	}
	return conn.ConnectionState(), body, nil
}

// below returns the URL of path below base, whether base has a path and a
// trailing slash or not. A base without a path gets "/" first, since
// JoinPath keeps an empty path relative ("healthz"), which no server accepts.
func below(base *url.URL, path string) *url.URL {
	u := *base
	if u.Path == "" {
		u.Path = "/"
	}
	return u.JoinPath(path)
}

// unreachable is the failure of a dial: the URL names a host or port this
// machine cannot reach.
func unreachable(base *url.URL, err error) error {
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		callErr *os.SyscallError
		cause   = err.Error()
	)
	switch {
	case errors.As(err, &dnsErr):
		cause = fmt.Sprintf("cannot resolve %s (%s)", dnsErr.Name, dnsErr.Err)
	case errors.As(err, &netErr) && netErr.Timeout():
		cause = "connecting timed out"
	case errors.As(err, &callErr):
		cause = callErr.Err.Error() // "connection refused" without the addresses
	}
	return fault.Failf("check that serve is running, that MANAGEMENT_PUBLIC_URL names a host and port this machine can reach, and firewalls",
		"MANAGEMENT_PUBLIC_URL %s is not reachable from here: %s", base, cause)
}

// handshakeFailure explains a failed TLS handshake.
func handshakeFailure(base *url.URL, err error) error {
	if ferr := certFailure(base, err); ferr != nil {
		return ferr
	}
	var (
		unknown   x509.UnknownAuthorityError
		header    tls.RecordHeaderError
		netErr    net.Error
		verifyErr *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknown):
		var presented []*x509.Certificate
		if errors.As(err, &verifyErr) {
			presented = verifyErr.UnverifiedCertificates
		}
		return fault.Failf("the agent has the wrong or a lost CA (was management restored without certs/management?): "+fetchCAHint,
			"the management server at %s presents a certificate that the given CA did not sign (server certificate %s)", base, issuedBy(unknown.Cert, presented))
	case errors.As(err, &header):
		what := "does not speak TLS"
		if string(header.RecordHeader[:]) == "HTTP/" {
			what = "answers plain HTTP, not TLS"
		}
		return fault.Failf(portHint+"; agents need management TLS in mode auto or provided, not off",
			"the server at %s %s: management TLS is off there (MANAGEMENT_TLS_MODE=off) or the port is wrong", base, what)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fault.Failf(portHint, "the server at %s accepted the connection but did not complete a TLS handshake in time", base)
	}
	return fault.Failf(portHint, "the TLS handshake with %s failed: %v", base, err)
}

// issuedBy names the issuer of cert and, when the server sent that issuer
// along, its fingerprint, which the user can compare with 'p2ptls ca show'.
func issuedBy(cert *x509.Certificate, presented []*x509.Certificate) string {
	s := fmt.Sprintf("issued by %q", cert.Issuer.CommonName)
	for _, c := range presented {
		if bytes.Equal(c.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(c) == nil {
			return s + ", whose fingerprint is " + pki.Fingerprint(c)
		}
	}
	return s
}

// certFailure explains the verification errors Check and Bootstrap share: a
// certificate that lacks the host, or one outside its validity. It returns
// nil for any other error.
func certFailure(base *url.URL, err error) error {
	var (
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &host):
		covers := strings.Join(certNames(host.Certificate), ", ")
		if covers == "" {
			covers = "no name at all"
		}
		return fault.Failf(fmt.Sprintf("add %s to MANAGEMENT_TLS_EXTRA_HOSTS on the management host and run 'p2ptls ca renew-server' (or restart serve)", host.Host),
			"the management certificate does not cover %s (it covers %s)", host.Host, covers)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		c, now := invalid.Cert, time.Now().UTC()
		if now.Before(c.NotBefore) {
			return fault.Failf("check the clocks of this machine and of the management host; if the management clock was wrong when it issued the certificate, fix it and run 'p2ptls ca renew-server'",
				"the management certificate %q of %s is not valid before %s, and this machine's clock says %s", c.Subject.CommonName, base, text.Stamp(c.NotBefore), text.Stamp(now))
		}
		return fault.Failf("renew it with 'p2ptls ca renew-server' on the management host",
			"the management certificate %q of %s expired at %s (it is now %s)", c.Subject.CommonName, base, text.Stamp(c.NotAfter), text.Stamp(now))
	}
	return nil
}

// httpFailure is a failure after the handshake: TLS works but HTTP does not.
func httpFailure(endpoint *url.URL, err error) error {
	return fault.Failf(portHint, "the server completed TLS but did not answer GET %s: %v", endpoint, err)
}

// certNames returns the DNS names and IP addresses cert covers.
func certNames(cert *x509.Certificate) []string {
	names := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}
