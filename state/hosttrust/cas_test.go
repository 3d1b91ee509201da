package hosttrust

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// TestStateCAs: install takes the CA agents trust; uninstall takes it and
// every CA the state retired (here by two replacements), on the directory
// and the in-memory store.
func TestStateCAs(t *testing.T) {
	stores := map[string]func(t *testing.T) state.Store{
		"dir": func(t *testing.T) state.Store { return state.OpenDir(filepath.Join(t.TempDir(), "state"), time.Second) },
		"mem": func(t *testing.T) state.Store { return statetest.NewMem("mem", time.Second) },
	}
	names := pki.ParseNames([]string{"localhost", "127.0.0.1"})
	auto := management.Settings{Mode: management.ModeAuto}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			if _, err := ForInstall(bg, s, auto); fault.KindOf(err) != fault.Failure {
				t.Errorf("install without a CA: %v", err)
			}
			_, err := ForUninstall(bg, s)
			wantKind(t, err, fault.NotFound, "holds no management CA", "--config-dir")
			now := time.Now()
			if err := management.Init(bg, s, names, now); err != nil {
				t.Fatal(err)
			}
			var seen []string
			_, first, _ := management.CACertificate(bg, s)
			seen = append(seen, fp(first))
			for i := range 2 {
				r, err := management.Replace(bg, s, names, now.Add(time.Duration(i+1)*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				seen = append(seen, r.New)
			}
			cas, err := ForInstall(bg, s, auto)
			if err != nil {
				t.Fatal(err)
			}
			if got := fingerprints(cas.Current); !slices.Equal(got, seen[2:]) {
				t.Errorf("install: current %v, want %v", got, seen[2:])
			}
			if got := fingerprints(cas.Retired); !slices.Equal(got, seen[:2]) {
				t.Errorf("install: retired %v, want %v", got, seen[:2])
			}
			un, err := ForUninstall(bg, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := append(fingerprints(un.Retired), fingerprints(un.Current)...); !slices.Equal(got, seen) {
				t.Errorf("uninstall: %v, want %v", got, seen)
			}
		})
	}
}

// TestForInstallModes: provided and off have no management CA to install;
// the refusal says what to trust instead.
func TestForInstallModes(t *testing.T) {
	s := statetest.NewMem("mem", time.Second)
	for _, tc := range []struct{ mode, says string }{
		{management.ModeProvided, "trust the CA that issued MANAGEMENT_TLS_CERT_FILE"},
		{management.ModeOff, "MANAGEMENT_TLS_MODE=auto"},
		{"of", "unknown MANAGEMENT_TLS_MODE"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			_, err := ForInstall(bg, s, management.Settings{Mode: tc.mode})
			wantKind(t, err, fault.Invalid, tc.mode, tc.says)
		})
	}
}
