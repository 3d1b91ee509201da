package state

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestLoadListenersIsLoadConfigsTopFile: for every p2ptls.toml, LoadListeners
// gives the listeners LoadConfig gives, or LoadConfig's error, when the
// records are fine.
func TestLoadListenersIsLoadConfigsTopFile(t *testing.T) {
	tops := map[string]string{
		"two listeners":  "schema_version = 2\n[[listeners]]\nname = 'web'\naddr = ':443'\nhttp_addr = ':80'\n[[listeners]]\nname = 'b'\naddr = '127.0.0.1:8443'\nfallback = 'reject'\n",
		"normalised":     "schema_version = 2\n[[listeners]]\nname = 'web'\naddr = '0.0.0.0:443'\n",
		"unknown field":  "schema_version = 2\n[[listeners]]\nname = 'web'\naddr = ':443'\nport = 1\n",
		"bad address":    "schema_version = 2\n[[listeners]]\nname = 'web'\naddr = 'nowhere'\n",
		"no schema":      "[[listeners]]\nname = 'web'\naddr = ':443'\n",
		"future schema":  "schema_version = 9\n",
		"not toml":       "schema_version = 2\n[[listeners]\n",
		"same address":   "schema_version = 2\n[[listeners]]\nname = 'a'\naddr = ':443'\n[[listeners]]\nname = 'b'\naddr = ':443'\n",
		"version 1 file": "schema_version = 1\n[[listeners]]\nname = 'web'\naddr = ':443'\n[[mappings]]\nid = 'a'\nlistener = 'web'\nhosts = ['a.example.com']\nsource = 'self-signed'\n",
		"none":           "",
	}
	for name, top := range tops {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if top != "" {
				if err := os.WriteFile(filepath.Join(root, ConfigFile), []byte(top), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := OpenDir(root, time.Second)
			ctx := context.Background()
			cfg, cerr := LoadConfig(ctx, s)
			ls, lerr := LoadListeners(ctx, s)
			if (cerr == nil) != (lerr == nil) || (cerr != nil && cerr.Error() != lerr.Error()) {
				t.Fatalf("LoadListeners: %v; LoadConfig: %v", lerr, cerr)
			}
			if cerr == nil && !reflect.DeepEqual(ls, cfg.Listeners) {
				t.Errorf("LoadListeners: %+v; LoadConfig: %+v", ls, cfg.Listeners)
			}
		})
	}
}
