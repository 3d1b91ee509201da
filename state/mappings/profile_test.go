package mappings

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// offering is a ProfileSource that counts its calls and fails the test if
// the state lock is held while it runs: it takes the lock itself, with a
// deadline far shorter than anything that would hold it.
func offering(t *testing.T, s state.Store, o ProfileOffer, calls *atomic.Int32) ProfileSource {
	return func(ctx context.Context) ProfileOffer {
		calls.Add(1)
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := state.Update(ctx, s, "probe", func(tx *state.Tx) error { return errUnchangedProbe })
		if !errors.Is(err, errUnchangedProbe) {
			t.Errorf("the profile source ran while the state lock was held: %v", err)
		}
		return o
	}
}

var errUnchangedProbe = errors.New("probe: nothing to change")

var (
	offerTwo   = ProfileOffer{Directory: "https://ca.test/dir", Names: []string{"default", "shortlived"}}
	offerNone  = ProfileOffer{Directory: "https://ca.test/dir"}
	offerUnset = ProfileOffer{Unchecked: "there is no ACME account yet"}
)

func acmeInput(id, host, profile string) Input {
	return Input{Mapping: state.Mapping{ID: id, Listener: "web", Hosts: []string{host},
		Source: state.SourceACME, Challenge: state.ChallengeHTTP01, Profile: profile}}
}

// TestAddCheckedProfile: a profile the server offers is stored; one it
// does not offer is bad input naming what it offers, and nothing changes;
// one that cannot be checked is stored with a warning. The offer is read
// only for an ACME mapping with a profile, never under the lock.
func TestAddCheckedProfile(t *testing.T) {
	selfSigned := Input{Mapping: state.Mapping{ID: "ss", Listener: "web", Hosts: []string{"ss.example.com"},
		Source: state.SourceSelfSigned, Profile: "shortlived"}}
	tests := []struct {
		desc      string
		in        Input
		offer     ProfileOffer
		calls     int32
		wantErr   string // "" when added
		wantWarn  string
		wantSaved string // the profile stored
	}{
		{desc: "offered", in: acmeInput("a", "a.example.com", "shortlived"), offer: offerTwo, calls: 1, wantSaved: "shortlived"},
		{desc: "not offered", in: acmeInput("a", "a.example.com", "tlsserver"), offer: offerTwo, calls: 1,
			wantErr: `the ACME server at https://ca.test/dir offers no profile "tlsserver"; it offers default, shortlived`},
		{desc: "server offers none", in: acmeInput("a", "a.example.com", "shortlived"), offer: offerNone, calls: 1,
			wantErr: `offers no profile "shortlived"; it offers none`},
		{desc: "unchecked", in: acmeInput("a", "a.example.com", "shortlived"), offer: offerUnset, calls: 1,
			wantWarn: `profile "shortlived" was not checked against the ACME server (there is no ACME account yet)`, wantSaved: "shortlived"},
		{desc: "no profile: no lookup", in: acmeInput("a", "a.example.com", ""), offer: offerNone, calls: 0},
		{desc: "profile on a self-signed mapping", in: selfSigned, offer: offerTwo, calls: 0, wantErr: "profile"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := newStore(t)
			var calls atomic.Int32
			m, warnings, err := AddChecked(context.Background(), s, tc.in, now0, offering(t, s, tc.offer, &calls))
			if got := calls.Load(); got != tc.calls {
				t.Errorf("the offer was read %d times, want %d", got, tc.calls)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || fault.KindOf(err) != fault.Invalid {
					t.Fatalf("err = %v (kind %v), want bad input containing %q", err, fault.KindOf(err), tc.wantErr)
				}
				if n := len(mustConfig(t, s).Mappings); n != 0 {
					t.Errorf("a refused mapping changed the state: %d mappings", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(warnings, "\n"); tc.wantWarn == "" && got != "" || !strings.Contains(got, tc.wantWarn) {
				t.Errorf("warnings = %q, want %q", got, tc.wantWarn)
			}
			saved, ok := mustConfig(t, s).Mapping(m.ID)
			if !ok || saved.Profile != tc.wantSaved {
				t.Errorf("saved %+v, want profile %q", saved, tc.wantSaved)
			}
		})
	}
}

// TestImportCheckedProfiles: an import reads the offer once for all its
// lines, names the first line with a profile the server does not offer
// and then writes nothing, and warns once when it cannot check.
func TestImportCheckedProfiles(t *testing.T) {
	lines := func(profiles ...string) string {
		var b strings.Builder
		for i, p := range profiles {
			fmt.Fprintf(&b, `{"id":"m%d","listener":"web","hosts":["m%d.example.com"],"source":"acme","challenge":"http-01","profile":%q}`+"\n", i, i, p)
		}
		b.WriteString(`{"id":"plain","listener":"web","hosts":["plain.example.com"],"source":"acme","challenge":"http-01"}` + "\n")
		return b.String()
	}
	tests := []struct {
		desc     string
		input    string
		offer    ProfileOffer
		wantErr  string
		wantWarn []string
		want     int
	}{
		{desc: "all offered", input: lines("shortlived", "default", "shortlived", "shortlived"), offer: offerTwo, want: 5},
		{desc: "third line not offered", input: lines("shortlived", "default", "classic", "nope"), offer: offerTwo,
			wantErr: `line 3: the ACME server at https://ca.test/dir offers no profile "classic"`},
		{desc: "unchecked", input: lines("shortlived", "x", "y"), offer: offerUnset, want: 4,
			wantWarn: []string{"the profiles of 3 mappings were not checked against the ACME server (there is no ACME account yet); an order fails if the server does not offer it"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s, _ := newStore(t)
			var calls atomic.Int32
			added, warnings, err := ImportChecked(context.Background(), s, strings.NewReader(tc.input), "test.jsonl", now0, offering(t, s, tc.offer, &calls))
			if got := calls.Load(); got != 1 {
				t.Errorf("the offer was read %d times, want once", got)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || fault.KindOf(err) != fault.Invalid {
					t.Fatalf("err = %v, want bad input containing %q", err, tc.wantErr)
				}
				if n := len(mustConfig(t, s).Mappings); n != 0 {
					t.Errorf("a refused import changed the state: %d mappings", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(added) != tc.want || len(mustConfig(t, s).Mappings) != tc.want {
				t.Errorf("added %d, want %d", len(added), tc.want)
			}
			if strings.Join(warnings, "\n") != strings.Join(tc.wantWarn, "\n") {
				t.Errorf("warnings = %q, want %q", warnings, tc.wantWarn)
			}
		})
	}
}
