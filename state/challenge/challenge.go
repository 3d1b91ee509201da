// Package challenge publishes ACME challenge answers in the state directory
// and reads them back: state/acme publishes while it validates an order, and
// whoever serves the listener (a running serve, or the issuing command
// itself) answers from here.
package challenge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/go-acme/lego/v4/challenge/tlsalpn01"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// ALPNProto is the ALPN protocol of TLS-ALPN-01 validation.
const ALPNProto = tlsalpn01.ACMETLS1Protocol

// HTTP01Path is where HTTP-01 validation asks.
const HTTP01Path = "/.well-known/acme-challenge/"

// ValidToken admits ACME tokens (base64url) only, so a request can never
// name another file.
func ValidToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// PublishHTTP01 makes keyAuth the answer for token.
func PublishHTTP01(ctx context.Context, s state.Store, token, keyAuth string) error {
	if !ValidToken(token) {
		return fmt.Errorf("invalid HTTP-01 token %q", token)
	}
	return s.Write(ctx, state.HTTP01Dir+"/"+token, []byte(keyAuth), state.SecretMode)
}

// RemoveHTTP01 withdraws the answer for token.
func RemoveHTTP01(ctx context.Context, s state.Store, token string) error {
	if !ValidToken(token) {
		return nil
	}
	return s.Delete(ctx, state.HTTP01Dir+"/"+token)
}

// HTTP01 is the published answer for token.
func HTTP01(ctx context.Context, s state.Store, token string) ([]byte, error) {
	if !ValidToken(token) {
		return nil, fmt.Errorf("invalid HTTP-01 token")
	}
	return s.Read(ctx, state.HTTP01Dir+"/"+token)
}

// tlsALPNName is the file of domain's TLS-ALPN-01 certificate; domains are
// validated names, so they are safe file names.
func tlsALPNName(domain string) (string, error) {
	d, err := hostname.Normalize(domain)
	if err != nil || strings.HasPrefix(d, "*.") {
		return "", fmt.Errorf("invalid TLS-ALPN-01 domain %q", domain)
	}
	return state.TLSALPN01Dir + "/" + d + ".pem", nil
}

// PublishTLSALPN01 publishes the challenge certificate for domain.
func PublishTLSALPN01(ctx context.Context, s state.Store, domain, keyAuth string) error {
	name, err := tlsALPNName(domain)
	if err != nil {
		return err
	}
	certPEM, keyPEM, err := tlsalpn01.ChallengeBlocks(domain, keyAuth)
	if err != nil {
		return fmt.Errorf("make TLS-ALPN-01 certificate for %s: %w", domain, err)
	}
	return s.Write(ctx, name, append(certPEM, keyPEM...), state.SecretMode)
}

// RemoveTLSALPN01 withdraws domain's challenge certificate.
func RemoveTLSALPN01(ctx context.Context, s state.Store, domain string) error {
	name, err := tlsALPNName(domain)
	if err != nil {
		return nil
	}
	return s.Delete(ctx, name)
}

// TLSALPN01 is the challenge certificate published for serverName: a DNS
// name, or the reverse-DNS name of an IP identifier (see reverse.go), which
// finds the certificate published for that address.
func TLSALPN01(ctx context.Context, s state.Store, serverName string) (*tls.Certificate, error) {
	lookup := serverName
	if ip, ok := IPFromReverse(serverName); ok {
		lookup = ip.String()
	}
	name, err := tlsALPNName(lookup)
	if err != nil {
		return nil, err
	}
	b, err := s.Read(ctx, name)
	if errors.Is(err, fs.ErrNotExist) && lookup != serverName {
		// Not published for the address: a DNS identifier that is itself
		// a reverse name ("1.2.0.192.in-addr.arpa") is filed under it.
		if n, nerr := tlsALPNName(serverName); nerr == nil {
			b, err = s.Read(ctx, n)
		}
	}
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, fmt.Errorf("load TLS-ALPN-01 certificate for %s: %w", serverName, err)
	}
	return &c, nil
}

// OffersALPN reports whether a ClientHello is a TLS-ALPN-01 validation.
func OffersALPN(hello *tls.ClientHelloInfo) bool {
	for _, p := range hello.SupportedProtos {
		if p == ALPNProto {
			return true
		}
	}
	return false
}
