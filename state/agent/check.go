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
	// Rotation is set while management hands out two CAs at /ca.crt: a
	// rotation of its CA is under way.
	Rotation *Rotation `json:"rotation,omitempty"`
}

// Rotation is what a management CA rotation means for this agent.
type Rotation struct {
	// CurrentCA and NextCA are the fingerprints of the CA management is
	// moving from and of the one it moves to.
	CurrentCA string `json:"current_ca_fingerprint"`
	NextCA    string `json:"next_ca_fingerprint"`
	// SurvivesFinish says whether the agent's CA still verifies management
	// after 'p2ptls ca rotate finish': it does when it holds the next CA.
	SurvivesFinish bool `json:"survives_finish"`
	// Message says so in a sentence; Hint says what to run when it does
	// not survive.
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// Trust is what an agent verifies management with.
type Trust struct {
	// CAs are the CA certificates the agent was given (MANAGEMENT_CA_FILE
	// or MANAGEMENT_CA_PEM_BASE64). None trusts nothing, unless System.
	CAs []*x509.Certificate
	// System verifies with the system roots instead of CAs: for a provided
	// management certificate from a public CA.
	System bool
	// File is the file CAs came from, "" when they came as base64: the
	// advice during a rotation names what to replace.
	File string
}

// roots is t as a pool for crypto/x509.
func (t Trust) roots() (*x509.CertPool, error) {
	if t.System {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fault.Failf("give the CA that signed the management certificate in MANAGEMENT_CA_FILE", "cannot load the system roots: %v", err)
		}
		return pool, nil
	}
	// An empty pool, never nil: nil would make crypto/x509 trust the
	// system roots.
	pool := x509.NewCertPool()
	for _, c := range t.CAs {
		pool.AddCert(c)
	}
	return pool, nil
}

// describe names t by fingerprints: every installation's CA has the same
// subject, so only the fingerprint tells them apart.
func (t Trust) describe() string {
	switch {
	case t.System:
		return "the system roots"
	case len(t.CAs) == 0:
		return "the given CAs (none)"
	case len(t.CAs) == 1:
		return "the given CA " + t.fingerprints()
	}
	return "the given CAs " + t.fingerprints()
}

// fingerprints lists the fingerprints of t's CAs.
func (t Trust) fingerprints() string {
	fps := make([]string, len(t.CAs))
	for i, c := range t.CAs {
		fps[i] = pki.Fingerprint(c)
	}
	return strings.Join(fps, " and ")
}

// holds reports whether t pins exactly cert.
func (t Trust) holds(cert *x509.Certificate) bool {
	return slices.ContainsFunc(t.CAs, func(c *x509.Certificate) bool { return c.Equal(cert) })
}

// Check connects to the management server at rawURL as an agent does,
// trusting only trust, and asks it GET /healthz. A failure says which
// common mistake it is, in the order that finds the cause: a URL this
// machine cannot reach, a server whose certificate is not from the given
// CA at all (another service, another installation, a lost or replaced
// CA), an expired certificate, a certificate from the right CA that lacks
// the URL's host, management TLS off or the wrong port, or an unhealthy
// server. On success it also reads /ca.crt over the verified connection,
// and during a rotation tells whether the agent's CA survives its finish.
func Check(ctx context.Context, rawURL string, trust Trust) (*CheckResult, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	cfg := &tls.Config{
		ServerName: u.Hostname(), MinVersion: tls.VersionTLS12,
		// Verified below rather than by crypto/tls, whose checks run
		// host name first: a foreign certificate would be diagnosed as a
		// missing MANAGEMENT_TLS_EXTRA_HOSTS entry.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var err error
			chain, err = verifyServer(u, cs.PeerCertificates, trust, time.Now())
			return err
		},
	}
	state, _, err := get(ctx, u, cfg, "healthz")
	var foreign *foreignError
	if errors.As(err, &foreign) {
		return nil, explainForeign(ctx, u, foreign, trust)
	}
	if err != nil {
		return nil, err
	}
	res := &CheckResult{
		URL:           u.String(),
		ServerNames:   certNames(chain[0]),
		NotAfter:      chain[0].NotAfter,
		CAFingerprint: pki.Fingerprint(chain[len(chain)-1]),
		TLSVersion:    tls.VersionName(state.Version),
	}
	// /ca.crt over a connection verified as above: what it says is
	// management's own word. Without it (mode provided with a leaf only)
	// there is no rotation to tell of.
	if _, body, err := get(ctx, u, cfg, "ca.crt"); err == nil {
		if served, err := pki.ParseCertChain(body); err == nil && len(served) >= 2 {
			res.Rotation = rotationAdvice(u, served, trust)
		}
	}
	return res, nil
}

// rotationAdvice tells an agent trusting trust what the bundle served
// (current CA first, next CA last) means for it.
func rotationAdvice(u *url.URL, served []*x509.Certificate, trust Trust) *Rotation {
	cur, next := served[0], served[len(served)-1]
	r := &Rotation{CurrentCA: pki.Fingerprint(cur), NextCA: pki.Fingerprint(next), SurvivesFinish: trust.holds(next)}
	if r.SurvivesFinish {
		r.Message = fmt.Sprintf("management is rotating its CA from %s to %s, and this agent's CA holds the next one: it keeps working after 'p2ptls ca rotate finish'", r.CurrentCA, r.NextCA)
		return r
	}
	r.Message = fmt.Sprintf("management is rotating its CA from %s to %s, and this agent trusts only %s: it stops verifying management at 'p2ptls ca rotate finish'", r.CurrentCA, r.NextCA, trust.fingerprints())
	if trust.File != "" {
		r.Hint = fmt.Sprintf("before the finish, replace %s with the bundle: run '%s' here (compare the fingerprint with 'p2ptls ca rotate status' on the management host), or copy the output of 'p2ptls ca export' there",
			trust.File, BootstrapCommand(u.String(), r.NextCA, trust.File))
	} else {
		r.Hint = fmt.Sprintf("before the finish, set MANAGEMENT_CA_PEM_BASE64 to the bundle: the line of 'p2ptls agent env' (or 'p2ptls ca export --format base64') on the management host, or use a file from '%s' as MANAGEMENT_CA_FILE",
			BootstrapCommand(u.String(), r.NextCA, "FILE"))
	}
	return r
}

// foreignError is a server certificate that no given CA issued, whatever
// its host or dates: the first thing to tell, since no extra host or
// renewal mends it.
type foreignError struct {
	leaf      *x509.Certificate
	presented []*x509.Certificate
}

func (e *foreignError) Error() string {
	return "the server certificate is not from the given CA"
}

// verifyServer verifies the certificates a server presented against
// trust, in the order that diagnoses: issued by a given CA at all (told by
// signatures, whatever the dates), then valid now, then covering the URL's
// host. It returns the verified chain, leaf first.
func verifyServer(u *url.URL, presented []*x509.Certificate, trust Trust, now time.Time) ([]*x509.Certificate, error) {
	if len(presented) == 0 {
		return nil, fault.Failf(portHint, "the server at %s presented no certificate", u)
	}
	roots, err := trust.roots()
	if err != nil {
		return nil, err
	}
	leaf := presented[0]
	intermediates := x509.NewCertPool()
	for _, c := range presented[1:] {
		intermediates.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		// The system roots cannot be listed: there, an unknown authority
		// is all that tells a foreign certificate.
		var unknown x509.UnknownAuthorityError
		if trust.System && errors.As(err, &unknown) || !trust.System && !issuedFrom(leaf, presented, trust.CAs, len(presented)) {
			return nil, &foreignError{leaf: leaf, presented: presented}
		}
		if ferr := certFailure(u, err); ferr != nil {
			return nil, ferr
		}
		return nil, fault.Failf("compare the CA with 'p2ptls ca show' on the management host, and check the clocks of both machines",
			"the management certificate of %s is issued by %s but does not verify: %v", u, trust.describe(), err)
	}
	if err := leaf.VerifyHostname(u.Hostname()); err != nil {
		if ferr := certFailure(u, err); ferr != nil {
			return nil, ferr
		}
		return nil, fault.Failf(portHint, "the management certificate of %s does not cover %s: %v", u, u.Hostname(), err)
	}
	return chains[0], nil
}

// issuedFrom reports whether cert is signed by one of cas, directly or
// through at most depth of the presented certificates (a cross-certificate
// during a rotation), by signatures alone: dates are told apart later.
func issuedFrom(cert *x509.Certificate, presented, cas []*x509.Certificate, depth int) bool {
	for _, ca := range cas {
		if cert.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	if depth == 0 {
		return false
	}
	for _, p := range presented {
		if !p.Equal(cert) && cert.CheckSignatureFrom(p) == nil && issuedFrom(p, presented, cas, depth-1) {
			return true
		}
	}
	return false
}

// explainForeign turns a foreign server certificate into the failure that
// names it by fingerprint and says what the server is: /ca.crt, fetched
// without trust (only to be described, never trusted), tells a p2ptls
// management server with another CA from some other service.
func explainForeign(ctx context.Context, u *url.URL, f *foreignError, trust Trust) error {
	msg := fmt.Sprintf("the server at %s presents a certificate (%s) that %s did not issue", u, issuedBy(f.leaf, f.presented), trust.describe())
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	var published []*x509.Certificate
	if _, body, err := get(ctx, u, cfg, "ca.crt"); err == nil {
		published, _ = pki.ParseCertChain(body)
	}
	var own *x509.Certificate // the published CA the server's certificate is from
	for _, ca := range published {
		if _, err := verifyServer(u, f.presented, Trust{CAs: []*x509.Certificate{ca}}, time.Now()); !errors.As(err, new(*foreignError)) {
			own = ca
			break
		}
	}
	if own == nil {
		return fault.Failf(portHint+"; a public HTTPS listener of p2ptls is not the management listener",
			"%s, and it publishes no CA at /ca.crt that did: MANAGEMENT_PUBLIC_URL does not point at the p2ptls management listener this CA belongs to", msg)
	}
	fp := pki.Fingerprint(own)
	return fault.Failf(fmt.Sprintf("the agent has a wrong or lost CA, or management's CA was replaced: if 'p2ptls ca show' on the management host prints %s, run '%s' here or use 'p2ptls agent env' from there", fp, BootstrapCommand(u.String(), fp, "FILE")),
		"%s; it is a p2ptls management server whose CA is %s", msg, fp)
}

// Checker is Check bounded by timeout, returning only its error: the form
// doctor's network check takes, the same from the CLI and from the API.
func Checker(timeout time.Duration) func(ctx context.Context, rawURL string, trust Trust) error {
	return func(ctx context.Context, rawURL string, trust Trust) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := Check(ctx, rawURL, trust)
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

// handshakeFailure explains a failed TLS handshake. A verdict of
// verifyServer (through VerifyConnection) is passed on as it is.
func handshakeFailure(base *url.URL, err error) error {
	var (
		verdict *fault.Error
		foreign *foreignError
		header  tls.RecordHeaderError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &foreign):
		return foreign
	case errors.As(err, &verdict):
		return verdict
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
