package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/pki"
)

var now0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newState returns a state with a listener, a management CA, a secret, an
// empty directory, and what a backup leaves out (run/, the lock's
// revision, a temporary file).
func newState(t *testing.T, withCA bool, listeners ...string) *state.Dir {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	d := state.OpenDir(root, time.Second)
	ctx := context.Background()
	for i, name := range listeners {
		if _, err := state.AddListener(ctx, d, state.Listener{Name: name, Addr: ":" + string(rune('1'+i)) + "443"}); err != nil {
			t.Fatal(err)
		}
	}
	if withCA {
		if err := management.Init(ctx, d, pki.ParseNames([]string{"localhost"}), now0); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, d, "secrets/dns/cf.token", "token-"+filepath.Base(filepath.Dir(root)), state.SecretMode)
	mustWrite(t, d, "run/status.json", "{}", state.SecretMode)
	if err := state.MkdirAll(filepath.Join(root, "acme", "accounts")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "secrets", ".x.tmp-123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

func mustWrite(t *testing.T, d *state.Dir, name, content string, mode fs.FileMode) {
	t.Helper()
	if err := d.Write(context.Background(), name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// archiveOf backs d up into memory.
func archiveOf(t *testing.T, d *state.Dir, passphrase string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Create(context.Background(), d, &buf, CreateOptions{Passphrase: passphrase, Version: "v-test", Now: now0}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// snapshot records every path under dir with its mode and content hash.
func snapshot(t *testing.T, dir string, skip ...string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == state.MemoDir { // derived data that any command may rewrite
			return filepath.SkipDir
		}
		for _, s := range skip {
			if rel == s {
				if de.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if de.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:])
		}
		snap[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func sameSnapshot(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	for p, w := range want {
		if g, ok := got[p]; !ok {
			t.Errorf("%s: %s is missing", what, p)
		} else if g != w {
			t.Errorf("%s: %s is %s, want %s", what, p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: %s is extra", what, p)
		}
	}
}

// siblings lists the names beside dir that start with its name.
func siblings(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(dir + ".*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// entry is one tar entry of a crafted archive.
type entry struct {
	hdr  tar.Header
	body []byte
}

// unpack splits a plain archive into its manifest and state entries.
func unpack(t *testing.T, archive []byte) (*Manifest, []entry) {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var m *Manifest
	var entries []entry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == ManifestName {
			m = &Manifest{}
			if err := json.Unmarshal(body, m); err != nil {
				t.Fatal(err)
			}
			continue
		}
		entries = append(entries, entry{*hdr, body})
	}
	return m, entries
}

// pack writes a manifest (raw JSON when manifest is a []byte, nothing when
// nil) and entries as tar.gz.
func pack(t *testing.T, manifest any, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	var mb []byte
	switch m := manifest.(type) {
	case nil:
	case []byte:
		mb = m
	default:
		var err error
		if mb, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	if manifest != nil {
		entries = append([]entry{{hdr: tar.Header{Typeflag: tar.TypeReg, Name: ManifestName, Mode: 0o600}, body: mb}}, entries...)
	}
	for _, e := range entries {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fileEntry is a regular file under state/ with its manifest record.
func fileEntry(rel, content string) (entry, File) {
	sum := sha256.Sum256([]byte(content))
	return entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: statePrefix + rel, Mode: 0o600}, body: []byte(content)},
		File{Path: rel, Mode: "0600", Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])}
}
