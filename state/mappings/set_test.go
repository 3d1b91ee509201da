package mappings

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

func ptr(s string) *string { return &s }

// setStore is newStore with mappings "dev" (self-signed dev.example.test),
// "app" (acme http-01 app.example.com, with an issued certificate), "up"
// (manual up.example.com) and "other" (self-signed other.example.test).
func setStore(t *testing.T) (*state.Dir, string) {
	t.Helper()
	s, root := newStore(t)
	mustAdd(t, s, selfSignedIn("dev", "web", 30, "dev.example.test"))
	mustAdd(t, s, acmeIn("app", state.ChallengeHTTP01, "", "app.example.com"))
	up := issue(t, now0.Add(-day), 90*day, "up.example.com")
	mustAdd(t, s, manual("up", chainPEM(up), up.KeyPEM, "up.example.com"))
	mustAdd(t, s, selfSignedIn("other", "web", 30, "other.example.test"))
	kp := issue(t, now0.Add(-day), 90*day, "app.example.com")
	err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
		return WriteCertificate(context.Background(), tx, "app", kp, newMeta(state.SourceACME, kp, now0))
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func TestSetRefuses(t *testing.T) {
	for _, tc := range []struct {
		desc   string
		id     string
		c      Changes
		fields Fields
		kind   fault.Kind
		msg    string
		hint   string
	}{
		{"nothing to change", "app", Changes{}, CLIFields, fault.Invalid, "nothing to change", "--upstream"},
		{"nothing to change, in API words", "app", Changes{}, APIFields, fault.Invalid, "nothing to change", `"upstream"`},
		{"no such mapping", "nope", Changes{Upstream: ptr("http://127.0.0.1:1")}, CLIFields, fault.NotFound, `mapping "nope" does not exist`, "mapping list"},
		{"no such mapping, in API words", "nope", Changes{Upstream: ptr("http://127.0.0.1:1")}, APIFields, fault.NotFound, `mapping "nope" does not exist`, "GET /api/v1/mappings"},
		{"host mapped by another mapping", "dev", Changes{Hosts: []string{"dev.example.test", "other.example.test"}}, CLIFields, fault.Invalid, `host "other.example.test" is already mapped on listener "web" by mapping "other"`, `mapping "other"`},
		{"no hosts", "dev", Changes{Hosts: []string{}}, CLIFields, fault.Invalid, "at least one host", "--host"},
		{"bad host", "dev", Changes{Hosts: []string{"bad host"}}, CLIFields, fault.Invalid, "bad host", "DNS name"},
		{"wildcard with HTTP-01", "app", Changes{Hosts: []string{"*.example.com"}}, CLIFields, fault.Invalid, "wildcard", "dns-01"},
		{"DNS-01 without a credential", "app", Changes{Challenge: ptr(state.ChallengeDNS01)}, CLIFields, fault.Invalid, "DNS-01 needs a DNS credential", ""},
		{"unknown DNS credential", "app", Changes{Challenge: ptr(state.ChallengeDNS01), DNSCredential: ptr("nope")}, CLIFields, fault.Invalid, `DNS credential "nope" does not exist`, ""},
		{"IP host with DNS-01", "app", Changes{Hosts: []string{"192.0.2.7"}, Challenge: ptr(state.ChallengeDNS01), DNSCredential: ptr("cf")}, CLIFields, fault.Invalid, "IP address 192.0.2.7", ""},
		{"unknown key type", "app", Changes{KeyType: ptr("dsa")}, CLIFields, fault.Invalid, `unknown key_type "dsa"`, ""},
		{"bad upstream", "app", Changes{Upstream: ptr("ftp://x")}, CLIFields, fault.Invalid, "upstream", ""},
		{"challenge on a self-signed mapping", "dev", Changes{Challenge: ptr(state.ChallengeHTTP01)}, CLIFields, fault.Invalid, "source self-signed, which takes no --challenge", "only ACME"},
		{"profile on a manual mapping, in API words", "up", Changes{Profile: ptr("x"), KeyType: ptr("ec384")}, APIFields, fault.Invalid, `takes no "profile", "key_type"`, "only ACME"},
		{"uploaded certificate does not cover new hosts", "up", Changes{Hosts: []string{"up.example.com", "new.example.com"}}, CLIFields, fault.Invalid, "does not cover new.example.com", "replace the certificate"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s, root := setStore(t)
			before := snapshot(t, root)
			_, _, err := Set(context.Background(), s, tc.id, tc.c, now0, nil, tc.fields)
			wantFault(t, err, tc.kind, tc.msg)
			if tc.hint != "" {
				wantHint(t, err, tc.hint)
			}
			assertUnchanged(t, before, root)
		})
	}
}

func TestSetProfileCheckedBeforeTheLock(t *testing.T) {
	s, root := setStore(t)
	before := snapshot(t, root)
	src := func(context.Context) ProfileOffer {
		return ProfileOffer{Directory: "https://ca.test/dir", Names: []string{"classic"}}
	}
	_, _, err := Set(context.Background(), s, "app", Changes{Profile: ptr("shortlived")}, now0, src, CLIFields)
	wantFault(t, err, fault.Invalid, `offers no profile "shortlived"`)
	assertUnchanged(t, before, root)
	m, _, err := Set(context.Background(), s, "app", Changes{Profile: ptr("classic")}, now0, src, CLIFields)
	if err != nil || m.Profile != "classic" {
		t.Fatalf("Set profile classic: %+v, %v", m, err)
	}
}

func TestSetFollows(t *testing.T) {
	ctx := context.Background()
	fp := func(t *testing.T, s state.Store, m state.Mapping) string {
		t.Helper()
		c, err := Load(ctx, s, m)
		if errors.Is(err, fs.ErrNotExist) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return pki.Fingerprint(c.Chain[0])
	}
	for _, tc := range []struct {
		desc       string
		id         string
		c          Changes
		status     string // of the mapping after the change
		keepsCert  bool
		wantHosts  []string
		wantReason string // in meta.Reissue
	}{
		{"upstream only changes nothing else", "app", Changes{Upstream: ptr("http://127.0.0.1:9000")}, StatusValid, true, []string{"app.example.com"}, ""},
		{"self-signed with new hosts is regenerated", "dev", Changes{Hosts: []string{"Dev2.Example.Test."}}, StatusValid, false, []string{"dev2.example.test"}, ""},
		{"acme challenge change re-issues, keeping the certificate", "app", Changes{Challenge: ptr(state.ChallengeTLSALPN01)}, StatusExpiring, true, []string{"app.example.com"}, "--challenge"},
		{"acme key type change re-issues", "app", Changes{KeyType: ptr("rsa2048")}, StatusExpiring, true, []string{"app.example.com"}, "--key-type"},
		{"acme host added: still covers one, keeps serving", "app", Changes{Hosts: []string{"app.example.com", "www.example.com"}}, StatusExpiring, true, []string{"app.example.com", "www.example.com"}, "--host"},
		{"acme hosts replaced: covers none, pending", "app", Changes{Hosts: []string{"new.example.com"}}, StatusPending, false, []string{"new.example.com"}, ""},
		{"manual hosts narrowed to ones it covers", "up", Changes{Hosts: []string{"up.example.com"}, Upstream: ptr("")}, StatusValid, true, []string{"up.example.com"}, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := setStore(t)
			cfg := mustConfig(t, s)
			old, _ := cfg.Mapping(tc.id)
			oldFP := fp(t, s, *old)
			saved, warnings, err := Set(ctx, s, tc.id, tc.c, now0, nil, CLIFields)
			if err != nil {
				t.Fatal(err)
			}
			if len(warnings) > 0 {
				t.Errorf("warnings: %q", warnings)
			}
			if !slices.Equal(saved.Hosts, tc.wantHosts) {
				t.Errorf("hosts = %q, want %q", saved.Hosts, tc.wantHosts)
			}
			cfg = mustConfig(t, s)
			m, _ := cfg.Mapping(tc.id)
			if !equalMapping(*m, saved) {
				t.Errorf("saved %+v, state holds %+v", saved, *m)
			}
			if len(cfg.Mappings) != 4 {
				t.Errorf("%d mappings, want 4", len(cfg.Mappings))
			}
			newFP := fp(t, s, *m)
			if keeps := newFP == oldFP; keeps != tc.keepsCert {
				t.Errorf("certificate kept = %v, want %v (old %s, new %s)", keeps, tc.keepsCert, oldFP, newFP)
			}
			if m.Source == state.SourceSelfSigned {
				c, err := Load(ctx, s, *m)
				if err != nil || len(uncovered(m.Hosts, c.Chain[0])) > 0 {
					t.Errorf("self-signed certificate does not cover %q: %v", m.Hosts, err)
				}
			}
			info, _, err := Show(ctx, s, cfg, tc.id, now0)
			if err != nil {
				t.Fatal(err)
			}
			if info.Status != tc.status {
				t.Errorf("status = %s, want %s", info.Status, tc.status)
			}
			meta, err := LoadMeta(ctx, s, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			if (tc.wantReason == "") != (meta.Reissue == "") || !strings.Contains(meta.Reissue, tc.wantReason) {
				t.Errorf("meta.Reissue = %q, want it to name %q", meta.Reissue, tc.wantReason)
			}
		})
	}
}

func TestSetWarnsOfADisabledCredential(t *testing.T) {
	s, _ := setStore(t)
	addCredential(t, s, "off", false)
	m, warnings, err := Set(context.Background(), s, "app", Changes{Challenge: ptr(state.ChallengeDNS01), DNSCredential: ptr("off")}, now0, nil, CLIFields)
	if err != nil || m.DNSCredential != "off" {
		t.Fatalf("Set: %+v, %v", m, err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `DNS credential "off" is disabled`) {
		t.Errorf("warnings %q", warnings)
	}
}
