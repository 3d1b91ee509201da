package hosttrust

import (
	"context"
	"crypto/x509"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

// needTool skips a test without the tool, except in CI (CI=true), where
// it fails: .ci/run installs it.
func needTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		for _, d := range []string{"/usr/sbin/", "/sbin/"} {
			if _, serr := os.Stat(d + tool); serr == nil {
				return d + tool
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but %s is missing (.ci/run installs %s): %v", tool, pkg, err)
		}
		t.Skipf("%s is missing: install %s to run this test", tool, pkg)
	}
	return p
}

// newCA makes a CA named as every installation's management CA is.
func newCA(t *testing.T) *x509.Certificate {
	t.Helper()
	ca, err := pki.NewCA("p2ptls management CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca.Cert
}

func fp(c *x509.Certificate) string { return pki.Fingerprint(c) }

// fps renders certificates as Result fields hold them.
func fps(certs ...*x509.Certificate) []string { return fingerprints(certs) }

// wantKind checks an error's exit class and that its message and hint say
// what the test needs.
func wantKind(t *testing.T, err error, kind fault.Kind, says ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want kind %d saying %q", kind, says)
	}
	if got := fault.KindOf(err); got != kind {
		t.Errorf("kind %d, want %d: %v", got, kind, err)
	}
	all := err.Error() + " / " + fault.HintOf(err)
	for _, s := range says {
		if !strings.Contains(all, s) {
			t.Errorf("error %q does not say %q", all, s)
		}
	}
}

// sameFields compares a result's fingerprint lists; nil and empty are one.
func sameFields(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func checkResult(t *testing.T, r Result, store, path string, added, present, removed []string) {
	t.Helper()
	if r.Store != store || r.Path != path {
		t.Errorf("result for %s %s, want %s %s", r.Store, r.Path, store, path)
	}
	sameFields(t, "added", r.Added, added)
	sameFields(t, "present", r.Present, present)
	sameFields(t, "removed", r.Removed, removed)
}

var bg = context.Background()
