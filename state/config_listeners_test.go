package state

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// TestLoadListenersIsLoadConfigsTopFile: for every p2ptls.toml,
// LoadListeners and LoadTopConfig give what LoadConfig gives of it, or
// LoadConfig's error, when the records are fine.
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
		"settings":       "schema_version = 2\n[acme]\ndirectory = 'https://acme.example/dir'\ndns_resolvers = ['127.0.0.1:53']\n[[listeners]]\nname = 'web'\naddr = ':443'\n[[dns_credentials]]\nname = 'cf'\nprovider = 'cloudflare'\nenabled = true\n",
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
			top, terr := LoadTopConfig(ctx, s)
			for _, err := range []error{lerr, terr} {
				if (cerr == nil) != (err == nil) || (cerr != nil && cerr.Error() != err.Error()) {
					t.Fatalf("LoadListeners/LoadTopConfig: %v; LoadConfig: %v", err, cerr)
				}
			}
			if cerr != nil {
				return
			}
			if !reflect.DeepEqual(ls, cfg.Listeners) {
				t.Errorf("LoadListeners: %+v; LoadConfig: %+v", ls, cfg.Listeners)
			}
			u := top.Unmapped()
			if !reflect.DeepEqual(u.ACME, cfg.ACME) || !reflect.DeepEqual(u.Listeners, cfg.Listeners) || !reflect.DeepEqual(u.DNSCredentials, cfg.DNSCredentials) || len(u.Mappings) != 0 {
				t.Errorf("LoadTopConfig: %+v; LoadConfig: %+v", u, cfg)
			}
		})
	}
}
