package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state/fault"
)

// ConfigFile is the desired state, written by p2ptls and editable by hand.
const ConfigFile = "p2ptls.toml"

// SchemaVersion is the only p2ptls.toml schema this build reads and writes.
const SchemaVersion = 1

// configHeader is written at the top of every saved p2ptls.toml.
const configHeader = "# p2ptls desired state. Hand edits are allowed: p2ptls validates this file\n" +
	"# on every read and never overwrites it while it has an error.\n\n"

// hintFixFile is the hint for every error found in a hand-edited file.
const hintFixFile = "fix the file by hand; p2ptls will not overwrite a file it cannot read"

// Config is the content of p2ptls.toml.
type Config struct {
	SchemaVersion  int             `toml:"schema_version"`
	ACME           ACMESettings    `toml:"acme,omitempty"`
	Listeners      []Listener      `toml:"listeners,omitempty"`
	Mappings       []Mapping       `toml:"mappings,omitempty"`
	DNSCredentials []DNSCredential `toml:"dns_credentials,omitempty"`
}

// ACMESettings are defaults for ACME issuance.
type ACMESettings struct {
	// Directory is the ACME directory URL of the registered account that
	// issues certificates.
	Directory string `toml:"directory,omitempty"`
	// DNSResolvers (HOST:PORT) check DNS-01 propagation; empty means the
	// system's resolvers.
	DNSResolvers []string `toml:"dns_resolvers,omitempty"`
}

// Mapping binds hosts on one HTTPS listener to a certificate source.
type Mapping struct {
	ID       string   `toml:"id"`
	Listener string   `toml:"listener"`
	Hosts    []string `toml:"hosts"`
	Source   string   `toml:"source"`
	Upstream string   `toml:"upstream,omitempty"`
	// Source "file": the certificate chain and key, re-read when they change.
	CertFile string `toml:"cert_file,omitempty"`
	KeyFile  string `toml:"key_file,omitempty"`
	// Source "self-signed": validity in days.
	Days int `toml:"days,omitempty"`
	// Source "acme".
	Challenge     string `toml:"challenge,omitempty"`
	DNSCredential string `toml:"dns_credential,omitempty"`
	KeyType       string `toml:"key_type,omitempty"`
	Profile       string `toml:"profile,omitempty"`
}

// DNSCredential references a DNS provider token kept under secrets/.
type DNSCredential struct {
	Name       string `toml:"name"`
	Provider   string `toml:"provider"`
	Enabled    bool   `toml:"enabled"`
	APIBaseURL string `toml:"api_base_url,omitempty"`
}

// LoadConfig reads p2ptls.toml; a state without one is an empty config.
func LoadConfig(ctx context.Context, s Store) (*Config, error) {
	b, err := s.Read(ctx, ConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{SchemaVersion: SchemaVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ConfigFile, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, &ConfigFileError{Path: Locate(s, ConfigFile), Err: err}
	}
	return cfg, nil
}

// ConfigFileError is a p2ptls.toml that does not load: the state is
// broken, whatever the request. It keeps the kind of the problem (bad
// input, exit 2 on the command line), and the API answers it 500.
type ConfigFileError struct {
	Path string
	Err  error
}

func (e *ConfigFileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *ConfigFileError) Unwrap() error { return e.Err }

// Locate names a store file the way the user knows it: its path when the
// store is a local directory.
func Locate(s Store, name string) string {
	if d, ok := s.(*Dir); ok {
		if p, err := d.path(name); err == nil {
			return p
		}
	}
	return name
}

// ParseConfig decodes and validates p2ptls.toml content. Errors name the
// line and the field; they are all bad input (exit 2).
func ParseConfig(b []byte) (*Config, error) {
	// One strict decode does for the common case; it is most of the cost of
	// loading 100k mappings, so the slice is sized up front.
	cfg := Config{Mappings: make([]Mapping, 0, bytes.Count(b, []byte("[[mappings]]")))}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	decErr := dec.Decode(&cfg)
	if decErr != nil || cfg.SchemaVersion != SchemaVersion {
		// A file of another schema fails in other ways too: say the
		// version first, since that is what to fix.
		if err := checkSchemaVersion(b); err != nil {
			return nil, err
		}
		return nil, decodeError(decErr)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fault.AsInvalid(locateEntry(b, err), hintFixFile)
	}
	return &cfg, nil
}

// checkSchemaVersion reads only schema_version and refuses a missing or
// unknown one.
func checkSchemaVersion(b []byte) error {
	var head struct {
		SchemaVersion *int `toml:"schema_version"`
	}
	if err := toml.Unmarshal(b, &head); err != nil {
		return decodeError(err)
	}
	switch {
	case head.SchemaVersion == nil:
		return fault.Invalidf(fmt.Sprintf("add schema_version = %d at the top of the file", SchemaVersion),
			"schema_version is missing")
	case *head.SchemaVersion != SchemaVersion:
		return fault.Invalidf("use the p2ptls version that wrote this file, or a newer one",
			"schema_version %d is not supported by this p2ptls, which reads schema_version %d", *head.SchemaVersion, SchemaVersion)
	}
	return nil
}

// locateEntry prefixes a validation error of one entry with its line and
// field, as decode errors are: "line 12, field "mappings[3].upstream": …".
func locateEntry(b []byte, err error) error {
	var ee *EntryError
	if !errors.As(err, &ee) {
		return err
	}
	line, field := entryLine(b, ee)
	if line == 0 {
		return err
	}
	name := fmt.Sprintf("%s[%d]", ee.Table, ee.Index)
	if field != "" {
		name += "." + field
	}
	return fmt.Errorf("line %d, field %q: %w", line, name, ee.Err)
}

// decodeError turns a go-toml error into "line N, field F: problem".
func decodeError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := &strict.Errors[0]
		row, _ := e.Position()
		return fault.Invalidf(hintFixFile, "line %d: unknown field %q", row, strings.Join(e.Key(), "."))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		if key := de.Key(); len(key) > 0 {
			return fault.Invalidf(hintFixFile, "line %d, column %d, field %q: %s", row, col, strings.Join(key, "."), de.Error())
		}
		return fault.Invalidf(hintFixFile, "line %d, column %d: %s", row, col, de.Error())
	}
	return fault.AsInvalid(err, hintFixFile)
}

// SaveConfig validates cfg and writes it atomically. The caller holds the lock.
func SaveConfig(ctx context.Context, s Store, cfg *Config) error {
	b, err := encodeConfig(cfg)
	if err != nil {
		return err
	}
	if err := s.Write(ctx, ConfigFile, b, SecretMode); err != nil {
		return fmt.Errorf("save %s: %w", ConfigFile, err)
	}
	return nil
}

// encodeConfig validates cfg and returns the content of p2ptls.toml.
func encodeConfig(cfg *Config) ([]byte, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ConfigFile, err)
	}
	return append([]byte(configHeader), b...), nil
}
