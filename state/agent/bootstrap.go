package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

const doNotTrust = "check the fingerprint printed by 'p2ptls ca show' on the management host; do not trust this server"

// Bootstrap fetches the management CA from rawURL/ca.crt (one CA, or
// during a rotation the bundle of the current CA and the next) and accepts
// it only if one of its certificates has the expected SHA-256 fingerprint,
// and only if the server's own TLS certificate on that connection verifies
// with that pinned CA for the URL's host. That proves the connection is
// management's, so the rest of a bundle it delivered is management's word
// too and is kept with the pinned CA: an agent bootstrapped during a
// rotation survives its finish. It returns the PEM to keep and the
// fingerprint that matched, and writes nothing: the caller saves the CA
// only once it has been accepted.
func Bootstrap(ctx context.Context, rawURL string, fingerprint string) (caPEM []byte, fp string, err error) {
	want, err := pki.ParseFingerprint(fingerprint)
	if err != nil {
		return nil, "", fault.Invalidf("copy the CA fingerprint printed by 'p2ptls ca show' on the management host", "--fingerprint: %v", err)
	}
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, "", err
	}
	endpoint := below(u, "ca.crt")
	// Nothing is trusted yet, so the connection is not verified. That is
	// safe because the fingerprint, which the user got out of band from the
	// management host, is the trust anchor: whatever this connection
	// delivers is accepted only if the connection verifies with the CA
	// that hashes to it.
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	state, body, err := get(ctx, u, cfg, "ca.crt")
	if err != nil {
		return nil, "", err
	}

	served, err := pki.ParseCertChain(body)
	if err != nil {
		return nil, "", fault.Failf(portHint, "%s did not serve a PEM certificate: %v", endpoint, err)
	}
	var pinned *x509.Certificate
	fps := make([]string, len(served))
	for i, c := range served {
		fps[i] = pki.Fingerprint(c)
		if sum := sha256.Sum256(c.Raw); subtle.ConstantTimeCompare(sum[:], want) == 1 {
			pinned = c
		}
	}
	wantFP := strings.ReplaceAll(fmt.Sprintf("% X", want), " ", ":")
	if pinned == nil {
		what := "the CA served by %s has fingerprint %s"
		if len(served) > 1 {
			what = "the CAs served by %s have fingerprints %s"
		}
		return nil, "", fault.Failf(doNotTrust, what+", not the expected %s", u, strings.Join(fps, " and "), wantFP)
	}
	for _, c := range served {
		if !c.IsCA {
			return nil, "", fault.Failf(doNotTrust, "the certificate %s served by %s is not a CA certificate", pki.Fingerprint(c), endpoint)
		}
	}

	// A matching CA proves nothing about who answered; the server must also
	// hold a certificate from that CA, or the agent would fail at its first
	// connection anyway.
	_, err = verifyServer(u, state.PeerCertificates, Trust{CAs: []*x509.Certificate{pinned}}, time.Now())
	var foreign *foreignError
	if !errors.As(err, &foreign) {
		if err != nil {
			return nil, "", err
		}
		return encodeCerts(served), pki.Fingerprint(pinned), nil
	}
	// The rotation's next CA (last of the bundle), pinned before management
	// switched to it: the leaf is from the current CA (first), and the
	// connection cannot be proven management's with the pin yet.
	if cur := served[0]; len(served) > 1 && served[len(served)-1].Equal(pinned) {
		if _, err := verifyServer(u, state.PeerCertificates, Trust{CAs: []*x509.Certificate{cur}}, time.Now()); err == nil {
			return nil, "", fault.Failf(fmt.Sprintf("if 'p2ptls ca rotate status' on the management host names %s as the current CA, pin that one instead; or bootstrap again after 'p2ptls ca rotate switch'", pki.Fingerprint(cur)),
				"the TLS certificate of %s is still issued by the CA %s, not by the pinned %s: management has not switched to that CA yet", u, pki.Fingerprint(cur), wantFP)
		}
	}
	return nil, "", fault.Failf("do not trust this server: something between here and management may present its own certificate; compare with 'p2ptls ca show' on the management host",
		"the TLS certificate of %s (%s) does not chain to the CA it serves at /ca.crt", u, issuedBy(foreign.leaf, foreign.presented))
}

// encodeCerts is certs as PEM, one block each, in order.
func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pki.EncodeCert(c.Raw)...)
	}
	return out
}
