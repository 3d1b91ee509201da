package state

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

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
func (c *Config) Validate() error { return c.validate(false) }

// validate is Validate; mappingsValid says the mappings are known to pass
// the rules with these listener and credential names (see recordsMemo), so
// that only the rest of the config is checked.
func (c *Config) validate(mappingsValid bool) error {
	_, err := c.validateDiff(mappingsValid)
	return err
}

// validateDiff is validate, and what validateChanged found changed since
// the config was loaded, when it could tell: nil when it could not.
func (c *Config) validateDiff(mappingsValid bool) (diff *mappingDiff, err error) {
	if !knownSchema(c.SchemaVersion) {
		return nil, fmt.Errorf("schema_version %d is not supported (want %d)", c.SchemaVersion, SchemaVersion)
	}
	listeners := make(map[string]bool, len(c.Listeners))
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if err := l.normalize(); err != nil {
			return nil, &EntryError{Table: "listeners", Index: i, Err: err}
		}
		if listeners[l.Name] {
			return nil, fault.Invalidf("", "listeners[%d]: listener name %q is used twice", i, l.Name)
		}
		listeners[l.Name] = true
		if err := c.checkAddrConflicts(*l); err != nil {
			return nil, &EntryError{Table: "listeners", Index: i, Err: err}
		}
	}
	creds := make(map[string]bool, len(c.DNSCredentials))
	for i, d := range c.DNSCredentials {
		if err := validateDNSCredential(d, creds); err != nil {
			return nil, &EntryError{Table: "dns_credentials", Index: i, Err: err}
		}
		creds[d.Name] = true
	}
	if !mappingsValid {
		quick := mappingValidator{listeners: listeners, creds: creds, ids: map[string]bool{}, hosts: map[ListenerHost]string{}}
		if diff = c.validateChanged(&quick); diff == nil {
			if err := c.validateMappings(listeners, creds); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range c.ACME.DNSResolvers {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return nil, fault.Invalidf("write resolvers as HOST:PORT, e.g. 1.1.1.1:53", "acme.dns_resolvers: %q is not HOST:PORT", r)
		}
	}
	return diff, nil
}

// validateMappings checks every mapping against the rules.
func (c *Config) validateMappings(listeners, creds map[string]bool) error {
	v := mappingValidator{listeners: listeners, creds: creds, ids: make(map[string]bool, len(c.Mappings)), hosts: make(map[ListenerHost]string, len(c.Mappings))}
	for i := range c.Mappings {
		if err := v.check(&c.Mappings[i]); err != nil {
			return &EntryError{Table: "mappings", Index: i, Err: err}
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
		if err := checkURL("api_base_url", d.APIBaseURL); err != nil {
			return fmt.Errorf("DNS credential %q: %w", d.Name, err)
		}
	}
	return nil
}

// mappingValidator carries what earlier mappings claimed, so that each
// mapping is checked in constant time.
type mappingValidator struct {
	listeners, creds, ids map[string]bool
	hosts                 map[ListenerHost]string // -> mapping id
}

// ListenerHost is a host on a listener: the key of the rule that a host is
// mapped once per listener. A struct rather than a joined string, so that
// checking 100k mappings allocates no keys.
type ListenerHost struct{ Listener, Host string }

func (v *mappingValidator) check(m *Mapping) error {
	if err := hostname.ValidateName("mapping id", m.ID); err != nil {
		return inField("id", fault.AsInvalid(err, ""))
	}
	if v.ids[m.ID] {
		return inField("id", fault.Invalidf("", "mapping id %q is used twice", m.ID))
	}
	v.ids[m.ID] = true
	if !v.listeners[m.Listener] {
		return inField("listener", fault.Invalidf("add the listener first with 'p2ptls listener add'", "mapping %q: listener %q does not exist", m.ID, m.Listener))
	}
	if len(m.Hosts) == 0 {
		return inField("hosts", fault.Invalidf("give at least one host", "mapping %q has no hosts", m.ID))
	}
	wildcard := false
	for j, h := range m.Hosts {
		n, err := hostname.Normalize(h)
		if err != nil {
			return inField("hosts", fault.AsInvalid(fmt.Errorf("mapping %q: %w", m.ID, err), ""))
		}
		m.Hosts[j] = n
		wildcard = wildcard || hostname.IsWildcard(n)
		if m.Source == SourceACME && m.Challenge == ChallengeDNS01 && hostname.IsIP(n) {
			return inField("challenge", fault.Invalidf("use --challenge http-01 or tls-alpn-01 for an IP address",
				"mapping %q: IP address %s cannot be validated with DNS-01; a CA validates an IP by connecting to it, not through DNS", m.ID, n))
		}
		key := ListenerHost{m.Listener, n}
		if owner, taken := v.hosts[key]; taken {
			if owner == m.ID {
				return inField("hosts", fault.Invalidf("list each host once", "mapping %q lists host %q twice", m.ID, n))
			}
			return inField("hosts", fault.Invalidf("remove it from one of the mappings",
				"mapping %q: host %q is already mapped on listener %q by mapping %q", m.ID, n, m.Listener, owner))
		}
		v.hosts[key] = m.ID
	}
	if m.Upstream != "" {
		if err := validateUpstream(m.Upstream); err != nil {
			return fmt.Errorf("mapping %q: %w", m.ID, err)
		}
	}
	switch m.Source {
	case SourceManual, SourceSelfSigned:
	case SourceFile:
		if m.CertFile == "" || m.KeyFile == "" {
			missing := "key_file"
			if m.CertFile == "" {
				missing = "cert_file"
			}
			return inField(missing, fault.Invalidf("set cert_file and key_file", "mapping %q: source %q needs cert_file and key_file", m.ID, m.Source))
		}
	case SourceACME:
		return v.checkACME(m, wildcard)
	default:
		return inField("source", fault.Invalidf(`use "manual", "file", "self-signed" or "acme"`, "mapping %q: unknown source %q", m.ID, m.Source))
	}
	return nil
}

func (v *mappingValidator) checkACME(m *Mapping, wildcard bool) error {
	switch m.Challenge {
	case ChallengeHTTP01, ChallengeTLSALPN01:
		if wildcard {
			return inField("challenge", fault.Invalidf("use --challenge dns-01 with a DNS credential",
				"mapping %q: wildcard hosts cannot be validated with %s; they need DNS-01", m.ID, m.Challenge))
		}
	case ChallengeDNS01:
		if m.DNSCredential == "" {
			return inField("dns_credential", fault.Invalidf("name a credential with --dns-credential (see 'p2ptls dns-credential list')",
				"mapping %q: DNS-01 needs a DNS credential", m.ID))
		}
		if !v.creds[m.DNSCredential] {
			return inField("dns_credential", fault.Invalidf("add it with 'p2ptls dns-credential add'", "mapping %q: DNS credential %q does not exist", m.ID, m.DNSCredential))
		}
	default:
		return inField("challenge", fault.Invalidf(`use "http-01", "tls-alpn-01" or "dns-01"`, "mapping %q: unknown challenge %q", m.ID, m.Challenge))
	}
	switch m.KeyType {
	case "", "ec256", "ec384", "rsa2048", "rsa4096":
	default:
		return inField("key_type", fault.Invalidf(`use "ec256", "ec384", "rsa2048" or "rsa4096"`, "mapping %q: unknown key_type %q", m.ID, m.KeyType))
	}
	return nil
}

// inField names the key of a mapping that err is about, so that the
// message can give its line: p2ptls.toml's, or the mapping record's.
func inField(field string, err error) error { return &FieldError{Field: field, Err: err} }

// EntryError is a validation error of one entry of a p2ptls.toml table
// ("mappings[3]: …"). ParseConfig turns it into the line of the file,
// LoadConfig into the mapping's record and its line.
type EntryError struct {
	Table string // "listeners", "mappings", "dns_credentials"
	Index int
	Err   error
}

func (e *EntryError) Error() string { return fmt.Sprintf("%s[%d]: %v", e.Table, e.Index, e.Err) }
func (e *EntryError) Unwrap() error { return e.Err }

// FieldError names the key of the entry that is wrong, for the line.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

const hintURL = "give an http:// or https:// URL, e.g. http://127.0.0.1:8080"

// validateUpstream checks a reverse-proxy target URL.
func validateUpstream(raw string) error { return checkURL("upstream", raw) }

// checkURL checks an http(s) URL with a host and without credentials:
// "user:password@" would sit in argv, in p2ptls.toml (and every backup), in
// "listener list" and in logs. Messages show the URL with its user
// information masked, never the password. field names the key.
func checkURL(field, raw string) error {
	shown := MaskUserinfo(raw)
	var err error
	u, perr := url.Parse(raw)
	switch {
	case perr != nil:
		err = fault.Invalidf(hintURL, "%s %q is not a URL", field, shown)
	case u.User != nil || strings.Contains(u.Host, "@"):
		err = fault.Invalidf("give the URL without \"user:password@\": credentials do not belong in argv or p2ptls.toml; let the upstream trust p2ptls by its network address or client certificate instead",
			"%s %q carries a user name or password", field, shown)
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		err = fault.Invalidf(hintURL, "%s %q is not an http:// or https:// URL with a host", field, shown)
	default:
		return nil
	}
	return &FieldError{Field: field, Err: err}
}

// MaskUserinfo replaces the user information of a URL ("user:pass@") with
// "***@", also in strings url.Parse refuses, so that a message can show the
// URL without its secret.
func MaskUserinfo(raw string) string {
	start := 0
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + 3
	}
	end := len(raw)
	if i := strings.IndexAny(raw[start:], "/?#"); i >= 0 {
		end = start + i
	}
	at := strings.LastIndexByte(raw[start:end], '@')
	if at < 0 {
		return raw
	}
	return raw[:start] + "***" + raw[start+at:]
}

// entryLine finds the line (from 1) of entry e in p2ptls.toml content b:
// the line of its field when the error names one and the entry sets it,
// else the line of its "[[table]]" header; 0 when the entry is not written
// as an array-of-tables entry (an inline array, say).
func entryLine(b []byte, e *EntryError) (line int, field string) {
	var fe *FieldError
	if errors.As(e.Err, &fe) {
		field = fe.Field
	}
	header := "[[" + e.Table + "]]"
	n := -1
	for i, l := range strings.Split(string(b), "\n") {
		t := strings.ReplaceAll(strings.TrimSpace(l), " ", "")
		if strings.HasPrefix(t, "[") {
			if n == e.Index {
				break // the entry ended without setting field
			}
			if strings.HasPrefix(t, header) {
				if n++; n == e.Index {
					line = i + 1
				}
			}
			continue
		}
		if n == e.Index && field != "" {
			key, _, ok := strings.Cut(t, "=")
			if ok && strings.Trim(key, `"'`) == field {
				return i + 1, field
			}
		}
	}
	return line, field
}
