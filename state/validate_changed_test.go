package state

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// validBase is a config of n mappings on two listeners, with its baseline
// as a load leaves it.
func validBase(t *testing.T, n int) *Config {
	t.Helper()
	c := &Config{SchemaVersion: SchemaVersion,
		Listeners:      []Listener{{Name: "web", Addr: "127.0.0.1:8443"}, {Name: "api", Addr: "127.0.0.1:9443"}},
		DNSCredentials: []DNSCredential{{Name: "cf", Provider: ProviderCloudflare, Enabled: true}}}
	for i := range n {
		id := fmt.Sprintf("m%03d", i)
		l := []string{"web", "api"}[i%2]
		c.Mappings = append(c.Mappings, Mapping{ID: id, Listener: l, Hosts: []string{id + ".example.com"}, Source: SourceSelfSigned})
	}
	c.Mappings[1].Hosts = append(c.Mappings[1].Hosts, "*.wild.example.com")
	c.Mappings[2] = Mapping{ID: "m002", Listener: "web", Hosts: []string{"*.dns.example.com"}, Source: SourceACME, Challenge: ChallengeDNS01, DNSCredential: "cf"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.loaded = newBaseline(SchemaVersion, c)
	return c
}

// fullError is what the full check says of c, on a copy.
func fullError(c *Config) error {
	cp := *c
	cp.Mappings = make([]Mapping, len(c.Mappings))
	for i, m := range c.Mappings {
		m.Hosts = slices.Clone(m.Hosts)
		cp.Mappings[i] = m
	}
	cp.loaded = nil
	return cp.Validate()
}

// Whatever a change does, Validate through validateChanged gives exactly
// the full check's answer.
func TestValidateChangedAgreesWithTheFullCheck(t *testing.T) {
	mutations := configMutations()
	for _, tc := range mutations {
		t.Run(tc.name, func(t *testing.T) {
			c := validBase(t, 40)
			tc.fn(c)
			want := fullError(c)
			got := c.Validate()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Validate = %v, the full check = %v", got, want)
			}
		})
	}
	// And any mix of them, a bounded number of times, in a fixed order.
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		c := validBase(t, 40)
		for range 1 + r.IntN(3) {
			mutations[r.IntN(len(mutations))].fn(c)
		}
		want := fullError(c)
		if got := c.Validate(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: Validate = %v, the full check = %v", round, got, want)
		}
	}
}

// The quick way is the one taken for what a command does most: one
// mapping added, changed or removed among many.
func TestValidateChangedVouchesForOneChange(t *testing.T) {
	for name, fn := range map[string]func(c *Config){
		"added": func(c *Config) {
			c.Mappings = append(c.Mappings, Mapping{ID: "new", Listener: "web", Hosts: []string{"new.example.com"}, Source: SourceSelfSigned})
		},
		"changed": func(c *Config) { c.Mappings[3].Upstream = "http://127.0.0.1:8080" },
		"removed": func(c *Config) { c.Mappings = slices.Delete(c.Mappings, 3, 4) },
	} {
		c := validBase(t, 1000)
		fn(c)
		v := mappingValidator{listeners: map[string]bool{"web": true, "api": true}, creds: map[string]bool{"cf": true}, ids: map[string]bool{}, hosts: map[ListenerHost]string{}}
		if c.validateChanged(&v) == nil {
			t.Errorf("%s: validateChanged does not vouch for it", name)
		}
	}
}

type configMutation struct {
	name string
	fn   func(c *Config)
}

// configMutations are changes a command or a hand edit makes to a config of
// validBase, valid or not.
func configMutations() []configMutation {
	return []configMutation{
		{"nothing", func(c *Config) {}},
		{"add a new mapping", func(c *Config) {
			c.Mappings = append(c.Mappings, Mapping{ID: "new", Listener: "web", Hosts: []string{"new.example.com"}, Source: SourceSelfSigned})
		}},
		{"add one whose host another has", func(c *Config) {
			c.Mappings = append(c.Mappings, Mapping{ID: "new", Listener: "web", Hosts: []string{"m000.example.com"}, Source: SourceSelfSigned})
		}},
		{"add one whose host another has, spelt in capitals", func(c *Config) {
			c.Mappings = append(c.Mappings, Mapping{ID: "new", Listener: "web", Hosts: []string{"M000.Example.COM."}, Source: SourceSelfSigned})
		}},
		{"the same host on the other listener", func(c *Config) {
			c.Mappings = append(c.Mappings, Mapping{ID: "new", Listener: "api", Hosts: []string{"m000.example.com"}, Source: SourceSelfSigned})
		}},
		{"an exact copy of a mapping appended", func(c *Config) { c.Mappings = append(c.Mappings, c.Mappings[5]) }},
		{"a new mapping appended twice", func(c *Config) {
			m := Mapping{ID: "new", Listener: "web", Hosts: []string{"new.example.com"}, Source: SourceSelfSigned}
			c.Mappings = append(c.Mappings, m, m)
		}},
		{"two new ones with one host", func(c *Config) {
			c.Mappings = append(c.Mappings,
				Mapping{ID: "n1", Listener: "web", Hosts: []string{"x.example.com"}, Source: SourceSelfSigned},
				Mapping{ID: "n2", Listener: "web", Hosts: []string{"x.example.com"}, Source: SourceSelfSigned})
		}},
		{"a changed mapping takes another's host", func(c *Config) { c.Mappings[7].Hosts = []string{"m009.example.com"} }},
		{"a changed mapping moves to a missing listener", func(c *Config) { c.Mappings[3].Listener = "nope" }},
		{"a listener removed that mappings use", func(c *Config) { c.Listeners = c.Listeners[:1] }},
		{"a listener renamed", func(c *Config) { c.Listeners[len(c.Listeners)-1].Name = "api2" }},
		{"the credential removed", func(c *Config) { c.DNSCredentials = nil }},
		{"a mapping removed", func(c *Config) { c.Mappings = slices.Delete(c.Mappings, 4, 5) }},
		{"a mapping removed and its host reused", func(c *Config) {
			h := c.Mappings[4].Hosts[0]
			c.Mappings = slices.Delete(c.Mappings, 4, 5)
			c.Mappings[0].Hosts = append(c.Mappings[0].Hosts, h)
		}},
		{"an id changed to another's", func(c *Config) { c.Mappings[6].ID = "m008" }},
		{"a bad upstream", func(c *Config) { c.Mappings[6].Upstream = "ftp://x" }},
		{"a host listed twice in one mapping", func(c *Config) { c.Mappings[6].Hosts = append(c.Mappings[6].Hosts, c.Mappings[6].Hosts[0]) }},
		{"a wildcard on http-01", func(c *Config) {
			c.Mappings[10] = Mapping{ID: "m010", Listener: "web", Hosts: []string{"*.w.example.com"}, Source: SourceACME, Challenge: ChallengeHTTP01}
		}},
		{"order reversed", func(c *Config) { slices.Reverse(c.Mappings) }},
		{"no hosts", func(c *Config) { c.Mappings[3].Hosts = nil }},
		{"a host respelt in capitals", func(c *Config) { c.Mappings[5].Hosts[0] = strings.ToUpper(c.Mappings[5].Hosts[0]) + "." }},
		{"a mapping changed and changed back", func(c *Config) {
			c.Mappings[8].Days = 7
			c.Mappings[8].Days = 0
		}},
	}
}

// A change made from what validateChanged found (Config.change) writes,
// deletes and remembers exactly what comparing every mapping again does.
func TestChangeFromTheDiffIsTheFullComparison(t *testing.T) {
	mutations := configMutations()
	check := func(t *testing.T, name string, fns ...func(c *Config)) {
		t.Helper()
		quick, full := validBase(t, 40), validBase(t, 40)
		for _, fn := range fns {
			fn(quick)
			fn(full)
		}
		gotC, gotSaved, gotErr := quick.changeWith(context.Background(), nil, time.Unix(0, 0), true)
		wantC, wantSaved, wantErr := full.changeWith(context.Background(), nil, time.Unix(0, 0), false)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("%s: error %v, want %v", name, gotErr, wantErr)
		}
		if gotErr != nil {
			return
		}
		if !reflect.DeepEqual(gotC, wantC) {
			t.Fatalf("%s: change\n%+v\nwant\n%+v", name, gotC, wantC)
		}
		gotSaved()
		wantSaved()
		if g, w := quick.loaded, full.loaded; !slices.Equal(g.ids, w.ids) || !slices.Equal(g.sums, w.sums) || !bytes.Equal(g.top, w.top) {
			t.Fatalf("%s: baseline after the change differs from the full comparison's", name)
		}
	}
	for _, tc := range mutations {
		check(t, tc.name, tc.fn)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 300 {
		var fns []func(c *Config)
		var names []string
		for range 1 + r.IntN(3) {
			m := mutations[r.IntN(len(mutations))]
			fns, names = append(fns, m.fn), append(names, m.name)
		}
		check(t, fmt.Sprintf("round %d %q", round, names), fns...)
	}
}
