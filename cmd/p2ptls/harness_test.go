package main

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the p2ptls built once for every end-to-end test.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "p2ptls-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "p2ptls")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build p2ptls:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary did.
type result struct {
	code           int
	stdout, stderr string
}

// p2ptls runs the binary with a clean environment plus env.
func p2ptls(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := command(env, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run p2ptls %v: %v", args, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// command prepares a run without starting it. HOME points nowhere useful so
// that a test can never touch the real default state directory.
func command(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}, env...)
	return cmd
}

// snapshot and assertSameSnapshot prove that a refused command changed nothing.
func snapshot(t *testing.T, dir string) map[string]string { return statetest.Snapshot(t, dir) }

func assertSameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	statetest.AssertSame(t, before, after)
}
