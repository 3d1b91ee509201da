package etcdstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// Environment variables that configure the connection to etcd: the one
// place for their names. Credentials come from files, never from argv.
const (
	EnvCAFile       = "P2PTLS_ETCD_CA_FILE"       // PEM CA that etcd's server certificate is verified with
	EnvCertFile     = "P2PTLS_ETCD_CERT_FILE"     // PEM client certificate for etcd's client-cert auth
	EnvKeyFile      = "P2PTLS_ETCD_KEY_FILE"      // its private key
	EnvUser         = "P2PTLS_ETCD_USER"          // etcd user name
	EnvPasswordFile = "P2PTLS_ETCD_PASSWORD_FILE" // file holding that user's password
)

// Scheme is the URL scheme of an etcd store.
const Scheme = "etcd://"

// Defaults of Config.
const (
	DefaultSessionTTL     = 10 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultRequestTimeout = 15 * time.Second
)

// Config says where the store is and how to reach it.
type Config struct {
	Endpoints []string // HOST:PORT of the members
	Prefix    string   // key prefix without the leading slash: "p2ptls/prod"

	CAFile, CertFile, KeyFile string // TLS to etcd; used when CAFile or CertFile is set
	User                      string
	Password                  string // read from EnvPasswordFile; never printed

	// SessionTTL is the lease of the state lock and of claims: a holder
	// that dies frees them within it. DefaultSessionTTL when zero.
	SessionTTL time.Duration
	// DialTimeout bounds connecting and the first answer.
	// DefaultDialTimeout when zero.
	DialTimeout time.Duration
	// RequestTimeout bounds each request, so that a command facing a
	// cluster that went away fails rather than waits (the client waits
	// for a connection otherwise). DefaultRequestTimeout when zero.
	RequestTimeout time.Duration
}

// URL is the store's URL, without credentials.
func (c Config) URL() string {
	return Scheme + strings.Join(c.Endpoints, ",") + "/" + c.Prefix
}

const urlHint = "write it as etcd://HOST:PORT[,HOST:PORT…]/PREFIX, e.g. etcd://127.0.0.1:2379,[::1]:2379/p2ptls/prod"

var segment = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ParseURL reads etcd://HOST:PORT[,HOST:PORT…]/PREFIX. Credentials in the
// URL are refused: they would end up in argv and in logs.
func ParseURL(s string) (Config, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Config{}, fault.Invalidf(urlHint, "the store URL %q does not start with %s", s, Scheme)
	}
	hosts, prefix, ok := strings.Cut(rest, "/")
	if !ok || prefix == "" {
		return Config{}, fault.Invalidf(urlHint, "the store URL %q has no key prefix", s)
	}
	if strings.Contains(hosts, "@") {
		return Config{}, fault.Invalidf(fmt.Sprintf("put the user in %s and the password in a file named by %s", EnvUser, EnvPasswordFile),
			"the store URL %q holds credentials", s)
	}
	if strings.ContainsAny(prefix, "?#") {
		return Config{}, fault.Invalidf(urlHint, "the store URL %q has a query or fragment", s)
	}
	var c Config
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return Config{}, fault.Invalidf(urlHint, "the store URL %q has an endpoint %q that is not HOST:PORT", s, h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return Config{}, fault.Invalidf(urlHint, "the store URL %q has an endpoint %q whose port is not 1-65535", s, h)
		}
		c.Endpoints = append(c.Endpoints, h)
	}
	for _, seg := range strings.Split(prefix, "/") {
		if !segment.MatchString(seg) || seg == "." || seg == ".." {
			return Config{}, fault.Invalidf("use segments of letters, digits, '.', '_' and '-' joined by '/'; "+urlHint,
				"the store URL %q has a bad prefix segment %q", s, seg)
		}
	}
	c.Prefix = prefix
	return c, nil
}

// ConfigFromEnv fills c's TLS files and credentials from the environment.
// The password is read from its file now (trailing newline trimmed).
func ConfigFromEnv(c Config, getenv func(string) string) (Config, error) {
	c.CAFile = getenv(EnvCAFile)
	c.CertFile = getenv(EnvCertFile)
	c.KeyFile = getenv(EnvKeyFile)
	c.User = getenv(EnvUser)
	if (c.CertFile == "") != (c.KeyFile == "") {
		return Config{}, fault.Invalidf(fmt.Sprintf("set both %s and %s, or neither", EnvCertFile, EnvKeyFile),
			"a client certificate for etcd needs both a certificate and a key file")
	}
	pwFile := getenv(EnvPasswordFile)
	if (c.User == "") != (pwFile == "") {
		return Config{}, fault.Invalidf(fmt.Sprintf("set both %s and %s, or neither", EnvUser, EnvPasswordFile),
			"etcd credentials need both a user and a password file")
	}
	if pwFile != "" {
		b, err := userfile.Read(pwFile, userfile.MaxSecret)
		if err != nil {
			return Config{}, fmt.Errorf("read the etcd password file (%s): %w", EnvPasswordFile, err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
		if c.Password == "" {
			return Config{}, fault.Invalidf("write the password into it", "the etcd password file %s is empty", pwFile)
		}
	}
	return c, nil
}

// tlsConfig is the TLS to etcd, nil when none is configured.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := userfile.Read(c.CAFile, userfile.MaxPEM)
		if err != nil {
			return nil, fmt.Errorf("read the etcd CA file (%s): %w", EnvCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fault.Invalidf("give a PEM file with the CA certificate that signed etcd's server certificate",
				"the etcd CA file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		certPEM, err := userfile.Read(c.CertFile, userfile.MaxPEM)
		if err != nil {
			return nil, fmt.Errorf("read the etcd client certificate (%s): %w", EnvCertFile, err)
		}
		keyPEM, err := userfile.Read(c.KeyFile, userfile.MaxPEM)
		if err != nil {
			return nil, fmt.Errorf("read the etcd client key (%s): %w", EnvKeyFile, err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fault.Invalidf(fmt.Sprintf("check that %s and %s are a PEM certificate and its key", EnvCertFile, EnvKeyFile),
				"the etcd client certificate %s and key %s do not fit: %v", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
