// Package management holds management TLS: the settings that choose its mode
// and, in auto mode, the local CA and server certificate kept under
// certs/management. The CA is generated once and never replaced silently:
// every agent trusts it.
package management

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/pki"
)

// Modes of MANAGEMENT_TLS_MODE.
const (
	ModeAuto     = "auto"
	ModeProvided = "provided"
	ModeOff      = "off"
)

// DefaultListen is MANAGEMENT_LISTEN's default.
const DefaultListen = ":8443"

// Settings are the management TLS settings, from the environment or flags.
type Settings struct {
	Mode              string
	CertFile, KeyFile string // mode provided
	AllowInsecureHTTP bool   // mode off
	PublicURL         string
	ExtraHosts        []string
	Listen            string
}

// Validate checks the settings on their own and normalises them.
func (s *Settings) Validate() error {
	if s.Mode == "" {
		s.Mode = ModeAuto
	}
	switch s.Mode {
	case ModeAuto:
	case ModeProvided:
		if s.CertFile == "" || s.KeyFile == "" {
			return fault.Invalidf("set both to the certificate (chain) and key files, or use MANAGEMENT_TLS_MODE=auto",
				"MANAGEMENT_TLS_MODE=provided needs MANAGEMENT_TLS_CERT_FILE and MANAGEMENT_TLS_KEY_FILE")
		}
	case ModeOff:
		if !s.AllowInsecureHTTP {
			return fault.Invalidf("set MANAGEMENT_ALLOW_INSECURE_HTTP=true only for isolated development or behind a trusted TLS terminator; otherwise use MANAGEMENT_TLS_MODE=auto",
				"MANAGEMENT_TLS_MODE=off serves management over plain HTTP and requires MANAGEMENT_ALLOW_INSECURE_HTTP=true")
		}
	default:
		return fault.Invalidf("use auto, provided or off", "unknown MANAGEMENT_TLS_MODE %q", s.Mode)
	}
	if s.PublicURL != "" {
		if _, err := PublicHost(s.PublicURL); err != nil {
			return err
		}
	}
	for i, h := range s.ExtraHosts {
		n, err := serverName(h)
		if err != nil {
			return fault.AsInvalid(fmt.Errorf("MANAGEMENT_TLS_EXTRA_HOSTS: %w", err), "give comma-separated DNS names or IP addresses")
		}
		s.ExtraHosts[i] = n
	}
	if s.Listen == "" {
		s.Listen = DefaultListen
	}
	listen, err := hostname.ValidateListenAddr(s.Listen)
	if err != nil {
		return fault.AsInvalid(fmt.Errorf("MANAGEMENT_LISTEN: %w", err), "give HOST:PORT, e.g. :8443")
	}
	s.Listen = listen
	return nil
}

// SplitHosts splits a comma-separated host list, dropping empty entries.
func SplitHosts(list string) []string {
	var hosts []string
	for _, h := range strings.Split(list, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// PublicHost returns the host of MANAGEMENT_PUBLIC_URL, normalised.
func PublicHost(publicURL string) (string, error) {
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return "", fault.Invalidf("write it like https://mgmt.example.com:8443",
			"MANAGEMENT_PUBLIC_URL %q is not an http(s) URL with a host", publicURL)
	}
	h, err := serverName(u.Hostname())
	if err != nil {
		return "", fault.AsInvalid(fmt.Errorf("MANAGEMENT_PUBLIC_URL: %w", err), "write it like https://mgmt.example.com:8443")
	}
	return h, nil
}

// serverName is hostname.NormalizeServerName without IPv6 zones: "fe80::1%eth0"
// is no IP SAN, and as a DNS SAN it would be invalid and match nothing.
func serverName(h string) (string, error) {
	n, err := hostname.NormalizeServerName(h)
	if err == nil && strings.Contains(n, "%") {
		return "", fmt.Errorf("host %q is an IPv6 address with a zone, which a certificate cannot carry; drop the %%zone", h)
	}
	return n, err
}

// WantedNames are the names the auto server certificate must carry: the
// public URL's host, the extra hosts, the loopback names and this machine's
// host name. Settings must be validated.
func (s *Settings) WantedNames() pki.Names {
	var hosts []string
	if s.PublicURL != "" {
		if h, err := PublicHost(s.PublicURL); err == nil {
			hosts = append(hosts, h)
		}
	}
	hosts = append(hosts, s.ExtraHosts...)
	hosts = append(hosts, "localhost", "127.0.0.1", "::1")
	if h, err := os.Hostname(); err == nil {
		// A host name that is not a valid DNS name cannot go into a SAN.
		if n, err := hostname.NormalizeServerName(h); err == nil && net.ParseIP(n) == nil {
			hosts = append(hosts, n)
		}
	}
	return pki.ParseNames(hosts)
}
