package state

import (
	"reflect"
	"testing"
)

// FuzzParseConfig: whatever bytes p2ptls.toml holds, loading never panics,
// and a file that loads is saved (encodeConfig, what SaveConfig writes)
// into a file that loads to the same config, and is then stable.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"schema_version = 1\n",
		"schema_version = 2\n",
		"schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":443\"\nupstream = \"http://127.0.0.1:8080\"\n" +
			"[[mappings]]\nid = \"m\"\nlistener = \"web\"\nhosts = [\"A.Example.COM.\", \"*.bücher.example\"]\nsource = \"self-signed\"\ndays = 30\n",
		"schema_version = 1\n[acme]\ndns_resolvers = [\"127.0.0.1:53\"]\n[[dns_credentials]]\nname = \"cf\"\nprovider = \"cloudflare\"\nenabled = true\n" +
			"[[listeners]]\nname = \"web\"\naddr = \":443\"\n[[mappings]]\nid = \"w\"\nlistener = \"web\"\nhosts = [\"*.example.com\"]\nsource = \"acme\"\nchallenge = \"dns-01\"\ndns_credential = \"cf\"\n",
		"schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":443\"\nupstream = \"http://u:p@h\"\n",
		"schema_version = 1\nlisteners = [{name = \"web\", addr = \":443\"}]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		saved, err := encodeConfig(cfg)
		if err != nil {
			t.Fatalf("a config that loads does not save: %v\n%s", err, b)
		}
		again, err := ParseConfig(saved)
		if err != nil {
			t.Fatalf("a saved config does not load: %v\n%s", err, saved)
		}
		if !reflect.DeepEqual(normalNil(cfg), normalNil(again)) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", cfg, again)
		}
		if resaved, err := encodeConfig(again); err != nil || string(resaved) != string(saved) {
			t.Fatalf("saving is not stable (%v):\n%s\n---\n%s", err, saved, resaved)
		}
	})
}

// normalNil makes empty slices nil, which TOML cannot tell apart.
func normalNil(c *Config) *Config {
	out := *c
	if len(out.Listeners) == 0 {
		out.Listeners = nil
	}
	if len(out.Mappings) == 0 {
		out.Mappings = nil
	}
	if len(out.DNSCredentials) == 0 {
		out.DNSCredentials = nil
	}
	if len(out.ACME.DNSResolvers) == 0 {
		out.ACME.DNSResolvers = nil
	}
	out.Mappings = append([]Mapping(nil), out.Mappings...)
	for i := range out.Mappings {
		if len(out.Mappings[i].Hosts) == 0 {
			out.Mappings[i].Hosts = nil
		}
	}
	return &out
}
