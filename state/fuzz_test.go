package state

import (
	"reflect"
	"testing"
)

// FuzzParseConfig: whatever bytes p2ptls.toml holds, loading never panics,
// and a file that loads is saved (encodeConfig and encodeRecord, what a
// save writes) into files that load to the same config, and is then
// stable.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"schema_version = 1\n",
		"schema_version = 2\n",
		"schema_version = 3\n",
		"schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":443\"\nupstream = \"http://127.0.0.1:8080\"\n" +
			"[[mappings]]\nid = \"m\"\nlistener = \"web\"\nhosts = [\"A.Example.COM.\", \"*.bücher.example\"]\nsource = \"self-signed\"\ndays = 30\n",
		"schema_version = 1\n[acme]\ndns_resolvers = [\"127.0.0.1:53\"]\n[[dns_credentials]]\nname = \"cf\"\nprovider = \"cloudflare\"\nenabled = true\n" +
			"[[listeners]]\nname = \"web\"\naddr = \":443\"\n[[mappings]]\nid = \"w\"\nlistener = \"web\"\nhosts = [\"*.example.com\"]\nsource = \"acme\"\nchallenge = \"dns-01\"\ndns_credential = \"cf\"\n",
		"schema_version = 1\n[[listeners]]\nname = \"web\"\naddr = \":443\"\nupstream = \"http://u:p@h\"\n",
		"schema_version = 1\nlisteners = [{name = \"web\", addr = \":443\"}]\n",
		"schema_version = 2\n[[listeners]]\nname = \"web\"\naddr = \":443\"\n[[mappings]]\nid = \"m\"\nlistener = \"web\"\nhosts = [\"a.example.com\"]\nsource = \"manual\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseConfig(b)
		if err != nil {
			return
		}
		top, records := encodeFiles(t, cfg)
		again, err := parseFiles(top, records)
		if err != nil {
			t.Fatalf("a saved config does not load: %v\n%s", err, top)
		}
		want := normalNil(cfg)
		want.SchemaVersion = SchemaVersion
		sortMappings(want.Mappings) // records load in the order of their ids
		if got := normalNil(again); !reflect.DeepEqual(want, got) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", want, got)
		}
		top2, records2 := encodeFiles(t, again)
		if string(top2) != string(top) || !reflect.DeepEqual(records, records2) {
			t.Fatalf("saving is not stable:\n%s\n---\n%s", top, top2)
		}
	})
}

// FuzzParseMapping: whatever bytes a record holds, parsing never panics,
// and a record that parses is saved into one that parses to the same
// mapping, and is then stable.
func FuzzParseMapping(f *testing.F) {
	for _, s := range []string{
		"id = \"m\"\nlistener = \"web\"\nhosts = [\"a.example.com\"]\nsource = \"self-signed\"\ndays = 30\n",
		"id = \"other\"\n",
		"listener = \"web\"\n",
		"id = \"m\"\nport = 1\n",
		"id = \"m\"\n[[mappings]]\nid = \"m\"\n",
		"id = 'm'\nhosts = ['*.example.com']\nsource = 'acme'\nchallenge = 'dns-01'\ndns_credential = 'cf'\nkey_type = 'ec384'\nprofile = 'shortlived'\nupstream = 'http://127.0.0.1:8080'\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMapping("m", b)
		if err != nil {
			return
		}
		saved, err := encodeRecord(&m)
		if err != nil {
			t.Fatalf("a record that parses does not save: %v\n%s", err, b)
		}
		again, err := ParseMapping("m", saved)
		if err != nil {
			t.Fatalf("a saved record does not parse: %v\n%s", err, saved)
		}
		if digest(&m) != digest(&again) {
			t.Fatalf("round trip changed the mapping:\n%+v\n%+v", m, again)
		}
		if resaved, err := encodeRecord(&again); err != nil || string(resaved) != string(saved) {
			t.Fatalf("saving is not stable (%v):\n%s\n---\n%s", err, saved, resaved)
		}
	})
}

// encodeFiles is what a save of cfg writes: p2ptls.toml and the records.
func encodeFiles(t *testing.T, cfg *Config) ([]byte, map[string][]byte) {
	t.Helper()
	top, err := encodeConfig(cfg)
	if err != nil {
		t.Fatalf("a config that loads does not save: %v", err)
	}
	records := map[string][]byte{}
	for i := range cfg.Mappings {
		b, err := encodeRecord(&cfg.Mappings[i])
		if err != nil {
			t.Fatalf("a mapping that loads does not save: %v", err)
		}
		records[cfg.Mappings[i].ID] = b
	}
	return top, records
}

// parseFiles loads a schema_version 2 state from its files, as
// LoadConfig does.
func parseFiles(top []byte, records map[string][]byte) (*Config, error) {
	cfg, err := ParseConfig(top)
	if err != nil {
		return nil, err
	}
	for id, b := range records {
		m, err := ParseMapping(id, b)
		if err != nil {
			return nil, err
		}
		cfg.Mappings = append(cfg.Mappings, m)
	}
	sortMappings(cfg.Mappings)
	return cfg, cfg.Validate()
}

// normalNil makes empty slices nil, which TOML cannot tell apart.
func normalNil(c *Config) *Config {
	out := *c
	out.loaded = nil
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
