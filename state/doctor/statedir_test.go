package doctor

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
)

// wildcardHTTP01 is a hand edit that p2ptls refuses to load: a wildcard
// validated with HTTP-01.
const wildcardHTTP01 = `schema_version = 1
[[listeners]]
name = "web"
addr = ":443"
http_addr = ":80"
fallback = "self-signed"
[[mappings]]
id = "wild"
listener = "web"
hosts = ["*.Example.com"]
source = "acme"
challenge = "http-01"
`

func TestConfig(t *testing.T) {
	t.Run("no state directory", func(t *testing.T) {
		want(t, run(input(newStore(t)), checkConfig), IDConfig, OK, "no state directory")
	})
	t.Run("loads", func(t *testing.T) {
		s := newStore(t)
		addListener(t, s, state.Listener{Name: "web", Addr: ":443"})
		want(t, run(input(s), checkConfig), IDConfig, OK, "1 listener, 0 mappings")
	})
	t.Run("hand edit that does not validate is read leniently", func(t *testing.T) {
		s := newStore(t)
		writeConfig(t, s, wildcardHTTP01)
		e := newEnv(context.Background(), input(s))
		c := checkConfig(t.Context(), e)
		want(t, c, IDConfig, Fail, "p2ptls.toml", "mappings[0]", "read it without validation")
		wantHint(t, c, "fix the file by hand")
		if !e.lenient || e.cfg == nil || e.cfg.Mappings[0].Hosts[0] != "*.example.com" {
			t.Errorf("lenient config: %v %+v", e.lenient, e.cfg)
		}
		want(t, checkWildcardChallenge(t.Context(), e), IDWildcardChallenge, Fail, "mapping wild")
	})
	t.Run("broken syntax skips the mapping checks", func(t *testing.T) {
		s := newStore(t)
		writeConfig(t, s, "schema_version = 1\n[[listeners]]\nname = \"web\n")
		e := newEnv(context.Background(), input(s))
		want(t, checkConfig(t.Context(), e), IDConfig, Fail, "line 3", "checks are skipped")
		for _, f := range []func(*env) Check{
			func(e *env) Check { return checkCoverage(t.Context(), e) },
			func(e *env) Check { return checkWildcardChallenge(t.Context(), e) },
			func(e *env) Check { return checkACMEAccount(t.Context(), e) },
		} {
			c := f(e)
			if c.Status != Warn || c.Hint == "" {
				t.Errorf("%s on a broken file: %+v, want a warning", c.ID, c)
			}
		}
	})
}

func TestPermissions(t *testing.T) {
	setup := func(t *testing.T) *state.Dir {
		s := newStore(t)
		addListener(t, s, state.Listener{Name: "web", Addr: ":443"})
		addMapping(t, s, state.Mapping{ID: "app", Listener: "web", Hosts: []string{"app.example.com"}, Source: state.SourceSelfSigned})
		addCredential(t, s, "cf", true, "secret-token-1234")
		return s
	}
	chmod := func(t *testing.T, s *state.Dir, rel string, mode os.FileMode) {
		t.Helper()
		if err := os.Chmod(filepath.Join(s.Root(), rel), mode); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("as p2ptls writes them", func(t *testing.T) {
		want(t, run(input(setup(t)), checkPermissions), IDPermissions, OK, "every directory is 0700")
	})
	t.Run("no state directory", func(t *testing.T) {
		want(t, run(input(newStore(t)), checkPermissions), IDPermissions, OK)
	})
	for _, tc := range []struct {
		desc, rel string
		mode      os.FileMode
		status    Status
	}{
		{"key readable by others", "certs/public/app/key.pem", 0o644, Fail},
		{"token readable by the group", "secrets/dns/cf.token", 0o640, Fail},
		{"config writable by others", "p2ptls.toml", 0o666, Fail},
		{"certificate writable by the group", "certs/public/app/cert.pem", 0o664, Warn},
		{"certificate readable by all", "certs/public/app/cert.pem", 0o644, OK},
		// Every file but a certificate is a secret, by backup's rule: a
		// backup would refuse this one.
		{"mapping metadata readable by others", "certs/public/app/meta.toml", 0o644, Fail},
		{"directory open to others", "certs/public", 0o755, Warn},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := setup(t)
			chmod(t, s, tc.rel, tc.mode)
			c := run(input(s), checkPermissions)
			if tc.status == OK {
				want(t, c, IDPermissions, OK)
				return
			}
			want(t, c, IDPermissions, tc.status, tc.rel)
			if tc.status == Fail {
				wantHint(t, c, "chmod 600 "+filepath.Join(s.Root(), tc.rel))
			}
		})
	}
}

func TestLock(t *testing.T) {
	lockFile := func(s *state.Dir) string { return filepath.Join(s.Root(), state.LockFile) }
	writeHolder := func(t *testing.T, s *state.Dir, h state.Holder) {
		t.Helper()
		b, _ := toml.Marshal(h)
		if err := state.MkdirAll(s.Root()); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(lockFile(s), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host, _ := os.Hostname()
	t.Run("not locked", func(t *testing.T) {
		s := newStore(t)
		addListener(t, s, state.Listener{Name: "web", Addr: ":443"}) // locks and unlocks
		want(t, run(input(s), checkLock), IDLock, OK, "not locked")
	})
	t.Run("stale lock of a dead process", func(t *testing.T) {
		s := newStore(t)
		writeHolder(t, s, state.Holder{PID: 4194399, Host: host, Since: now0, Purpose: "cert renew"})
		c := run(input(s), checkLock)
		want(t, c, IDLock, Warn, "stale lock left by pid 4194399", "cert renew", "taken over automatically")
		wantHint(t, c, lockFile(s))
	})
	t.Run("stale lock from another host", func(t *testing.T) {
		s := newStore(t)
		writeHolder(t, s, state.Holder{PID: os.Getpid(), Host: "other.invalid", Since: now0})
		want(t, run(input(s), checkLock), IDLock, Warn, "stale lock left by pid", "another machine")
	})
	t.Run("held by a live process", func(t *testing.T) {
		s := newStore(t)
		writeHolder(t, s, state.Holder{PID: os.Getpid(), Host: host, Since: now0, Purpose: "backup"})
		f, err := os.Open(lockFile(s))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			t.Fatal(err)
		}
		want(t, run(input(s), checkLock), IDLock, OK, "locked by pid", "backup", "in progress")
	})
}
