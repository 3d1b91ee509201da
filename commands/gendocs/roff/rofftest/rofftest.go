// Package rofftest checks generated man pages with the real man-db tools.
package rofftest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// CheckPage fails t when man(1) warns formatting the page at 80 columns or
// lexgrog(1) cannot read its NAME section. Without man-db it skips,
// except in CI (CI=true), which installs it.
func CheckPage(t testing.TB, path string) {
	t.Helper()
	for _, tool := range []string{"man", "lexgrog", "groff"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed (CI installs man-db and groff-base in .ci/run)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	man := exec.Command("man", "--warnings", "-l", path)
	man.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
	var stderr strings.Builder
	man.Stderr = &stderr
	out, err := man.Output()
	if err != nil || stderr.Len() > 0 || len(out) == 0 {
		t.Errorf("man --warnings -l %s: %v, %d bytes, stderr:\n%s", path, err, len(out), stderr.String())
	}
	lex, err := exec.Command("lexgrog", path).CombinedOutput()
	if err != nil || strings.Contains(string(lex), "parse failed") {
		t.Errorf("lexgrog %s: %v: %s", path, err, lex)
	}
}
