package acme

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// remote is a store that is not a local directory.
type remote struct{ state.Store }

// The deploy hook gets absolute paths to the mapping's certificate and
// key: the files themselves in a state directory, and private copies read
// through the store otherwise (they were relative paths into nowhere
// before), removed once the hook has run.
func TestDeployHookFiles(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	d := state.OpenDir(root, time.Second)
	ctx := context.Background()
	dir := mappings.MappingDir("m1")
	if err := d.Write(ctx, dir+"/"+mappings.CertFileName, []byte("CERT"), state.PublicMode); err != nil {
		t.Fatal(err)
	}
	if err := d.Write(ctx, dir+"/"+mappings.KeyFileName, []byte("KEY"), state.SecretMode); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc   string
		s      state.Store
		inRoot bool
	}{{"state directory", d, true}, {"not a directory", remote{d}, false}} {
		t.Run(tc.desc, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			hook := `{ echo "$P2PTLS_CERT_FILE"; echo "$P2PTLS_KEY_FILE"; cat "$P2PTLS_CERT_FILE" "$P2PTLS_KEY_FILE"; echo; stat -c %a "$P2PTLS_KEY_FILE"; } > ` + out
			if err := deploy(ctx, hook, tc.s, state.Mapping{ID: "m1", Listener: "web", Hosts: []string{"a.example.com"}}); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 4 || lines[2] != "CERTKEY" || lines[3] != "600" {
				t.Fatalf("hook saw %q", lines)
			}
			cert, key := lines[0], lines[1]
			if !filepath.IsAbs(cert) || !filepath.IsAbs(key) || strings.HasPrefix(cert, root+"/") != tc.inRoot {
				t.Errorf("paths %q %q (in the state directory: want %v)", cert, key, tc.inRoot)
			}
			_, err = os.Stat(key)
			if gone := os.IsNotExist(err); gone == tc.inRoot {
				t.Errorf("key file after the hook: %v (a copy must be removed, the state's own kept)", err)
			}
		})
	}
}
