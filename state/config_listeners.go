package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// TopConfig is what p2ptls.toml holds besides the mappings: the settings,
// listeners and DNS credential references.
type TopConfig struct {
	ACME           ACMESettings
	Listeners      []Listener
	DNSCredentials []DNSCredential
}

// LoadTopConfig reads p2ptls.toml alone, validated as LoadConfig validates
// that file (its errors are LoadConfig's for it), for the commands that
// print what it holds and nothing of the mappings: in schema_version 2 the
// mappings are records, and reading 100k of them to print one listener
// costs half a second. A record that does not load is not seen here; the
// commands that read mappings (and doctor) report it. A state without
// p2ptls.toml holds nothing.
func LoadTopConfig(ctx context.Context, s Reader) (TopConfig, error) {
	b, err := s.Read(ctx, ConfigFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return TopConfig{}, nil
	case err != nil:
		return TopConfig{}, fmt.Errorf("read %s: %w", ConfigFile, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return TopConfig{}, &ConfigFileError{Path: Locate(s, ConfigFile), Err: err}
	}
	return TopConfig{ACME: cfg.ACME, Listeners: cfg.Listeners, DNSCredentials: cfg.DNSCredentials}, nil
}

// LoadListeners is LoadTopConfig's listeners.
func LoadListeners(ctx context.Context, s Reader) ([]Listener, error) {
	t, err := LoadTopConfig(ctx, s)
	return t.Listeners, err
}

// Unmapped is t as a Config without mappings, for the read-only helpers
// that take a Config and look at none of its mappings (acme.ListAccounts,
// dnscred.Get). Never save it: SaveConfig takes a Config that was not
// loaded as the whole desired state.
func (t TopConfig) Unmapped() *Config {
	return &Config{SchemaVersion: SchemaVersion, ACME: t.ACME, Listeners: t.Listeners, DNSCredentials: t.DNSCredentials}
}

// FindListenerIn returns the listener called name among ls, or the
// not-found error Config.FindListener gives.
func FindListenerIn(ls []Listener, name string) (Listener, error) {
	for _, l := range ls {
		if l.Name == name {
			return l, nil
		}
	}
	return Listener{}, notFound("listener", name, "p2ptls listener list")
}
