package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

// DefaultHealthTimeout bounds a health check from dial to last byte: short,
// since a container runtime runs it every 30 s and a serve that needs longer
// to say "ok" is not healthy.
const DefaultHealthTimeout = 5 * time.Second

// HealthInput is what a health check of the local serve needs: the
// management settings serve runs with (from the same environment), the state
// it keeps its CA in, and for mode provided the CA its certificate is
// verified with.
type HealthInput struct {
	// Settings must be validated (management.Settings.Validate).
	Settings management.Settings
	// Store is only read, never locked or written: a health check runs
	// every 30 s beside serve and the commands an operator runs.
	Store state.Store
	// CAFile and CAPEMBase64 (MANAGEMENT_CA_FILE, MANAGEMENT_CA_PEM_BASE64)
	// verify a provided certificate; with neither the system roots do.
	CAFile, CAPEMBase64 string
	// Timeout bounds the whole check; 0 means DefaultHealthTimeout.
	Timeout time.Duration
}

// HealthResult describes a healthy answer.
type HealthResult struct {
	// URL is the /healthz URL that answered.
	URL string `json:"url"`
	// Mode is the management TLS mode it was checked in.
	Mode string `json:"mode"`
	// Verified names what verified the server certificate; empty in mode off.
	Verified string `json:"verified_with,omitempty"`
	// NotAfter is when the server certificate expires; zero in mode off.
	NotAfter time.Time `json:"server_not_after,omitzero"`
	// TLSVersion is the negotiated version; empty in mode off.
	TLSVersion string `json:"tls_version,omitempty"`
}

// Health asks the management listener of the serve on this machine for
// GET /healthz, over management TLS as the settings configure it: mode auto
// verifies with the state's own CA, mode provided with the given CA or the
// system roots, mode off speaks plain HTTP (Validate refuses it without
// MANAGEMENT_ALLOW_INSECURE_HTTP). A listen address on every interface
// (":8443", "0.0.0.0:8443", "[::]:8443") is checked on loopback. Failures are
// fault.Fail errors naming what failed and the fix; bad settings are
// fault.Invalid.
func Health(ctx context.Context, in HealthInput) (*HealthResult, error) {
	timeout := in.Timeout
	if timeout == 0 {
		timeout = DefaultHealthTimeout
	}
	if timeout < 0 {
		return nil, fault.Invalidf("give a duration such as 5s", "the health check timeout %v is negative", timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	set := in.Settings
	addr, err := dialAddr(set.Listen)
	if err != nil {
		return nil, err
	}
	res := &HealthResult{Mode: set.Mode}
	var cfg *tls.Config
	switch set.Mode {
	case management.ModeOff:
		if !set.AllowInsecureHTTP {
			// Validate refuses this too; a caller that skipped it must not
			// get plain HTTP by accident.
			return nil, fault.Invalidf("set MANAGEMENT_ALLOW_INSECURE_HTTP=true as serve has it, or use MANAGEMENT_TLS_MODE=auto",
				"MANAGEMENT_TLS_MODE=off serves management over plain HTTP and requires MANAGEMENT_ALLOW_INSECURE_HTTP=true")
		}
		res.URL = "http://" + addr + "/healthz"
	case management.ModeAuto, management.ModeProvided:
		roots, what, err := healthRoots(ctx, in)
		if err != nil {
			return nil, err
		}
		cfg = &tls.Config{RootCAs: roots, ServerName: healthServerName(set, addr), MinVersion: tls.VersionTLS12}
		res.URL = "https://" + addr + "/healthz"
		res.Verified = what
	default:
		return nil, fault.Invalidf("use auto, provided or off", "unknown MANAGEMENT_TLS_MODE %q", set.Mode)
	}

	cs, err := healthGet(ctx, addr, cfg, res.URL, set.Listen, set.Mode)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		res.NotAfter = cs.PeerCertificates[0].NotAfter
		res.TLSVersion = tls.VersionName(cs.Version)
	}
	return res, nil
}

// dialAddr turns a validated listen address into the address a process on
// the same machine reaches it at: all interfaces mean loopback.
func dialAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" {
		return "", fault.Invalidf("give HOST:PORT, e.g. :8443", "MANAGEMENT_LISTEN (--listen) %q is not HOST:PORT", listen)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// healthServerName is the name the server certificate is verified for. The
// auto certificate always covers the loopback addresses, so a loopback dial
// checks that name; otherwise the certificate is for the name agents use,
// MANAGEMENT_PUBLIC_URL's host, and only without one the dialled host.
func healthServerName(set management.Settings, addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if ip, err := netip.ParseAddr(host); set.Mode == management.ModeAuto && err == nil && ip.IsLoopback() {
		return host
	}
	if set.PublicURL != "" {
		if h, err := management.PublicHost(set.PublicURL); err == nil {
			return h
		}
	}
	return host
}

// healthRoots returns what verifies the server certificate and a phrase
// naming it.
func healthRoots(ctx context.Context, in HealthInput) (*x509.CertPool, string, error) {
	if in.Settings.Mode == management.ModeAuto {
		b, err := in.Store.Read(ctx, management.CACertFile)
		if errors.Is(err, fs.ErrNotExist) {
			// serve creates the CA on its first start in mode auto.
			return nil, "", fault.Failf("start serve with this CONFIG_DIR (it creates the CA on its first start), or point CONFIG_DIR at the state serve uses",
				"serve is not ready: the state %s has no management CA (%s)", stateWhere(in.Store), management.CACertFile)
		}
		if err != nil {
			return nil, "", fault.Failf("check that the health check runs as the user serve runs as, with the same CONFIG_DIR",
				"cannot read the management CA: %v", err)
		}
		certs, err := pki.ParseCertChain(b)
		if err != nil {
			return nil, "", fault.Failf("restore certs/management from a backup", "%s in %s is damaged: %v", management.CACertFile, stateWhere(in.Store), err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(certs[0])
		return pool, "the state's management CA " + pki.Fingerprint(certs[0]), nil
	}
	if in.CAFile == "" && in.CAPEMBase64 == "" {
		roots, err := x509.SystemCertPool()
		if err != nil {
			return nil, "", fault.Failf("set MANAGEMENT_CA_FILE to the CA that issued MANAGEMENT_TLS_CERT_FILE",
				"cannot load the system roots to verify the provided management certificate: %v", err)
		}
		return roots, "the system roots", nil
	}
	roots, certs, err := LoadCA(in.CAFile, in.CAPEMBase64)
	if err != nil {
		return nil, "", err
	}
	return roots, "the given CA " + pki.Fingerprint(certs[0]), nil
}

// stateWhere names the state directory for messages.
func stateWhere(s state.Store) string {
	if d, ok := s.(interface{ Root() string }); ok {
		return d.Root()
	}
	return "the state"
}

// healthGet dials addr, shakes hands with cfg (nil: plain HTTP) and asks
// for endpoint, one step after the other so that a failure names its step:
// nothing listening, a TLS mistake, or an answer that is not "200 OK".
func healthGet(ctx context.Context, addr string, cfg *tls.Config, endpoint, listen, mode string) (tls.ConnectionState, error) {
	var none tls.ConnectionState
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		cause := err.Error()
		var callErr *os.SyscallError
		var netErr net.Error
		switch {
		case errors.As(err, &netErr) && netErr.Timeout():
			cause = "connecting timed out"
		case errors.As(err, &callErr):
			cause = callErr.Err.Error()
		}
		return none, fault.Failf("start 'p2ptls serve', or set MANAGEMENT_LISTEN (--listen) to the address serve listens on",
			"serve is not answering on MANAGEMENT_LISTEN %s (dialled %s): %s", listen, addr, cause)
	}
	defer raw.Close()
	// An expired deadline interrupts the handshake and the exchange alike.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Now()) })
	defer stop()

	conn := raw
	var tconn *tls.Conn
	if cfg != nil {
		tconn = tls.Client(raw, cfg)
		if err := tconn.Handshake(); err != nil {
			return none, healthHandshakeFailure(addr, cfg, err, mode)
		}
		conn = tconn
	}
	u, _ := url.Parse(endpoint)
	req := &http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: make(http.Header), Close: true}
	if err := req.Write(conn); err != nil {
		return none, healthHTTPFailure(endpoint, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return none, healthHTTPFailure(endpoint, err)
	}
	defer resp.Body.Close()
	// The body is "ok"; a little of it tells a TLS port answering plain
	// HTTP apart.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if tconn == nil && resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "HTTPS server") {
		return none, fault.Failf("give the health check the MANAGEMENT_TLS_MODE serve runs with",
			"the management listener at %s speaks TLS, not plain HTTP: serve runs with MANAGEMENT_TLS_MODE auto or provided, not off", addr)
	}
	if resp.StatusCode != http.StatusOK {
		return none, fault.Failf("look at serve's log; MANAGEMENT_LISTEN (--listen) must be serve's management listener, not a public one",
			"GET %s answered %q, not 200 OK", endpoint, resp.Status)
	}
	if tconn == nil {
		return none, nil
	}
	return tconn.ConnectionState(), nil
}

// healthHandshakeFailure explains a failed handshake with the local serve.
func healthHandshakeFailure(addr string, cfg *tls.Config, err error, mode string) error {
	base := &url.URL{Scheme: "https", Host: addr}
	var host x509.HostnameError
	if mode == management.ModeProvided && errors.As(err, &host) {
		// The check dials loopback but verifies the name agents use.
		return fault.Failf("set MANAGEMENT_PUBLIC_URL, as serve has it, to the https:// URL whose host the provided certificate covers",
			"the provided management certificate does not cover %s, the name the health check verifies (it covers %s)", host.Host, strings.Join(certNames(host.Certificate), ", "))
	}
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
		return fault.Failf("point CONFIG_DIR at the state serve runs with (mode auto), or set MANAGEMENT_CA_FILE to the CA of MANAGEMENT_TLS_CERT_FILE (mode provided); restart serve if certs/management was replaced under it",
			"the management certificate at %s is not signed by the CA this check trusts (server certificate %s)", addr, issuedBy(unknown.Cert, presented))
	case errors.As(err, &header):
		return fault.Failf("give the health check the MANAGEMENT_TLS_MODE serve runs with",
			"the management listener at %s does not speak TLS: serve runs with MANAGEMENT_TLS_MODE=off, or MANAGEMENT_LISTEN names another service", addr)
	case errors.As(err, &netErr) && netErr.Timeout():
		return fault.Failf("look at serve's log; a serve that cannot finish a handshake in time is not healthy",
			"the management listener at %s accepted the connection but did not complete a TLS handshake in time", addr)
	}
	return fault.Failf("look at serve's log", "the TLS handshake with the management listener at %s (as %s) failed: %v", addr, cfg.ServerName, err)
}

// healthHTTPFailure is a failure after the connection (and handshake)
// succeeded.
func healthHTTPFailure(endpoint string, err error) error {
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return fault.Failf("look at serve's log; a serve that cannot answer /healthz in time is not healthy",
			"GET %s got no answer in time", endpoint)
	}
	return fault.Failf("look at serve's log; MANAGEMENT_LISTEN (--listen) must be serve's management listener",
		"GET %s got no HTTP answer: %v", endpoint, err)
}

// String is the one line a person reads.
func (r *HealthResult) String() string {
	if r.Verified == "" {
		return fmt.Sprintf("serve is healthy: %s answered 200 OK over plain HTTP (MANAGEMENT_TLS_MODE=off)", r.URL)
	}
	return fmt.Sprintf("serve is healthy: %s answered 200 OK over %s, verified with %s", r.URL, r.TLSVersion, r.Verified)
}
