package state

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
)

func TestConfigRoundTrip(t *testing.T) {
	d := OpenDir(t.TempDir(), time.Second)
	cfg, err := LoadConfig(context.Background(), d)
	if err != nil || cfg.SchemaVersion != SchemaVersion || len(cfg.Listeners) != 0 {
		t.Fatalf("empty state: %+v, %v", cfg, err)
	}
	want := &Config{
		SchemaVersion:  SchemaVersion,
		ACME:           ACMESettings{DNSResolvers: []string{"127.0.0.1:5353"}},
		Listeners:      []Listener{{Name: "web", Addr: ":443", HTTPAddr: ":80", Fallback: FallbackReject, Upstream: "http://127.0.0.1:8080"}},
		DNSCredentials: []DNSCredential{{Name: "cf", Provider: ProviderCloudflare, Enabled: true}},
		Mappings: []Mapping{
			{ID: "wild", Listener: "web", Hosts: []string{"*.example.com", "example.com"}, Source: SourceACME, Challenge: ChallengeDNS01, DNSCredential: "cf"},
			{ID: "self", Listener: "web", Hosts: []string{"a.example.org"}, Source: SourceSelfSigned, Days: 30},
		},
	}
	if err := SaveConfig(context.Background(), d, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	// Loaded mappings are in the order of their ids.
	if got.Listeners[0] != want.Listeners[0] || got.Mappings[1].DNSCredential != "cf" || got.Mappings[0].Days != 30 || got.ACME.DNSResolvers[0] != "127.0.0.1:5353" {
		t.Errorf("round trip: got %+v", got)
	}
}

func TestValidateNormalisesAndRefuses(t *testing.T) {
	base := func() *Config {
		return &Config{SchemaVersion: 1, Listeners: []Listener{{Name: "web", Addr: ":443"}}}
	}
	tests := []struct {
		desc   string
		mutate func(*Config)
		want   string // "" means valid
	}{
		{"default fallback", func(c *Config) {}, ""},
		{"hosts normalised", func(c *Config) {
			c.Mappings = []Mapping{{ID: "m", Listener: "web", Hosts: []string{"A.Example.COM."}, Source: SourceSelfSigned}}
		}, ""},
		{"same host twice on one listener", func(c *Config) {
			c.Mappings = []Mapping{
				{ID: "a", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceSelfSigned},
				{ID: "b", Listener: "web", Hosts: []string{"A.example.com"}, Source: SourceSelfSigned},
			}
		}, `already mapped on listener "web" by mapping "a"`},
		{"host twice in one mapping", func(c *Config) {
			c.Mappings = []Mapping{{ID: "a", Listener: "web", Hosts: []string{"a.example.com", "a.example.com."}, Source: SourceSelfSigned}}
		}, "twice"},
		{"wildcard with tls-alpn-01", func(c *Config) {
			c.Mappings = []Mapping{{ID: "a", Listener: "web", Hosts: []string{"*.example.com"}, Source: SourceACME, Challenge: ChallengeTLSALPN01}}
		}, "need DNS-01"},
		{"dns-01 without credential", func(c *Config) {
			c.Mappings = []Mapping{{ID: "a", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceACME, Challenge: ChallengeDNS01}}
		}, "needs a DNS credential"},
		{"dns-01 with unknown credential", func(c *Config) {
			c.Mappings = []Mapping{{ID: "a", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceACME, Challenge: ChallengeDNS01, DNSCredential: "cf"}}
		}, `DNS credential "cf" does not exist`},
		{"file source without files", func(c *Config) {
			c.Mappings = []Mapping{{ID: "a", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceFile}}
		}, "cert_file and key_file"},
		{"unknown source", func(c *Config) {
			c.Mappings = []Mapping{{ID: "a", Listener: "web", Hosts: []string{"a.example.com"}, Source: "magic"}}
		}, `unknown source "magic"`},
		{"unknown provider", func(c *Config) {
			c.DNSCredentials = []DNSCredential{{Name: "x", Provider: "route53"}}
		}, `unknown provider "route53"`},
		{"bad resolver", func(c *Config) { c.ACME.DNSResolvers = []string{"1.1.1.1"} }, "HOST:PORT"},
		{"conflicting listeners", func(c *Config) {
			c.Listeners = append(c.Listeners, Listener{Name: "other", Addr: "127.0.0.1:443"})
		}, "collides"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c := base()
			tc.mutate(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if c.Listeners[0].Fallback != FallbackSelfSigned {
					t.Errorf("fallback not defaulted: %q", c.Listeners[0].Fallback)
				}
				for _, m := range c.Mappings {
					for _, h := range m.Hosts {
						if h != strings.ToLower(strings.TrimSuffix(h, ".")) {
							t.Errorf("host %q not normalised", h)
						}
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
			if fault.KindOf(err) != fault.Invalid {
				t.Errorf("kind %v, want Invalid", fault.KindOf(err))
			}
		})
	}
}

func TestUpdateWritesNothingWhenRefused(t *testing.T) {
	d := OpenDir(t.TempDir(), time.Second)
	if _, err := AddListener(context.Background(), d, Listener{Name: "web", Addr: ":443"}); err != nil {
		t.Fatal(err)
	}
	before, _ := d.Read(context.Background(), ConfigFile)
	if _, err := AddListener(context.Background(), d, Listener{Name: "web", Addr: ":8443"}); err == nil {
		t.Fatal("duplicate accepted")
	}
	if _, err := RemoveListener(context.Background(), d, "nope"); err == nil {
		t.Fatal("removing a missing listener succeeded")
	}
	after, _ := d.Read(context.Background(), ConfigFile)
	if string(before) != string(after) {
		t.Errorf("config changed by refused updates:\n%s\n---\n%s", before, after)
	}
}

func TestRemoveListenerInUse(t *testing.T) {
	c := &Config{SchemaVersion: 1, Listeners: []Listener{{Name: "web", Addr: ":443"}},
		Mappings: []Mapping{{ID: "m", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceSelfSigned}}}
	if _, err := c.RemoveListener("web"); err == nil || !strings.Contains(err.Error(), "still has 1 mapping") {
		t.Errorf("RemoveListener = %v", err)
	}
}
