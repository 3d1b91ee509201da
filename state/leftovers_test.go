package state

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIsTempName(t *testing.T) {
	for name, want := range map[string]bool{
		".p2ptls.toml.tmp-123456": true, ".key.pem.tmp-1": true,
		"p2ptls.toml.tmp-1": false, ".key.pem.tmp-": false, ".key.pem.tmp-12a": false, ".tmp-1": false, "key.pem": false,
	} {
		if IsTempName(name) != want {
			t.Errorf("IsTempName(%q) = %v, want %v", name, !want, want)
		}
	}
}

// leftoverState is a state with mapping "keep" and what a killed writer
// leaves: an orphan mapping directory with a key, temporary files; run/
// has a temporary file of serve's, which writes there without the lock.
func leftoverState(t *testing.T) (*Dir, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "state")
	d := OpenDir(root, 2*time.Second)
	err := Update(context.Background(), d, "test", func(tx *Tx) error {
		c := tx.Config
		c.Listeners = []Listener{{Name: "web", Addr: ":443"}}
		c.Mappings = []Mapping{{ID: "keep", Listener: "web", Hosts: []string{"a.example.com"}, Source: SourceSelfSigned}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"certs/public/keep/cert.pem":                "c",
		"certs/public/ghost/key.pem":                "secret key",
		"certs/public/ghost/cert.pem":               "c",
		"certs/public/keep/.key.pem.tmp-42":         "half a key",
		".p2ptls.toml.tmp-7":                        "half a config",
		"run/.status.json.tmp-9":                    "serve's own",
		"certs/public/Not-An-Id/notes.txt":          "an operator's",
		"certs/management/.server.key.tmp-31337000": "k",
	} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d, root
}

func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if rel, _ := filepath.Rel(root, p); err == nil && !info.IsDir() && !strings.HasPrefix(rel, MemoDir+"/") {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(out)
	return out
}

var afterCleanup = []string{
	"certs/public/Not-An-Id/notes.txt", "certs/public/keep/cert.pem", "mappings/keep.toml", "p2ptls.rev", "p2ptls.toml", "run/.status.json.tmp-9",
}

// The next lock after a holder died removes what it left; a lock after a
// holder that unlocked normally does not look (a walk of 100k mappings on
// every change would be too slow), and leaves them for doctor to report.
func TestLockRemovesLeftoversOfADeadHolder(t *testing.T) {
	t.Run("stale lock record", func(t *testing.T) {
		d, root := leftoverState(t)
		// What a killed holder leaves: its record, no flock (the kernel
		// dropped it).
		rec := "pid = 999999\nhost = 'h'\nsince = 2026-01-01T00:00:00Z\npurpose = 'mapping add ghost'\n"
		if err := os.WriteFile(filepath.Join(root, LockFile), []byte(rec), 0o600); err != nil {
			t.Fatal(err)
		}
		unlock, err := d.Lock(context.Background(), "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
		if got := files(t, root); !slices.Equal(got, afterCleanup) {
			t.Errorf("after the takeover:\n%q\nwant\n%q", got, afterCleanup)
		}
	})
	t.Run("clean lock", func(t *testing.T) {
		d, root := leftoverState(t)
		before := files(t, root)
		unlock, err := d.Lock(context.Background(), "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
		if got := files(t, root); !slices.Equal(got, before) {
			t.Errorf("a lock after a clean unlock removed something:\n%q\nwant\n%q", got, before)
		}
		l, err := FindLeftovers(context.Background(), d, root)
		if err != nil || strings.Join(l.Orphans, " ") != "certs/public/ghost" || len(l.TempFiles) != 3 {
			t.Errorf("FindLeftovers = %+v, %v", l, err)
		}
	})
}

// A real writer, killed with SIGKILL while it holds the lock in the
// middle of adding a mapping: its key is written, p2ptls.toml does not
// name the mapping yet, and a temporary file is half written.
func TestLockRemovesLeftoversOfAKilledWriter(t *testing.T) {
	if os.Getenv("P2PTLS_TEST_KILLED_WRITER") != "" {
		d := OpenDir(os.Getenv("P2PTLS_TEST_KILLED_WRITER"), time.Second)
		if _, err := d.Lock(context.Background(), "mapping add ghost"); err != nil {
			os.Exit(3)
		}
		if err := d.Write(context.Background(), "certs/public/ghost/key.pem", []byte("key"), SecretMode); err != nil {
			os.Exit(4)
		}
		f, err := os.CreateTemp(filepath.Join(d.root, "certs/public/ghost"), ".cert.pem.tmp-*")
		if err != nil {
			os.Exit(5)
		}
		f.WriteString("half")
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute) // killed here
		os.Exit(6)
	}
	d, root := leftoverState(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockRemovesLeftoversOfAKilledWriter$")
	cmd.Env = append(os.Environ(), "P2PTLS_TEST_KILLED_WRITER="+root)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
		_ = cmd.Process.Kill()
		t.Fatalf("writer: %q, %v", buf, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	unlock, err := d.Lock(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if got := files(t, root); !slices.Equal(got, afterCleanup) {
		t.Errorf("after the killed writer:\n%q\nwant\n%q", got, afterCleanup)
	}
}

// allTemps is every entry with a temporary name under root, run/ and
// temporary directories included, in WalkDir's order: what a walk that
// does not skip anything (doctor's) hands FindLeftoversIn.
func allTemps(t *testing.T, root string) []TempEntry {
	t.Helper()
	var out []TempEntry
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel, _ := filepath.Rel(root, p); p != root && IsTempName(de.Name()) {
			out = append(out, TempEntry{Name: filepath.ToSlash(rel), Dir: de.IsDir()})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFindLeftoversInIsFindLeftovers: given every temporary name of a
// walk that skips nothing, FindLeftoversIn finds what FindLeftovers finds
// with its own walk: not serve's temporary files under run/ (a temporary
// directory there included), not what is inside a directory put aside
// (temporary names in it included), not what a pending journal names.
func TestFindLeftoversInIsFindLeftovers(t *testing.T) {
	tests := []struct {
		desc  string
		extra map[string]string // more files, by store name
		want  int               // temporary files found
		// orphans is how many orphan directories are found: none while a
		// committed change is pending.
		orphans int
	}{
		{desc: "the leftovers of a killed writer", want: 3, orphans: 1},
		{desc: "a pending change (a journal that does not parse names nothing)", want: 3, extra: map[string]string{JournalFile: "garbage"}},
		{desc: "temporary directories, in run/ and elsewhere", want: 6, orphans: 1, extra: map[string]string{
			"run/.cache.tmp-3/.records.tmp-4":              "serve's",
			"certs/public/.old.tmp-55/key.pem":             "put aside",
			"certs/public/.old.tmp-55/.cert.pem.tmp-56":    "inside it",
			"certs/public/.old.tmp-55/.sub.tmp-57/x":       "deeper",
			"certs/public/keep/.meta.toml.tmp-58":          "half",
			"certs/public/keep.tmp-9/notes":                "not a temporary name: no leading dot",
			"certs/public/keep/.cert.pem.tmp-1/.x.tmp-2/y": "a directory with a temporary name",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d, root := leftoverState(t)
			for name, body := range tc.extra {
				p := filepath.Join(root, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			ctx := context.Background()
			want, werr := FindLeftovers(ctx, d, root)
			load := func() (*Config, error) { return LoadConfig(ctx, d) }
			got, err := FindLeftoversIn(ctx, d, root, allTemps(t, root), load)
			if err != nil || werr != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("FindLeftoversIn = %+v, %v\nFindLeftovers = %+v, %v", got, err, want, werr)
			}
			if len(got.TempFiles) != tc.want || len(got.Orphans) != tc.orphans || got.Pending != (tc.orphans == 0) {
				t.Fatalf("found %d temporary files and %d orphans: %+v; want %d and %d", len(got.TempFiles), len(got.Orphans), got, tc.want, tc.orphans)
			}
		})
	}
}
