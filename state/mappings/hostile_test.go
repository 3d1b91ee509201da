package mappings

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/testkit/statetest"
)

// TestReadPEMRefusesHostileFiles: what the user names as a certificate or
// key (flags, API cert_file/key_file) is read bounded and only when it is a
// regular file, so a FIFO does not block and /dev/zero does not grow the
// process without end.
func TestReadPEMRefusesHostileFiles(t *testing.T) {
	for _, h := range statetest.HostilePaths(t, t.TempDir()) {
		t.Run(h.Desc, func(t *testing.T) {
			var err error
			statetest.Within(t, 5*time.Second, func() { _, err = ReadPEM(h.Path) })
			statetest.WantFault(t, err, fault.Invalid, h.Path, h.Says)
		})
	}
}

// TestAddFileMappingRefusesHostileFiles: the same through Add with source
// file, the path of POST /api/v1/mappings, and the state stays as it was.
func TestAddFileMappingRefusesHostileFiles(t *testing.T) {
	s, root := newStore(t)
	good := issue(t, now0, 90*day, "shop.example.com")
	files := t.TempDir()
	goodCert := writeFile(t, files, "good.crt", chainPEM(good))
	before := statetest.Snapshot(t, root)
	for _, h := range statetest.HostilePaths(t, files) {
		t.Run(h.Desc, func(t *testing.T) {
			in := Input{Mapping: state.Mapping{Listener: "web", Hosts: []string{"shop.example.com"}, Source: state.SourceFile, CertFile: goodCert, KeyFile: h.Path}}
			var err error
			statetest.Within(t, 5*time.Second, func() { _, _, err = Add(context.Background(), s, in, now0) })
			statetest.WantFault(t, err, fault.Invalid, h.Path, h.Says)
		})
	}
	statetest.AssertSame(t, before, statetest.Snapshot(t, root))
}

// TestLoadFileMappingWhoseFileTurnedBad: a file mapping's key path replaced
// by a FIFO or a device after it was added (serve's reload, "cert show")
// fails at once, as a failure of the mapping rather than bad input; a
// missing file still reads as "no certificate".
func TestLoadFileMappingWhoseFileTurnedBad(t *testing.T) {
	s, _ := newStore(t)
	good := issue(t, now0, 90*day, "shop.example.com")
	files := t.TempDir()
	cert := writeFile(t, files, "good.crt", chainPEM(good))
	key := writeFile(t, files, "good.key", good.KeyPEM)
	m := state.Mapping{ID: "shop", Listener: "web", Hosts: []string{"shop.example.com"}, Source: state.SourceFile, CertFile: cert, KeyFile: key}
	if _, err := Load(context.Background(), s, m); err != nil {
		t.Fatalf("Load of the good pair: %v", err)
	}
	for _, h := range statetest.HostilePaths(t, t.TempDir()) {
		t.Run(h.Desc, func(t *testing.T) {
			if err := os.Remove(key); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(h.Path, key); err != nil {
				t.Fatal(err)
			}
			var loadErr, readErr error
			statetest.Within(t, 5*time.Second, func() {
				_, loadErr = Load(context.Background(), s, m)
				_, _, readErr = ReadFiles(context.Background(), s, m)
			})
			for _, err := range []error{loadErr, readErr} {
				statetest.WantFault(t, err, fault.Failure, key, h.Says)
			}
		})
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	_, err := Load(context.Background(), s, m)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Base(key)) {
		t.Errorf("Load with the key file gone = %v; want fs.ErrNotExist naming the file", err)
	}
}
