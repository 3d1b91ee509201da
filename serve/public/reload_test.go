package public

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/pki"
)

// running runs f's server loop until the test ends.
func (f *fixture) running() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.s.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
}

// A running serve follows what no p2ptls command announces: a hand edit of
// p2ptls.toml (through the store's change signal) and the rotated files of
// a "file" mapping, which lie outside the state (through its tick).
func TestRunFollowsHandEditsAndFileMappings(t *testing.T) {
	ext := t.TempDir()
	certFile, keyFile := filepath.Join(ext, "cert.pem"), filepath.Join(ext, "key.pem")
	writeExt := func(host string) {
		kp, err := pki.SelfSigned(pki.ParseNames([]string{host}), time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// Renamed into place, as certbot's deploy does.
		for p, b := range map[string][]byte{certFile: kp.CertPEM, keyFile: kp.KeyPEM} {
			if err := os.WriteFile(p+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeExt("ext.example.com")
	f := newFixture(t, []state.Mapping{
		{ID: "ext", Hosts: []string{"ext.example.com", "ext2.example.com"}, Source: state.SourceFile, CertFile: certFile, KeyFile: keyFile},
	}, map[string]bool{"ext": true}, Options{})
	f.running()
	if d, ok := waitServed(f.addr(), "ext.example.com", 15*time.Second); !ok {
		t.Fatalf("the file mapping is not served (%v)", d)
	}

	// The operator's files change: a certificate that names ext2 too.
	writeExt("ext2.example.com")
	if d, ok := waitServed(f.addr(), "ext2.example.com", 15*time.Second); !ok {
		t.Fatalf("the rotated file was not served within %v", d)
	}

	// A hand edit: a mapping added to p2ptls.toml without the lock.
	m := state.Mapping{ID: "hand", Listener: "web", Hosts: []string{"hand.example.com"}, Source: state.SourceManual}
	f.writeCert(m)
	f.cfg.Mappings = append(f.cfg.Mappings, m)
	if err := state.SaveConfig(context.Background(), f.store, f.cfg); err != nil {
		t.Fatal(err)
	}
	if d, ok := waitServed(f.addr(), "hand.example.com", 15*time.Second); !ok {
		t.Fatalf("the hand-edited mapping was not served within %v", d)
	}
}
