// Package agent holds what an agent needs to trust management TLS: loading
// the CA an agent verifies management with, checking a connection to
// management with it, bootstrapping that CA from a fingerprint, and the
// environment lines of an agent install. It is client code, used by the CLI
// and by the management UI and API, not part of serve's runtime. The CLI only
// parses flags and prints; every error returned here is a fault error whose
// message names the mistake and whose hint names the fix.
package agent

import (
	"crypto/x509"
	"encoding/base64"
	"strings"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// fetchCAHint is where an agent gets the management CA from.
const fetchCAHint = "fetch the current CA with 'p2ptls agent bootstrap' or 'p2ptls ca export' on the management host"

// LoadCA returns the management CA given either as a PEM file
// (MANAGEMENT_CA_FILE, --ca-file) or as base64 of the PEM
// (MANAGEMENT_CA_PEM_BASE64, --ca-pem-base64), as a pool that trusts only
// those certificates and as the parsed certificates. Exactly one source must
// be given (blank counts as not given): with both, which one the agent uses
// would be a guess.
func LoadCA(file string, pemBase64 string) (*x509.CertPool, []*x509.Certificate, error) {
	// Base64 is often pasted wrapped over several lines.
	b64 := strings.Join(strings.Fields(pemBase64), "")
	var (
		pemBytes []byte
		source   string
	)
	switch {
	case file != "" && b64 != "":
		return nil, nil, fault.Invalidf("keep one of the two: unset MANAGEMENT_CA_FILE or MANAGEMENT_CA_PEM_BASE64, or drop --ca-file or --ca-pem-base64",
			"both MANAGEMENT_CA_FILE (--ca-file) and MANAGEMENT_CA_PEM_BASE64 (--ca-pem-base64) are set; give the management CA one way only")
	case file == "" && b64 == "":
		return nil, nil, fault.Invalidf(fetchCAHint,
			"no management CA given: set MANAGEMENT_CA_FILE (--ca-file) to a PEM file or MANAGEMENT_CA_PEM_BASE64 (--ca-pem-base64) to its base64")
	case file != "":
		source = "the CA file " + file + " (MANAGEMENT_CA_FILE, --ca-file)"
		var err error
		if pemBytes, err = userfile.Read(file, userfile.MaxPEM); err != nil {
			return nil, nil, &fault.Error{Kind: fault.Invalid, Msg: "the CA file (MANAGEMENT_CA_FILE, --ca-file)", Err: err,
				Hint: "check the path and its permissions, or give the CA as base64 in MANAGEMENT_CA_PEM_BASE64 (--ca-pem-base64)"}
		}
	default:
		source = "MANAGEMENT_CA_PEM_BASE64 (--ca-pem-base64)"
		if strings.Contains(b64, "-----BEGIN") {
			return nil, nil, fault.Invalidf("encode the PEM file with 'base64 -w0 ca.crt' or 'p2ptls ca export --format base64', or put the PEM in a file and use MANAGEMENT_CA_FILE (--ca-file)",
				"%s holds PEM text, not the base64 of it", source)
		}
		var err error
		if pemBytes, err = base64.StdEncoding.DecodeString(b64); err != nil {
			return nil, nil, fault.Invalidf("encode the whole PEM file with 'base64 -w0 ca.crt' or 'p2ptls ca export --format base64'",
				"%s is not valid base64: %v", source, err)
		}
	}
	certs, err := pki.ParseCertChain(pemBytes)
	if err != nil {
		return nil, nil, fault.Invalidf(fetchCAHint, "%s holds no usable certificate: %v", source, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, certs, nil
}

// EnvLines returns the environment lines of an agent install, unquoted
// KEY=value as env files and 'docker --env-file' read them (neither a URL nor
// base64 needs quoting there). When publicURL is empty the
// MANAGEMENT_PUBLIC_URL line is left out: the caller knows it is empty and
// should warn that agents cannot find management without it.
func EnvLines(publicURL string, caPEM []byte) []string {
	var lines []string
	if publicURL != "" {
		lines = append(lines, "MANAGEMENT_PUBLIC_URL="+publicURL)
	}
	return append(lines, "MANAGEMENT_CA_PEM_BASE64="+base64.StdEncoding.EncodeToString(caPEM))
}

// BootstrapCommand is the agent's command that fetches and pins the
// management CA fp from publicURL into out. Without a public URL it names
// a placeholder for the operator to fill in.
func BootstrapCommand(publicURL, fp, out string) string {
	if publicURL == "" {
		publicURL = "https://MANAGEMENT_HOST:8443"
	}
	return "p2ptls agent bootstrap --url " + publicURL + " --fingerprint " + fp + " --out " + out
}
