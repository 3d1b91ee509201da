package doctor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/p2pstream/p2ptls/state"
)

// remote is a store that is not a local directory: the Dir's methods
// without Root, as a remote backend offers them.
type remote struct{ state.Store }

// Doctor takes the Store: on one that is not a local directory the checks
// of what only a directory has are not applicable, and every other check
// says what it says of the same state in a directory (with names in the
// store in place of paths).
func TestRunOnAStoreThatIsNotADirectory(t *testing.T) {
	s := healthy(t)
	local := Run(context.Background(), input(s))
	in := input(s)
	in.Store = remote{s}
	rep := Run(context.Background(), in)
	dirOnly := map[string]bool{IDPermissions: true, IDLock: true, IDRestoreStaging: true, IDOrphans: true}
	if len(rep.Checks) != len(local.Checks) {
		t.Fatalf("%d checks, want %d", len(rep.Checks), len(local.Checks))
	}
	for i, c := range rep.Checks {
		l := local.Checks[i]
		switch {
		case dirOnly[c.ID]:
			want(t, c, c.ID, OK, "not applicable")
		case c.Status != l.Status:
			t.Errorf("%s: %s (%s), in the directory %s (%s)", c.ID, c.Status, c.Message, l.Status, l.Message)
		}
	}
	if rep.OK != local.OK {
		t.Errorf("OK = %v, in the directory %v", rep.OK, local.OK)
	}
}

// A change cut short after its commit is pending, not leftovers: doctor
// says so, and does not tell the operator to remove its staged files.
func TestCheckOrphansPendingChange(t *testing.T) {
	s := newStore(t)
	addListener(t, s, state.Listener{Name: "web", Addr: ":443"})
	mustWrite(t, s, "certs/public/new/.key.pem.tmp-5", []byte("staged"), state.SecretMode)
	j := `{"version":1,"deletes":[],"writes":[{"temp":"certs/public/new/.key.pem.tmp-5","name":"certs/public/new/key.pem"}]}`
	if err := os.WriteFile(filepath.Join(s.Root(), state.JournalFile), []byte(j), 0o600); err != nil {
		t.Fatal(err)
	}
	c := run(input(s), checkOrphans)
	want(t, c, IDOrphans, Warn, "cut short after it was committed", state.JournalFile)
	wantHint(t, c, "finishes the change")
}

// recordReads counts the reads of each mapping record: a local directory
// (Root is the Dir's) whose reads are counted.
type recordReads struct {
	*state.Dir
	mu    sync.Mutex
	reads map[string]int
}

func (r *recordReads) Read(ctx context.Context, name string) ([]byte, error) {
	r.mu.Lock()
	r.reads[name]++
	r.mu.Unlock()
	return r.Dir.Read(ctx, name)
}

// TestRunLoadsTheStateOnce: doctor reads each record once, for every
// check (the orphans check included): a second load of 100k records costs
// seconds. Orphans are still found against that one load.
func TestRunLoadsTheStateOnce(t *testing.T) {
	s := healthy(t)
	addMapping(t, s, state.Mapping{ID: "second", Listener: "web", Hosts: []string{"second.example.com"}, Source: state.SourceSelfSigned})
	mustWrite(t, s, "certs/public/gone/key.pem", []byte("key"), state.SecretMode)
	r := &recordReads{Dir: s, reads: map[string]int{}}
	in := input(s)
	in.Store = r
	rep := Run(context.Background(), in)
	for _, c := range rep.Checks {
		if c.ID == IDOrphans {
			want(t, c, IDOrphans, Warn, "certs/public/gone")
		}
	}
	records := 0
	for name, n := range r.reads {
		if strings.HasPrefix(name, state.RecordsDir+"/") {
			records++
			if n != 1 {
				t.Errorf("%s read %d times, want once", name, n)
			}
		}
	}
	if records < 2 {
		t.Fatalf("%d records read, want every mapping's: %v", records, r.reads)
	}
}
