package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state/fault"
)

// ConfigFile is the desired state's settings, listeners and DNS
// credential references (and, in schema_version 1, its mappings), written
// by p2ptls and editable by hand.
const ConfigFile = "p2ptls.toml"

// RecordsDir holds one record per mapping, "mappings/<id>.toml", in
// schema_version 2: adding or removing a mapping writes one small file,
// whatever the number of mappings, and every record fits a value of a
// distributed store.
const RecordsDir = "mappings"

// SchemaVersion is the layout this build writes. It reads schemaVersion1
// too, and the first change under the lock migrates such a state.
const SchemaVersion = 2

// schemaVersion1 keeps every mapping in p2ptls.toml as [[mappings]].
const schemaVersion1 = 1

// configHeader is written at the top of every saved p2ptls.toml.
const configHeader = "# p2ptls desired state. Hand edits are allowed: p2ptls validates this file\n" +
	"# and mappings/*.toml on every read and never overwrites a file with an error.\n" +
	"# Each mapping is its own file, mappings/<id>.toml.\n\n"

// recordHeader is written at the top of every saved mapping record.
const recordHeader = "# p2ptls mapping. Hand edits are allowed and validated on every read;\n" +
	"# the file name is the id.\n\n"

// hintFixFile is the hint for every error found in a hand-edited file.
const hintFixFile = "fix the file by hand; p2ptls will not overwrite a file it cannot read"

// Config is the desired state: p2ptls.toml and, in schema_version 2, the
// mapping records. Mappings loaded from records are in the order of their
// ids (records have no other order; schema_version 1: the order of the
// file); a caller's appends stay where they are until the next load.
type Config struct {
	SchemaVersion  int             `toml:"schema_version"`
	ACME           ACMESettings    `toml:"acme,omitempty"`
	Listeners      []Listener      `toml:"listeners,omitempty"`
	Mappings       []Mapping       `toml:"mappings,omitempty"`
	DNSCredentials []DNSCredential `toml:"dns_credentials,omitempty"`

	// loaded is what the store held when the config was loaded (or last
	// saved), so that a save writes only what changed; nil for a config
	// that did not come from a store.
	loaded *baseline
	// sums are the digests of Mappings as a load found them in the memo,
	// for newBaseline; nil when they must be computed.
	sums []uint64
}

// ACMESettings are defaults for ACME issuance.
type ACMESettings struct {
	// Directory is the ACME directory URL of the registered account that
	// issues certificates.
	Directory string `toml:"directory,omitempty"`
	// DNSResolvers (HOST:PORT) check DNS-01 propagation; empty means the
	// system's resolvers.
	DNSResolvers []string `toml:"dns_resolvers,omitempty"`
	// DeployHook is the /bin/sh command run after each certificate that
	// serve or "cert renew" (without --deploy-hook) renews or issues.
	DeployHook string `toml:"deploy_hook,omitempty"`
	// DeployHookTimeout bounds it, as a Go duration ("5m", "30s"); empty
	// means 5m.
	DeployHookTimeout string `toml:"deploy_hook_timeout,omitempty"`
	// Concurrency is how many ACME orders "cert issue", "cert renew" and
	// serve make at once; 0 (unset) means the default (acme package).
	Concurrency int `toml:"concurrency,omitempty"`
}

// MaxACMEConcurrency bounds acme.concurrency.
const MaxACMEConcurrency = 64

// defaultHookTimeout is acme.deploy_hook_timeout when it is not set.
const defaultHookTimeout = 5 * time.Minute

// maxHookTimeout keeps a hook that hangs from holding the renewals that
// follow it for longer than a day.
const maxHookTimeout = 24 * time.Hour

// HookTimeout is acme.deploy_hook_timeout, validated when the file was
// read: the default when it is not set.
func (a ACMESettings) HookTimeout() time.Duration {
	d, err := parseHookTimeout(a.DeployHookTimeout)
	if err != nil || d == 0 {
		return defaultHookTimeout
	}
	return d
}

// parseHookTimeout reads a deploy hook timeout; "" is 0 (the default).
func parseHookTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Second || d > maxHookTimeout {
		return 0, fault.Invalidf(`write a duration between 1s and 24h, e.g. "5m"`, "deploy_hook_timeout %q is not a duration between 1s and 24h", s)
	}
	return d, nil
}

// validateHook checks the [acme] deploy hook settings of p2ptls.toml
// content b, naming the line of the field at fault.
func (a ACMESettings) validateHook(b []byte) error {
	var err error
	field := "deploy_hook_timeout"
	if _, err = parseHookTimeout(a.DeployHookTimeout); err == nil && a.DeployHook != "" && strings.TrimSpace(a.DeployHook) == "" {
		field, err = "deploy_hook", fault.Invalidf("give a shell command, or remove the line", "deploy_hook is blank")
	}
	if err == nil && strings.ContainsRune(a.DeployHook, 0) {
		field, err = "deploy_hook", fault.Invalidf("remove the NUL byte", "deploy_hook contains a NUL byte")
	}
	if err == nil && (a.Concurrency < 0 || a.Concurrency > MaxACMEConcurrency) {
		field, err = "concurrency", fault.Invalidf(fmt.Sprintf("give a number of orders from 1 to %d, or remove the line for the default", MaxACMEConcurrency),
			"concurrency %d is not between 1 and %d", a.Concurrency, MaxACMEConcurrency)
	}
	if err == nil {
		return nil
	}
	if line := tableFieldLine(b, "acme", field); line > 0 {
		return fmt.Errorf("line %d, field %q: %w", line, "acme."+field, err)
	}
	return fmt.Errorf("field %q: %w", "acme."+field, err)
}

// tableFieldLine is the line of key field in [table] of TOML content b,
// or 0 when it is not found.
func tableFieldLine(b []byte, table, field string) int {
	in := false
	for i, l := range strings.Split(string(b), "\n") {
		t := strings.ReplaceAll(strings.TrimSpace(l), " ", "")
		if strings.HasPrefix(t, "[") {
			in = t == "["+table+"]"
			continue
		}
		if key, _, ok := strings.Cut(t, "="); ok && in && strings.Trim(key, `"'`) == field {
			return i + 1
		}
	}
	return 0
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

// LoadConfig reads the desired state: p2ptls.toml and, in schema_version
// 2, every record in mappings/. A state without p2ptls.toml is an empty
// config. An error of a file is a *ConfigFileError naming that file. It
// reads a schema_version 1 state as it is: only a change migrates it.
func LoadConfig(ctx context.Context, s Reader) (*Config, error) {
	return loadConfig(ctx, s, false)
}

// loadConfig is LoadConfig; quick is Update's way of reading the records
// (see recordsMemo).
func loadConfig(ctx context.Context, s Reader, quick bool) (*Config, error) {
	if err := settleSwap(ctx, s); err != nil {
		return nil, err
	}
	b, err := s.Read(ctx, ConfigFile)
	var cfg *Config
	version := 0
	switch {
	case errors.Is(err, fs.ErrNotExist):
		cfg = &Config{SchemaVersion: SchemaVersion}
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", ConfigFile, err)
	default:
		if cfg, err = ParseConfig(b); err != nil {
			return nil, &ConfigFileError{Path: Locate(s, ConfigFile), Err: err}
		}
		version = cfg.SchemaVersion
	}
	if version == schemaVersion1 {
		// p2ptls.toml holds the mappings; a mappings/ beside it is not
		// part of this state (migrating refuses to replace it).
		cfg.loaded = &baseline{version: version}
		return cfg, nil
	}
	trusted, err := loadRecords(ctx, s, cfg, quick)
	if err != nil {
		return nil, err
	}
	cfg.loaded = newBaseline(version, cfg)
	cfg.loaded.trusted = trusted
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
func Locate(s Reader, name string) string {
	if t, ok := s.(*Tx); ok {
		s = t.s // a change names the files of the store it changes
	}
	if d, ok := s.(*Dir); ok {
		if p, err := d.path(name); err == nil {
			return p
		}
	}
	return name
}

// ParseConfig decodes and validates p2ptls.toml content: a whole
// schema_version 1 state, or the settings, listeners and DNS credentials of
// schema_version 2, which keeps its mappings in records (ParseMapping).
// Errors name the line and the field; they are all bad input (exit 2).
func ParseConfig(b []byte) (*Config, error) {
	// One strict decode does for the common case; it is most of the cost of
	// loading 100k mappings, so the slice is sized up front.
	cfg := Config{Mappings: make([]Mapping, 0, bytes.Count(b, []byte("[[mappings]]")))}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	decErr := dec.Decode(&cfg)
	if decErr != nil || !knownSchema(cfg.SchemaVersion) {
		// A file of another schema fails in other ways too: say the
		// version first, since that is what to fix.
		if err := checkSchemaVersion(b); err != nil {
			return nil, err
		}
		return nil, decodeError(decErr)
	}
	if cfg.SchemaVersion != schemaVersion1 && len(cfg.Mappings) > 0 {
		err := &EntryError{Table: "mappings", Index: 0, Err: fault.Invalidf("move each [[mappings]] entry to a file of its own, mappings/ID.toml, without the [[mappings]] line",
			"schema_version %d keeps mappings in %s/<id>.toml, not in %s", cfg.SchemaVersion, RecordsDir, ConfigFile)}
		return nil, fault.AsInvalid(locateEntry(b, err), "")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fault.AsInvalid(locateEntry(b, err), hintFixFile)
	}
	if err := cfg.ACME.validateHook(b); err != nil {
		return nil, fault.AsInvalid(err, hintFixFile)
	}
	return &cfg, nil
}

// knownSchema reports whether this build reads schema_version v.
func knownSchema(v int) bool { return v == schemaVersion1 || v == SchemaVersion }

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
	case !knownSchema(*head.SchemaVersion):
		return fault.Invalidf("use the p2ptls version that wrote this file, or a newer one",
			"schema_version %d is not supported by this p2ptls, which reads schema_version %d and %d", *head.SchemaVersion, schemaVersion1, SchemaVersion)
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

// SaveConfig validates cfg and writes what changed since it was loaded
// (or last saved) as one Store.Apply: p2ptls.toml when its own part
// changed, the record of each mapping added or changed, a delete for each
// one removed; a schema_version 1 state is migrated (see migrate). A cfg
// that was not loaded from s replaces the whole desired state. The caller
// holds the lock; under Update, the commit saves tx.Config itself.
func SaveConfig(ctx context.Context, s Store, cfg *Config) error {
	// The reads of a migration (or of a config not loaded from s) may come
	// after the caller's first write, when the commit has begun and must
	// go on, so they do not stop with ctx; the writes below are still
	// refused with it if none has begun (noteChange).
	c, saved, err := cfg.change(context.WithoutCancel(ctx), s, time.Now())
	if err != nil {
		return err
	}
	if !c.Empty() {
		if err := s.Apply(ctx, c); err != nil {
			return fmt.Errorf("save %s: %w", ConfigFile, err)
		}
	}
	saved()
	return nil
}

// encodeConfig returns the content of p2ptls.toml for cfg, which has been
// validated: its settings, listeners and DNS credentials, never its
// mappings.
func encodeConfig(cfg *Config) ([]byte, error) {
	top := *cfg
	top.SchemaVersion, top.Mappings, top.loaded = SchemaVersion, nil, nil
	b, err := toml.Marshal(&top)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", ConfigFile, err)
	}
	return append([]byte(configHeader), b...), nil
}
