package management

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// CertInfo describes one certificate with the JSON fields scripts rely on.
type CertInfo struct {
	Subject           string    `json:"subject"`
	Issuer            string    `json:"issuer"`
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	NotBefore         time.Time `json:"not_before"`
	NotAfter          time.Time `json:"not_after"`
	DNSNames          []string  `json:"dns_names"`
	IPAddresses       []string  `json:"ip_addresses"`
	File              string    `json:"file"`
}

// Info is what "ca show" prints.
type Info struct {
	Mode   string    `json:"mode"`
	CA     *CertInfo `json:"ca"`
	Server *CertInfo `json:"server"`
	// Missing lists wanted server names the server certificate lacks.
	Missing []string `json:"missing_names"`
}

// Describe turns a certificate into CertInfo.
func Describe(c *x509.Certificate, file string) *CertInfo {
	ips := make([]string, len(c.IPAddresses))
	for i, ip := range c.IPAddresses {
		ips[i] = ip.String()
	}
	return &CertInfo{
		Subject:           c.Subject.String(),
		Issuer:            c.Issuer.String(),
		FingerprintSHA256: pki.Fingerprint(c),
		NotBefore:         c.NotBefore.UTC(),
		NotAfter:          c.NotAfter.UTC(),
		DNSNames:          append([]string{}, c.DNSNames...),
		IPAddresses:       ips,
		File:              file,
	}
}

// Show describes management TLS as serve would run it with settings; the
// files are named where the store keeps them (state.Locate).
func Show(ctx context.Context, s state.Store, set Settings) (*Info, error) {
	info := &Info{Mode: set.Mode, Missing: []string{}}
	if set.Mode == ModeProvided {
		kp, err := LoadProvided(set.CertFile, set.KeyFile, time.Now())
		if err != nil {
			return nil, err
		}
		info.Server = Describe(kp.Cert, set.CertFile)
		if chain, _ := pki.ParseCertChain(kp.CertPEM); len(chain) > 1 {
			info.CA = Describe(chain[len(chain)-1], set.CertFile)
		}
		return info, nil
	}
	// Mode off shows the CA too: it is what agents may still hold.
	_, ca, err := CACertificate(ctx, s)
	if err != nil {
		if set.Mode == ModeOff {
			return info, nil
		}
		return nil, err
	}
	info.CA = Describe(ca, state.Locate(s, CACertFile))
	if set.Mode == ModeOff {
		return info, nil
	}
	certPEM, err := s.Read(ctx, ServerCertFile)
	if err != nil {
		return info, nil // serve or "ca renew-server" will issue it
	}
	chain, err := pki.ParseCertChain(certPEM)
	if err != nil {
		return nil, fault.Failf("re-issue it with 'p2ptls ca renew-server'", "%s is damaged: %v", ServerCertFile, err)
	}
	info.Server = Describe(chain[0], state.Locate(s, ServerCertFile))
	info.Missing = text.NonNil(set.WantedNames().Missing(chain[0]))
	return info, nil
}

// LoadProvided reads mode provided's certificate chain and key and refuses
// what serve could not use: missing or unreadable files, no certificate, a
// key that does not match, a leaf that is expired or not yet valid.
func LoadProvided(certFile, keyFile string, now time.Time) (*pki.KeyPair, error) {
	// Bounded and regular-only, as every file a user names: serve rereads
	// these on rotation, and a FIFO there must not wedge it.
	certPEM, err := userfile.Read(certFile, userfile.MaxPEM)
	if err != nil {
		return nil, &fault.Error{Kind: fault.Invalid, Msg: "MANAGEMENT_TLS_CERT_FILE", Err: err, Hint: "point MANAGEMENT_TLS_CERT_FILE at a readable PEM certificate (chain)"}
	}
	keyPEM, err := userfile.Read(keyFile, userfile.MaxPEM)
	if err != nil {
		return nil, &fault.Error{Kind: fault.Invalid, Msg: "MANAGEMENT_TLS_KEY_FILE", Err: err, Hint: "point MANAGEMENT_TLS_KEY_FILE at a readable PEM private key"}
	}
	kp, err := pki.LoadKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fault.Invalidf("give the certificate chain and the key that belongs to it",
			"MANAGEMENT_TLS_CERT_FILE %s and MANAGEMENT_TLS_KEY_FILE %s: %v", certFile, keyFile, err)
	}
	switch {
	case now.After(kp.Cert.NotAfter):
		return nil, fault.Invalidf("install a renewed certificate",
			"the certificate in MANAGEMENT_TLS_CERT_FILE %s expired on %s", certFile, text.Stamp(kp.Cert.NotAfter))
	case now.Before(kp.Cert.NotBefore):
		return nil, fault.Invalidf("check this machine's clock, or wait until it is valid",
			"the certificate in MANAGEMENT_TLS_CERT_FILE %s is not valid before %s", certFile, text.Stamp(kp.Cert.NotBefore))
	}
	return kp, nil
}

// ErrNoAgentCA says that mode provided's certificate file carries no CA.
var ErrNoAgentCA = errors.New("the provided management certificate file holds no CA certificate; agents verify it with the system roots or the operator's own CA")

// AgentCA is the CA certificate agents should trust: the auto CA (during
// a rotation the bundle AgentBundle makes), or in mode provided the last
// certificate of the chain when the file carries one.
func AgentCA(ctx context.Context, s state.Store, set Settings) ([]byte, error) {
	if set.Mode == ModeProvided {
		kp, err := LoadProvided(set.CertFile, set.KeyFile, time.Now())
		if err != nil {
			return nil, err
		}
		chain, err := pki.ParseCertChain(kp.CertPEM)
		if err != nil || len(chain) < 2 {
			return nil, ErrNoAgentCA
		}
		return pki.EncodeCert(chain[len(chain)-1].Raw), nil
	}
	return AgentBundle(ctx, s)
}

// AgentBundle is the auto CA for agents: the current CA and, while a
// rotation is open, the next one after it — in that order, always: agent
// check tells by it which CA of a bundle survives finish (the second).
func AgentBundle(ctx context.Context, s state.Store) ([]byte, error) {
	caPEM, _, err := CACertificate(ctx, s)
	if err != nil {
		return nil, err
	}
	r, err := ReadRotation(ctx, s)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return caPEM, nil
	}
	next, err := readCert(ctx, s, NextCertFile)
	if err != nil {
		return nil, err
	}
	return append(caPEM, pki.EncodeCert(next.Raw)...), nil
}
