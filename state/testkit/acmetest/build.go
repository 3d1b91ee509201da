package acmetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

const pebbleModule = "github.com/letsencrypt/pebble/v2"

// binaries is the result of building pebble and pebble-challtestsrv.
type binaries struct {
	pebble    string // path of the pebble binary
	chall     string // path of the pebble-challtestsrv binary
	pebbleDir string // pebble's module directory (test/certs, test/config)
	err       error
}

var (
	buildOnce sync.Once
	built     binaries
)

// getBinaries builds the two binaries once per test process. They are kept in
// a directory under os.TempDir named after the Go version, the platform and
// pebble's version, so that later test processes (other packages, later
// runs) reuse them instead of linking again.
func getBinaries() binaries {
	buildOnce.Do(func() { built = buildBinaries() })
	return built
}

func buildBinaries() binaries {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return binaries{err: fmt.Errorf("the go command is needed to build pebble: %w", err)}
	}
	run := func(dir string, args ...string) (string, error) {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out)), nil
	}

	out, err := run("", "env", "GOMOD", "GOVERSION", "GOOS", "GOARCH")
	if err != nil {
		return binaries{err: err}
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 4 || lines[0] == "" || lines[0] == os.DevNull {
		return binaries{err: fmt.Errorf("acmetest: not inside a Go module (go env GOMOD = %q)", lines[0])}
	}
	root := filepath.Dir(lines[0])
	listArgs := []string{"list", "-m", "-f", "{{.Version}}|{{.Dir}}", pebbleModule}
	out, err = run(root, listArgs...)
	if err != nil {
		return binaries{err: err}
	}
	version, dir, _ := strings.Cut(out, "|")

	key := sha256.Sum256([]byte(strings.Join(append(lines[1:], pebbleModule+"@"+version), "\n")))
	cache := filepath.Join(os.TempDir(), "p2ptls-acmetest-bin-"+hex.EncodeToString(key[:8]))
	b := binaries{
		pebble: filepath.Join(cache, "pebble"),
		chall:  filepath.Join(cache, "pebble-challtestsrv"),
	}
	if !isExecutable(b.pebble) || !isExecutable(b.chall) {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return binaries{err: err}
		}
		tmp, err := os.MkdirTemp(cache, "build-")
		if err != nil {
			return binaries{err: err}
		}
		defer os.RemoveAll(tmp)
		for _, c := range []struct{ pkg, dst string }{
			{pebbleModule + "/cmd/pebble", b.pebble},
			{pebbleModule + "/cmd/pebble-challtestsrv", b.chall},
		} {
			out := filepath.Join(tmp, filepath.Base(c.dst))
			if _, err := run(root, "build", "-o", out, c.pkg); err != nil {
				return binaries{err: err}
			}
			// Rename is atomic: concurrent test processes never see a
			// partly written binary.
			if err := os.Rename(out, c.dst); err != nil {
				return binaries{err: err}
			}
		}
	}
	if dir == "" { // the build downloaded the module
		out, err = run(root, listArgs...)
		if err != nil {
			return binaries{err: err}
		}
		_, dir, _ = strings.Cut(out, "|")
	}
	if dir == "" {
		return binaries{err: fmt.Errorf("acmetest: %s is not in the module cache", pebbleModule)}
	}
	b.pebbleDir = dir
	return b
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
