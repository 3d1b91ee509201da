package state

import (
	"context"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// statAll reads the records directory in batches: across batches it still
// sees every record, names the changed ones in name order with their
// keys, p2ptls.toml first, and finds the vanished ones.
func TestStatAllAcrossBatches(t *testing.T) {
	root := t.TempDir()
	recs := filepath.Join(root, RecordsDir)
	if err := os.MkdirAll(recs, 0o755); err != nil {
		t.Fatal(err)
	}
	n := 2*statBatch + 7
	write := func(i int) {
		if err := os.WriteFile(filepath.Join(recs, fmt.Sprintf("m%05d.toml", i)), []byte(fmt.Sprint(i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		write(i)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFile), []byte("schema_version = 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	seed := maphash.MakeSeed()
	first := statAll(context.Background(), root, seed, seenSet{}, 0)
	if first.err != nil || first.seen.len() != n+1 || len(first.names) != n+1 || first.names[0] != ConfigFile {
		t.Fatalf("first scan: err %v, %d seen, %d names (first %q); want %d, %d, %q", first.err, first.seen.len(), len(first.names), first.names[0], n+1, n+1, ConfigFile)
	}
	if !slices.IsSorted(first.names[1:]) {
		t.Error("the records are not named in name order")
	}
	for i, name := range first.names {
		if first.keys[i] != maphash.String(seed, name) {
			t.Fatalf("name %q has the key of another", name)
		}
	}
	// Change records in every batch, remove one, add one.
	changed := []int{3, statBatch + 1, 2*statBatch + 5}
	time.Sleep(10 * time.Millisecond) // a new mtime
	for _, i := range changed {
		if err := os.WriteFile(filepath.Join(recs, fmt.Sprintf("m%05d.toml", i)), []byte("changed, longer"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(recs, "m00010.toml")); err != nil {
		t.Fatal(err)
	}
	write(n)
	next := statAll(context.Background(), root, seed, first.seen, 0)
	want := []string{RecordsDir + "/m00003.toml", fmt.Sprintf("%s/m%05d.toml", RecordsDir, statBatch+1), fmt.Sprintf("%s/m%05d.toml", RecordsDir, 2*statBatch+5), fmt.Sprintf("%s/m%05d.toml", RecordsDir, n)}
	if next.err != nil || !slices.Equal(next.names, want) || len(next.vanished) != 1 || next.vanished[0] != maphash.String(seed, RecordsDir+"/m00010.toml") {
		t.Errorf("second scan: err %v, names %v, vanished %v; want %v and m00010", next.err, next.names, next.vanished, want)
	}
	// A records path that is a file holds no records, as before.
	if err := os.RemoveAll(recs); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recs, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := statAll(context.Background(), root, seed, seenSet{}, 0); r.err != nil || r.seen.len() != 1 {
		t.Errorf("records path a file: err %v, %d seen; want only p2ptls.toml", r.err, r.seen.len())
	}
}

// seenAt is what s holds for k, 0 for nothing.
func seenAt(s seenSet, k uint64) uint64 {
	v, _ := s.get(k)
	return v
}

// A seenSet keeps what a map would, through changes past the point where
// it folds them into a new base, and a snapshot does not see the changes
// made after it.
func TestSeenSet(t *testing.T) {
	tests := []struct {
		name    string
		base    int // files in the first base
		changes int // set, then every third removed
	}{
		{"empty", 0, 0},
		{"changes only", 0, 50},
		{"few changes", 1000, 10},
		{"folded", 1000, 3 * (seenOverMax + 1000/16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := map[uint64]uint64{}
			var kvs []seenKV
			for i := range tt.base {
				k := uint64(i)*7919 + 1
				kvs = append(kvs, seenKV{k, uint64(i)})
				want[k] = uint64(i)
			}
			s := makeSeen(kvs)
			snap := s.snapshot()
			for i := range tt.changes {
				k := uint64(i)*104729 + 3 // some in the base, some new
				if i%3 == 2 {
					k = uint64(i%max(tt.base, 1))*7919 + 1
					s.del(k)
					delete(want, k)
					continue
				}
				s.set(k, 1000+uint64(i))
				want[k] = 1000 + uint64(i)
			}
			s.del(1 << 60) // not there: no change
			if s.len() != len(want) {
				t.Errorf("len %d, want %d", s.len(), len(want))
			}
			for k, v := range want {
				if got, ok := s.get(k); !ok || got != v {
					t.Fatalf("get(%d) = %d, %v; want %d", k, got, ok, v)
				}
			}
			n := 0
			s.each(func(k, v uint64) {
				n++
				if want[k] != v {
					t.Errorf("each: %d = %d, want %d", k, v, want[k])
				}
			})
			if n != len(want) {
				t.Errorf("each saw %d, want %d", n, len(want))
			}
			if snap.len() != tt.base {
				t.Errorf("the snapshot holds %d, want the base's %d", snap.len(), tt.base)
			}
			for _, e := range kvs {
				if got, ok := snap.get(e.k); !ok || got != e.v {
					t.Fatalf("snapshot get(%d) = %d, %v; want %d", e.k, got, ok, e.v)
				}
			}
		})
	}
}

// The full poll takes at most 1/pollBudget of a core, a quarter of that
// while inotify watches the records directory, and comes every second to
// every watchPollMax.
func TestFullPollSpacing(t *testing.T) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Skipf("inotify: %v", err)
	}
	defer w.Close()
	const records = "/state/mappings"
	tests := []struct {
		name    string
		w       *fsnotify.Watcher
		watched []string
		took    time.Duration
		want    time.Duration
	}{
		{"poll alone", nil, nil, 100 * time.Millisecond, 5 * time.Second},
		{"records watched", w, []string{"/state", records}, 100 * time.Millisecond, 20 * time.Second},
		{"records not watched", w, []string{"/state"}, 100 * time.Millisecond, 5 * time.Second},
		{"a small state", w, []string{records}, time.Millisecond, watchPoll},
		{"a huge state", nil, nil, 2 * time.Second, watchPollMax},
	}
	for _, tt := range tests {
		h := &hub{w: tt.w, records: records, watched: tt.watched}
		h.space(tt.took)
		if h.fullEvery != tt.want {
			t.Errorf("%s: a poll of %v is spaced %v, want %v", tt.name, tt.took, h.fullEvery, tt.want)
		}
	}
}
