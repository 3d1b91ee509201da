package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

const doNotTrust = "check the fingerprint printed by 'p2ptls ca show' on the management host; do not trust this server"

// Bootstrap fetches the management CA from rawURL/ca.crt and accepts it only
// if its SHA-256 fingerprint is the expected one, and only if the server's own
// TLS certificate on that connection is issued by it for the URL's host. It
// returns the CA as PEM and its fingerprint, and writes nothing: the caller
// saves the CA only once it has been accepted.
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
	// delivers is accepted only if it hashes to that fingerprint.
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	state, body, err := get(ctx, u, cfg, "ca.crt")
	if err != nil {
		return nil, "", err
	}

	ca, err := firstCert(body)
	if err != nil {
		return nil, "", fault.Failf(portHint, "%s did not serve a PEM certificate: %v", endpoint, err)
	}
	sum := sha256.Sum256(ca.Raw)
	if subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return nil, "", fault.Failf(doNotTrust, "the CA served by %s has fingerprint %s, not the expected %s",
			u, pki.Fingerprint(ca), strings.ReplaceAll(fmt.Sprintf("% X", want), " ", ":"))
	}
	if !ca.IsCA {
		return nil, "", fault.Failf(doNotTrust, "the certificate served by %s has the expected fingerprint but is not a CA certificate", endpoint)
	}

	// A matching CA proves nothing about who answered; the server must also
	// hold a certificate from that CA, or the agent would fail at its first
	// connection anyway.
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	intermediates := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	leaf := state.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: u.Hostname()}); err != nil {
		if ferr := certFailure(u, err); ferr != nil {
			return nil, "", ferr
		}
		return nil, "", fault.Failf("do not trust this server: something between here and management may present its own certificate; compare with 'p2ptls ca show' on the management host",
			"the TLS certificate of %s (%s) does not chain to the CA it serves at /ca.crt: %v", u, issuedBy(leaf, state.PeerCertificates), err)
	}
	return pki.EncodeCert(ca.Raw), pki.Fingerprint(ca), nil
}

// firstCert parses the first PEM block of body, which must be a certificate:
// the fingerprint pins exactly that one, so nothing else in body matters.
func firstCert(body []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(body)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block first in the answer")
	}
	return x509.ParseCertificate(block.Bytes)
}
