package doctor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

// now0 is the clock of every test.
var now0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// publicURL is a URL doctor accepts without any lookup: a non-loopback IP.
const publicURL = "https://192.0.2.10:8443"

// newStore returns an empty state directory (not created yet).
func newStore(t *testing.T) *state.Dir {
	t.Helper()
	return state.OpenDir(filepath.Join(t.TempDir(), "state"), 2*time.Second)
}

// input is an Input for s that passes the management checks once the CA
// exists: mode auto, a reachable public URL, a resolver that must not be
// asked.
func input(s *state.Dir) Input {
	return Input{
		Store:    s,
		Settings: management.Settings{Mode: management.ModeAuto, PublicURL: publicURL},
		Now:      now0,
		Resolve: func(_ context.Context, host string) ([]net.IP, error) {
			return nil, errors.New("unexpected lookup of " + host)
		},
	}
}

// run runs one check against in.
func run(in Input, f func(context.Context, *env) Check) Check {
	if in.Resolve == nil {
		in.Resolve = defaultResolve
	}
	return f(context.Background(), newEnv(context.Background(), in))
}

// want checks a Check's id, status and fragments of its message and hint.
func want(t *testing.T, c Check, id string, status Status, msg ...string) {
	t.Helper()
	if c.ID != id {
		t.Errorf("id %q, want %q", c.ID, id)
	}
	if c.Status != status {
		t.Errorf("%s: status %s, want %s: %s (hint: %s)", c.ID, c.Status, status, c.Message, c.Hint)
	}
	for _, m := range msg {
		if !strings.Contains(c.Message, m) {
			t.Errorf("%s: message %q lacks %q", c.ID, c.Message, m)
		}
	}
	if c.Status != OK && c.Hint == "" {
		t.Errorf("%s: %s without a hint: %s", c.ID, c.Status, c.Message)
	}
}

func wantHint(t *testing.T, c Check, frags ...string) {
	t.Helper()
	for _, f := range frags {
		if !strings.Contains(c.Hint, f) {
			t.Errorf("%s: hint %q lacks %q", c.ID, c.Hint, f)
		}
	}
}

// initCA creates the management CA and a server certificate for hosts.
func initCA(t *testing.T, s *state.Dir, hosts ...string) {
	t.Helper()
	if err := management.Init(context.Background(), s, pki.ParseNames(append(hosts, "localhost")), now0); err != nil {
		t.Fatal(err)
	}
}

// addListener adds a listener.
func addListener(t *testing.T, s *state.Dir, l state.Listener) {
	t.Helper()
	if _, err := state.AddListener(context.Background(), s, l); err != nil {
		t.Fatal(err)
	}
}

// addMapping adds a mapping at now0.
func addMapping(t *testing.T, s *state.Dir, m state.Mapping) {
	t.Helper()
	if _, _, err := mappings.Add(context.Background(), s, mappings.Input{Mapping: m}, now0); err != nil {
		t.Fatalf("add mapping %+v: %v", m, err)
	}
}

// addCredential saves a DNS credential and, when token is set, its token.
func addCredential(t *testing.T, s *state.Dir, name string, enabled bool, token string) {
	t.Helper()
	err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
		c := tx.Config
		c.DNSCredentials = append(c.DNSCredentials, state.DNSCredential{Name: name, Provider: state.ProviderCloudflare, Enabled: enabled})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		mustWrite(t, s, "secrets/dns/"+name+".token", []byte(token+"\n"), state.SecretMode)
	}
}

// registerAccount writes an ACME account the way acme.Register leaves it.
func registerAccount(t *testing.T, s *state.Dir, directory string) {
	t.Helper()
	u, _ := url.Parse(directory)
	sum := sha256.Sum256([]byte(directory))
	dir := acme.AccountsDir + "/" + strings.NewReplacer(":", "_").Replace(u.Host) + "-" + hex.EncodeToString(sum[:4])
	ca := mustCA(t)
	b, _ := toml.Marshal(acme.Account{Email: "ops@example.com", Directory: directory, URI: directory + "/acct/1", RegisteredAt: now0})
	mustWrite(t, s, dir+"/account.toml", b, state.SecretMode)
	mustWrite(t, s, dir+"/key.pem", ca.KeyPEM, state.SecretMode)
	err := state.Update(context.Background(), s, "test", func(tx *state.Tx) error {
		c := tx.Config
		c.ACME.Directory = directory
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writeConfig replaces p2ptls.toml by hand.
func writeConfig(t *testing.T, s *state.Dir, content string) {
	t.Helper()
	mustWrite(t, s, state.ConfigFile, []byte(content), state.SecretMode)
}

func mustWrite(t *testing.T, s *state.Dir, name string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := s.Write(context.Background(), name, b, mode); err != nil {
		t.Fatal(err)
	}
}

func mustCA(t *testing.T) *pki.KeyPair {
	t.Helper()
	ca, err := pki.NewCA("test CA", now0, 5*365*day)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// mustServer issues a certificate for hosts from ca, valid from now0.
func mustServer(t *testing.T, ca *pki.KeyPair, validity time.Duration, hosts ...string) *pki.KeyPair {
	t.Helper()
	kp, err := pki.IssueServer(ca, pki.ParseNames(hosts), now0, validity)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// writeFiles writes a certificate (chain) and key file for mode provided.
func writeFiles(t *testing.T, certPEM, keyPEM []byte) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "mgmt.crt"), filepath.Join(dir, "mgmt.key")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// writeStatus writes run/status.json as serve does; running makes it this
// process on this host, which is alive.
func writeStatus(t *testing.T, s *state.Dir, running bool, listeners ...runstatus.Listener) {
	t.Helper()
	host, _ := os.Hostname()
	if !running {
		host = "elsewhere.invalid"
	}
	st := &runstatus.Status{PID: os.Getpid(), Host: host, StartedAt: now0, Listeners: listeners}
	if err := runstatus.Write(context.Background(), s, st); err != nil {
		t.Fatal(err)
	}
}
