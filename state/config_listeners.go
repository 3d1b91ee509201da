package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

// LoadListeners reads the listeners from p2ptls.toml alone, validated as
// LoadConfig validates that file (its errors are LoadConfig's for it), for
// the commands that print listeners and nothing else: in schema_version 2
// the mappings are records, and reading 100k of them to print one listener
// costs half a second. A record that does not load is not seen here; the
// commands that read mappings (and doctor) report it. A state without
// p2ptls.toml has no listeners.
func LoadListeners(ctx context.Context, s Reader) ([]Listener, error) {
	b, err := s.Read(ctx, ConfigFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", ConfigFile, err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, &ConfigFileError{Path: Locate(s, ConfigFile), Err: err}
	}
	return cfg.Listeners, nil
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
