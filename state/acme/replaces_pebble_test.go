package acme

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/testkit/acmetest"
)

// TestRenewTwiceFromTheSameCertificate: against pebble, a renewal names
// the certificate it replaces ("replaces", RFC 9773 section 5: pebble
// marks the order a replacement), and renewing again from that same old
// certificate (put back, as a restore of an old backup leaves it) is
// refused by the server as alreadyReplaced, ordered again without
// "replaces" (lego v4.35 does that itself for a 409 alreadyReplaced;
// replacesRefused covers the rest), and renews.
func TestRenewTwiceFromTheSameCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pebble")
	}
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(httpAddr)
	httpPort, _ := strconv.Atoi(port)
	env := acmetest.Start(t, acmetest.Options{HTTPPort: httpPort})
	s := state.OpenDir(filepath.Join(t.TempDir(), "state"), 5*time.Second)
	if _, err := Register(ctx, s, RegisterInput{Email: "ops@example.test", Directory: env.DirectoryURL, CAFile: env.CAFile, AgreeTOS: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := state.AddListener(ctx, s, state.Listener{Name: "web", Addr: "127.0.0.1:" + strconv.Itoa(env.TLSPort), HTTPAddr: httpAddr}); err != nil {
		t.Fatal(err)
	}
	m := state.Mapping{ID: "m", Listener: "web", Hosts: []string{"twice.example.test"}, Source: state.SourceACME, Challenge: state.ChallengeHTTP01}
	if _, _, err := mappings.Add(ctx, s, mappings.Input{Mapping: m}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := Issue(ctx, s, "m", time.Now(), quiet); err != nil {
		t.Fatalf("issue: %v\n%s", err, env.Logs())
	}
	dir := mappings.MappingDir("m") + "/"
	files := map[string][]byte{}
	for _, name := range []string{mappings.KeyFileName, mappings.CertFileName, mappings.MetaFileName} {
		b, err := s.Read(ctx, dir+name)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = b
	}
	old, _ := mappings.LoadMeta(ctx, s, "m")
	renew := func(what string) string {
		t.Helper()
		r, err := Renew(ctx, s, time.Now, RenewOptions{Options: quiet, Force: true})
		if err != nil || len(r.Renewed) != 1 {
			t.Fatalf("%s: %+v, %v\n%s", what, r, err, env.Logs())
		}
		meta, _ := mappings.LoadMeta(ctx, s, "m")
		if meta.FingerprintSHA256 == old.FingerprintSHA256 || meta.LastError != "" {
			t.Fatalf("%s: the old certificate is still in place (%+v)", what, meta)
		}
		return meta.FingerprintSHA256
	}
	second := renew("first renewal")
	if n := strings.Count(env.Logs(), "has been marked as replaced"); n != 1 {
		t.Errorf("pebble marked %d orders as replacements after the first renewal, want 1 (replaces not sent?)", n)
	}
	// The old certificate back in place, as a restore leaves it.
	for name, b := range files {
		if err := s.Write(ctx, dir+name, b, state.SecretMode); err != nil {
			t.Fatal(err)
		}
	}
	if third := renew("renewal from the replaced certificate"); third == second {
		t.Error("the second renewal left the first renewal's certificate")
	}
	// Pebble refuses a second replacement of one certificate: the order
	// that succeeded went without "replaces", and marked nothing.
	if n := strings.Count(env.Logs(), "has been marked as replaced"); n != 1 {
		t.Errorf("pebble marked %d orders as replacements, want still 1", n)
	}
}
