package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// fuzzPassphrase decrypts the encrypted seeds.
const fuzzPassphrase = "fuzz"

// recorder is a sink that keeps what it was handed as sizes and hashes
// only, so that an archive that inflates a lot costs no memory.
type recorder struct {
	dirs  []string
	files map[string]recorded
}

type recorded struct {
	mode fs.FileMode
	size int64
	sum  string
}

func (r *recorder) mkdir(rel string, _ fs.FileMode) error {
	r.dirs = append(r.dirs, rel)
	return nil
}

func (r *recorder) create(rel string, mode fs.FileMode) (io.WriteCloser, error) {
	if _, dup := r.files[rel]; dup {
		return nil, fmt.Errorf("%s created twice", rel)
	}
	return &recordedFile{r: r, rel: rel, mode: mode, h: sha256.New()}, nil
}

type recordedFile struct {
	r    *recorder
	rel  string
	mode fs.FileMode
	h    interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (w *recordedFile) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

func (w *recordedFile) Close() error {
	w.r.files[w.rel] = recorded{mode: w.mode, size: w.n, sum: hex.EncodeToString(w.h.Sum(nil))}
	return nil
}

// Layers the fuzz target wraps its input in before reading it, so that
// mutations reach the tar stream and the manifest directly instead of
// dying on gzip's CRC or age's MAC.
const (
	layerNone = iota // the input is the whole archive
	layerGzip        // the input is the tar stream
	layerAge         // the input is the tar stream, gzipped and encrypted
	layers
)

// fuzzSeed is one input of the fuzz target.
type fuzzSeed struct {
	data  []byte
	layer uint8
}

// wrap makes the archive the reader is given from a fuzz input.
func wrap(t testing.TB, data []byte, layer uint8) []byte {
	switch layer % layers {
	case layerGzip:
		return fastGzip(t, data)
	case layerAge:
		return encryptAt(t, fastGzip(t, data), fuzzPassphrase, 1)
	}
	return data
}

// fastGzip compresses with Huffman coding only: a gzip stream like any
// other to the reader, without the allocations of a full compressor on
// every run.
func fastGzip(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.HuffmanOnly)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fuzzSeeds are small archives, valid and damaged, plain and encrypted at
// a low work factor; the same ones are committed in testdata/fuzz.
func fuzzSeeds(t testing.TB, d *state.Dir) map[string]fuzzSeed {
	var buf bytes.Buffer
	if _, err := create(context.Background(), d, &buf, CreateOptions{Version: "v-fuzz", Now: now0}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	tarball := gunzip(t, good)
	enc := encryptAt(t, good, fuzzPassphrase, 1)
	flipped := slices.Clone(good)
	flipped[len(flipped)/2] ^= 0x10
	return map[string]fuzzSeed{
		"valid":               {good, layerNone},
		"valid-encrypted":     {enc, layerNone},
		"valid-tar":           {tarball, layerGzip},
		"valid-tar-encrypted": {tarball, layerAge},
		"truncated":           {good[:len(good)/2], layerNone},
		"flipped":             {flipped, layerNone},
		"second-gzip-member":  {slices.Concat(good, gzipped(t, []byte("x"))), layerNone},
		"junk-after-tar":      {append(slices.Clone(tarball), "junk"...), layerGzip},
		"uncompressed-tar":    {tarball, layerNone},
		// archive/tar takes a clean end at an entry boundary for the end
		// of the archive; the manifest still proves that nothing is missing.
		"valid-without-end-blocks": {tarball[:len(tarball)-1024], layerGzip},
		"truncated-tar":            {tarball[:len(tarball)/2], layerGzip},
		"encrypted-truncated":      {enc[:len(enc)-20], layerNone},
		"encrypted-work-factor":    {bytes.Replace(enc, []byte(" 1\n"), []byte(" 19\n"), 1), layerNone},
		"encrypted-second-member":  {encryptAt(t, slices.Concat(good, good), fuzzPassphrase, 1), layerNone},
	}
}

// fuzzState is the small state the seeds are made from: a listener, a
// DNS token, an empty directory; no CA (its key would make every seed
// larger without reaching more of the reader).
func fuzzState(t testing.TB) *state.Dir {
	root := filepath.Join(t.TempDir(), "state")
	d := state.OpenDir(root, time.Second)
	if _, err := state.AddListener(context.Background(), d, state.Listener{Name: "web", Addr: ":8443"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Write(context.Background(), "secrets/dns/cf.token", []byte("token\n"), state.SecretMode); err != nil {
		t.Fatal(err)
	}
	if err := state.MkdirAll(filepath.Join(root, "acme", "accounts")); err != nil {
		t.Fatal(err)
	}
	return d
}

// FuzzReadArchive feeds arbitrary bytes and mutations of small archives to
// the reader a restore verifies archives with. It must not panic, must
// refuse anything wrong as bad input (exit 2, never a bare error), and
// what it accepts must be exactly what its manifest says: every directory
// and file once, each file of its manifest's size and SHA-256 and given
// the mode restoredMode decides.
func FuzzReadArchive(f *testing.F) {
	for _, seed := range fuzzSeeds(f, fuzzState(f)) {
		f.Add(seed.data, seed.layer)
	}
	f.Fuzz(func(t *testing.T, data []byte, layer uint8) {
		data = wrap(t, data, layer)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		rec := &recorder{files: map[string]recorded{}}
		// The work factor of the seeds, so that no mutation makes a run
		// cost a second of scrypt.
		a, err := readArchive(ctx, bytes.NewReader(data), fuzzPassphrase, 2, rec)
		if err != nil {
			if fault.KindOf(err) != fault.Invalid || fault.HintOf(err) == "" {
				t.Fatalf("refused, but not as bad input with a hint: %v (kind %v)", err, fault.KindOf(err))
			}
			if a != nil {
				t.Fatal("an archive together with an error")
			}
			return
		}
		m := a.manifest
		if err := m.validate(); err != nil {
			t.Fatalf("accepted a manifest that does not validate: %v", err)
		}
		wantDirs := make([]string, len(m.Dirs))
		for i, d := range m.Dirs {
			wantDirs[i] = d.Path
		}
		slices.Sort(wantDirs)
		gotDirs := slices.Sorted(slices.Values(rec.dirs))
		if !slices.Equal(gotDirs, wantDirs) {
			t.Fatalf("directories %v, manifest %v", gotDirs, wantDirs)
		}
		if len(rec.files) != len(m.Files) {
			t.Fatalf("%d files handed out, manifest lists %d", len(rec.files), len(m.Files))
		}
		for _, f := range m.Files {
			got, ok := rec.files[f.Path]
			archived, _ := parseMode(f.Mode)
			if !ok || got.size != f.Size || got.sum != f.SHA256 || got.mode != restoredMode(f.Path, archived) {
				t.Fatalf("%s: handed out %+v (%v), manifest %+v", f.Path, got, ok, f)
			}
			if kept, ok := a.kept[f.Path]; ok {
				if sum := sha256.Sum256(kept); hex.EncodeToString(sum[:]) != f.SHA256 {
					t.Fatalf("%s: kept content does not match", f.Path)
				}
			} else if keep[f.Path] {
				t.Fatalf("%s: not kept", f.Path)
			}
		}
	})
}

// TestFuzzSeedsAreCommitted: the committed corpus holds every seed
// (so that "go test" runs them without -fuzz), and the valid ones are
// accepted. P2PTLS_WRITE_FUZZ_SEEDS=1 rewrites it.
func TestFuzzSeedsAreCommitted(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReadArchive")
	seeds := fuzzSeeds(t, fuzzState(t))
	if os.Getenv("P2PTLS_WRITE_FUZZ_SEEDS") == "1" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, seed := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nbyte(%d)\n", strconv.Quote(string(seed.data)), seed.layer)
			if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name := range seeds {
		b, err := os.ReadFile(filepath.Join(dir, "seed-"+name))
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("seed %s is not committed (run with P2PTLS_WRITE_FUZZ_SEEDS=1)", name)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		data, layer, err := parseCorpusFile(b)
		if err != nil {
			t.Fatalf("seed %s: %v", name, err)
		}
		_, err = readArchive(context.Background(), bytes.NewReader(wrap(t, data, layer)), fuzzPassphrase, 2, &recorder{files: map[string]recorded{}})
		if valid := strings.HasPrefix(name, "valid"); valid != (err == nil) {
			t.Errorf("seed %s: err = %v", name, err)
		}
	}
}

// parseCorpusFile reads a "go test fuzz v1" file of a []byte and a byte.
func parseCorpusFile(b []byte) ([]byte, uint8, error) {
	bad := errors.New("not a go test fuzz v1 file of a []byte and a byte")
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "go test fuzz v1" {
		return nil, 0, bad
	}
	q, ok := strings.CutPrefix(lines[1], "[]byte(")
	q, ok2 := strings.CutSuffix(q, ")")
	n, ok3 := strings.CutPrefix(lines[2], "byte(")
	n, ok4 := strings.CutSuffix(n, ")")
	if !ok || !ok2 || !ok3 || !ok4 {
		return nil, 0, bad
	}
	s, err := strconv.Unquote(q)
	if err != nil {
		return nil, 0, err
	}
	layer, err := strconv.ParseUint(n, 10, 8)
	return []byte(s), uint8(layer), err
}
