package state

import (
	"fmt"
	"net"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// Certificate sources of a mapping.
const (
	SourceManual     = "manual"
	SourceFile       = "file"
	SourceSelfSigned = "self-signed"
	SourceACME       = "acme"
)

// ACME challenge types.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
	ChallengeDNS01     = "dns-01"
)

// ProviderCloudflare is the only DNS provider so far.
const ProviderCloudflare = "cloudflare"

// Validate checks the whole config, normalising what it can (listener
// defaults, host spelling). It is run on every load and before every save,
// so a hand edit and a command are held to the same rules. It is linear in
// the number of mappings: a state may hold 100k of them.
func (c *Config) Validate() error {
	if c.SchemaVersion != SchemaVersion {
		return fmt.Errorf("schema_version %d is not supported (want %d)", c.SchemaVersion, SchemaVersion)
	}
	listeners := make(map[string]bool, len(c.Listeners))
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if err := l.normalize(); err != nil {
			return fmt.Errorf("listeners[%d]: %w", i, err)
		}
		if listeners[l.Name] {
			return fault.Invalidf("", "listeners[%d]: listener name %q is used twice", i, l.Name)
		}
		listeners[l.Name] = true
		if err := c.checkAddrConflicts(*l); err != nil {
			return fmt.Errorf("listeners[%d]: %w", i, err)
		}
	}
	creds := make(map[string]bool, len(c.DNSCredentials))
	for i, d := range c.DNSCredentials {
		if err := validateDNSCredential(d, creds); err != nil {
			return fmt.Errorf("dns_credentials[%d]: %w", i, err)
		}
		creds[d.Name] = true
	}
	v := mappingValidator{listeners: listeners, creds: creds, ids: map[string]bool{}, hosts: map[string]string{}}
	for i := range c.Mappings {
		if err := v.check(&c.Mappings[i]); err != nil {
			return fmt.Errorf("mappings[%d]: %w", i, err)
		}
	}
	for _, r := range c.ACME.DNSResolvers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fault.Invalidf("write resolvers as HOST:PORT, e.g. 1.1.1.1:53", "acme.dns_resolvers: %q is not HOST:PORT", r)
		}
	}
	return nil
}

func validateDNSCredential(d DNSCredential, seen map[string]bool) error {
	if err := hostname.ValidateName("DNS credential", d.Name); err != nil {
		return fault.AsInvalid(err, "")
	}
	if seen[d.Name] {
		return fault.Invalidf("", "DNS credential name %q is used twice", d.Name)
	}
	if d.Provider != ProviderCloudflare {
		return fault.Invalidf(`use provider "cloudflare"`, "DNS credential %q: unknown provider %q", d.Name, d.Provider)
	}
	if d.APIBaseURL != "" {
		if err := validateUpstream(d.APIBaseURL); err != nil {
			return fault.Invalidf("give an http:// or https:// URL", "DNS credential %q: api_base_url %q is not a URL with a host", d.Name, d.APIBaseURL)
		}
	}
	return nil
}

// mappingValidator carries what earlier mappings claimed, so that each
// mapping is checked in constant time.
type mappingValidator struct {
	listeners, creds, ids map[string]bool
	hosts                 map[string]string // listener + "\x00" + host -> mapping id
}

func (v *mappingValidator) check(m *Mapping) error {
	if err := hostname.ValidateName("mapping id", m.ID); err != nil {
		return fault.AsInvalid(err, "")
	}
	if v.ids[m.ID] {
		return fault.Invalidf("", "mapping id %q is used twice", m.ID)
	}
	v.ids[m.ID] = true
	if !v.listeners[m.Listener] {
		return fault.Invalidf("add the listener first with 'p2ptls listener add'", "mapping %q: listener %q does not exist", m.ID, m.Listener)
	}
	if len(m.Hosts) == 0 {
		return fault.Invalidf("give at least one host", "mapping %q has no hosts", m.ID)
	}
	wildcard := false
	for j, h := range m.Hosts {
		n, err := hostname.Normalize(h)
		if err != nil {
			return fault.AsInvalid(fmt.Errorf("mapping %q: %w", m.ID, err), "")
		}
		m.Hosts[j] = n
		wildcard = wildcard || hostname.IsWildcard(n)
		key := m.Listener + "\x00" + n
		if owner, taken := v.hosts[key]; taken {
			if owner == m.ID {
				return fault.Invalidf("list each host once", "mapping %q lists host %q twice", m.ID, n)
			}
			return fault.Invalidf("remove it from one of the mappings",
				"mapping %q: host %q is already mapped on listener %q by mapping %q", m.ID, n, m.Listener, owner)
		}
		v.hosts[key] = m.ID
	}
	if m.Upstream != "" {
		if err := validateUpstream(m.Upstream); err != nil {
			return fault.AsInvalid(fmt.Errorf("mapping %q: %w", m.ID, err), "give an http:// or https:// URL, e.g. http://127.0.0.1:8080")
		}
	}
	switch m.Source {
	case SourceManual, SourceSelfSigned:
	case SourceFile:
		if m.CertFile == "" || m.KeyFile == "" {
			return fault.Invalidf("set cert_file and key_file", "mapping %q: source %q needs cert_file and key_file", m.ID, m.Source)
		}
	case SourceACME:
		return v.checkACME(m, wildcard)
	default:
		return fault.Invalidf(`use "manual", "file", "self-signed" or "acme"`, "mapping %q: unknown source %q", m.ID, m.Source)
	}
	return nil
}

func (v *mappingValidator) checkACME(m *Mapping, wildcard bool) error {
	switch m.Challenge {
	case ChallengeHTTP01, ChallengeTLSALPN01:
		if wildcard {
			return fault.Invalidf("use --challenge dns-01 with a DNS credential",
				"mapping %q: wildcard hosts cannot be validated with %s; they need DNS-01", m.ID, m.Challenge)
		}
	case ChallengeDNS01:
		if m.DNSCredential == "" {
			return fault.Invalidf("name a credential with --dns-credential (see 'p2ptls dns-credential list')",
				"mapping %q: DNS-01 needs a DNS credential", m.ID)
		}
		if !v.creds[m.DNSCredential] {
			return fault.Invalidf("add it with 'p2ptls dns-credential add'", "mapping %q: DNS credential %q does not exist", m.ID, m.DNSCredential)
		}
	default:
		return fault.Invalidf(`use "http-01", "tls-alpn-01" or "dns-01"`, "mapping %q: unknown challenge %q", m.ID, m.Challenge)
	}
	switch m.KeyType {
	case "", "ec256", "ec384", "rsa2048", "rsa4096":
	default:
		return fault.Invalidf(`use "ec256", "ec384", "rsa2048" or "rsa4096"`, "mapping %q: unknown key_type %q", m.ID, m.KeyType)
	}
	return nil
}
