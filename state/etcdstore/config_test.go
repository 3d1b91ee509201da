package etcdstore

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

func TestParseURL(t *testing.T) {
	good := []struct {
		url       string
		endpoints []string
		prefix    string
	}{
		{"etcd://127.0.0.1:2379/p2ptls", []string{"127.0.0.1:2379"}, "p2ptls"},
		{"etcd://a.example:2379,b.example:2380/p2ptls/prod", []string{"a.example:2379", "b.example:2380"}, "p2ptls/prod"},
		{"etcd://[::1]:2379,127.0.0.1:2379/x.y_z-1", []string{"[::1]:2379", "127.0.0.1:2379"}, "x.y_z-1"},
	}
	for _, tc := range good {
		t.Run(tc.url, func(t *testing.T) {
			c, err := ParseURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Endpoints, tc.endpoints) || c.Prefix != tc.prefix {
				t.Fatalf("got %q %q", c.Endpoints, c.Prefix)
			}
			if c.URL() != tc.url {
				t.Errorf("URL() = %q, want %q", c.URL(), tc.url)
			}
		})
	}
	bad := []struct{ url, says string }{
		{"http://127.0.0.1:2379/p", "does not start with etcd://"},
		{"etcd://127.0.0.1:2379", "no key prefix"},
		{"etcd://127.0.0.1:2379/", "no key prefix"},
		{"etcd://127.0.0.1/p", "not HOST:PORT"},
		{"etcd://:2379/p", "not HOST:PORT"},
		{"etcd://127.0.0.1:0/p", "port is not 1-65535"},
		{"etcd://127.0.0.1:99999/p", "port is not 1-65535"},
		{"etcd://127.0.0.1:2379,/p", "not HOST:PORT"},
		{"etcd://::1:2379/p", "not HOST:PORT"},
		{"etcd://user:pw@127.0.0.1:2379/p", "holds credentials"},
		{"etcd://127.0.0.1:2379/a//b", "bad prefix segment"},
		{"etcd://127.0.0.1:2379/a/", "bad prefix segment"},
		{"etcd://127.0.0.1:2379/a/../b", "bad prefix segment"},
		{"etcd://127.0.0.1:2379/a b", "bad prefix segment"},
		{"etcd://127.0.0.1:2379/p?x=1", "query or fragment"},
	}
	for _, tc := range bad {
		t.Run(tc.url, func(t *testing.T) {
			_, err := ParseURL(tc.url)
			statetest.WantFault(t, err, fault.Invalid, tc.says)
			if fault.HintOf(err) == "" {
				t.Error("no hint")
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := ConfigFromEnv(Config{}, env(EnvUser, "root", EnvPasswordFile, pw, EnvCAFile, "/ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "root" || c.Password != "s3cret" || c.CAFile != "/ca.pem" {
		t.Errorf("got user %q password %q ca %q", c.User, c.Password, c.CAFile)
	}
	bad := []struct {
		name string
		env  func(string) string
		kind fault.Kind
		says string
	}{
		{"user without password", env(EnvUser, "root"), fault.Invalid, "both a user and a password file"},
		{"password without user", env(EnvPasswordFile, pw), fault.Invalid, "both a user and a password file"},
		{"cert without key", env(EnvCertFile, "/c.pem"), fault.Invalid, "both a certificate and a key"},
		{"empty password", env(EnvUser, "root", EnvPasswordFile, empty), fault.Invalid, "is empty"},
		{"password file is a FIFO", env(EnvUser, "root", EnvPasswordFile, fifo), fault.Invalid, "FIFO"},
		{"missing password file", env(EnvUser, "root", EnvPasswordFile, filepath.Join(dir, "none")), fault.Invalid, EnvPasswordFile},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ConfigFromEnv(Config{}, tc.env)
			statetest.WantFault(t, err, tc.kind, tc.says)
		})
	}
}
