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
	first := statAll(context.Background(), root, seed, nil, 0)
	if first.err != nil || len(first.seen) != n+1 || len(first.names) != n+1 || first.names[0] != ConfigFile {
		t.Fatalf("first scan: err %v, %d seen, %d names (first %q); want %d, %d, %q", first.err, len(first.seen), len(first.names), first.names[0], n+1, n+1, ConfigFile)
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
	if r := statAll(context.Background(), root, seed, nil, 0); r.err != nil || len(r.seen) != 1 {
		t.Errorf("records path a file: err %v, %d seen; want only p2ptls.toml", r.err, len(r.seen))
	}
}
