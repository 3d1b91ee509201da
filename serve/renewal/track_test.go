package renewal

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// rig drives a tracker's passes over a real state directory by hand: a
// fake clock, the store's real feed, and the orders each pass made (the
// state has no ACME account, so each fails at once and is recorded).
type rig struct {
	t        *testing.T
	store    *state.Dir
	clock    *fakeClock
	tr       *tracker
	feed     *state.Feed
	bo       *backoffs
	o        Options
	attempts []string
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, store: newStore(t), clock: newFakeClock(), tr: newTracker(), bo: &backoffs{set: map[string]mappings.BackoffMapping{}}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r.feed = r.store.WatchChanges(ctx)
	r.o = Options{Store: r.store, Log: slog.New(slog.DiscardHandler), Observe: func(id string, _ error) { r.attempts = append(r.attempts, id) }}
	return r
}

// pass takes in what the feed has told and makes the loop's timed pass;
// it returns the mappings ordered.
func (r *rig) pass() []string {
	r.t.Helper()
	for drained := false; !drained; {
		select {
		case <-r.feed.C:
			r.tr.note(r.feed.Take())
		default:
			drained = true
		}
	}
	r.attempts = nil
	r.tr.pass(context.Background(), r.o, acme.Options{Log: r.o.Log}, r.clock, r.bo)
	if r.tr.settings == nil {
		r.t.Fatal("the pass did not end")
	}
	return r.attempts
}

// picked is what a pass now would decide again.
func (r *rig) picked() []string {
	dir, ok := statRoot(r.store)
	if !ok {
		r.t.Fatal("not a local store")
	}
	var ids []string
	for _, p := range r.tr.stat(context.Background(), dir, r.clock.Now(), false) {
		ids = append(ids, r.tr.entries[p.i].id)
	}
	return ids
}

// settle waits until the files are older than the racy window
// (state.FileID.Racy) and makes a pass, which decides again what the
// passes before wrote (their stat tells it, whether or not the feed has
// told yet).
func (r *rig) settle() {
	r.t.Helper()
	time.Sleep(1100 * time.Millisecond)
	r.pass()
}

// waitNamed waits until the feed told that id changed.
func (r *rig) waitNamed(id string) {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for !r.tr.named[id] && !r.tr.complete {
		select {
		case <-r.feed.C:
			r.tr.note(r.feed.Take())
		case <-deadline:
			r.t.Fatalf("the feed did not name mapping %s", id)
		}
	}
}

func (r *rig) file(id, name string) string {
	return filepath.Join(r.store.Root(), filepath.FromSlash(mappings.MappingDir(id)), name)
}

// inPlace rewrites the file at p in place: same inode, as "cat >" does.
func inPlace(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// byRename replaces the file at p with a new one, as editors and "mv" do.
func byRename(t *testing.T, p string, b []byte) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func selfSigned(t *testing.T, hosts []string, made time.Time, lifetime time.Duration) *pki.KeyPair {
	t.Helper()
	kp, err := pki.SelfSigned(pki.ParseNames(hosts), made, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// Every hand edit of what a decision reads is decided again at the next
// pass, and only that mapping: a certificate or key rewritten in place or
// replaced by a rename (no feed reports those), meta.toml rewritten in
// place, a record changed, added or removed (the feed names those). The
// unchanged mappings are decided from what the loop kept.
func TestHandEditsAreDecidedAtTheNextPass(t *testing.T) {
	year := 365 * 24 * time.Hour
	tests := []struct {
		desc string
		edit func(r *rig)
		// fed: the feed names the edit (else only a stat tells it).
		fed bool
		// picked: the mappings the next pass decides again; attempts:
		// those it orders.
		picked, attempts []string
		// gone: the mapping is no longer followed.
		gone string
	}{
		{desc: "nothing changed"},
		{desc: "certificate rewritten in place, expired", picked: []string{"a"}, attempts: []string{"a"},
			edit: func(r *rig) {
				kp := selfSigned(r.t, []string{"a.example.com"}, r.clock.Now().Add(-48*time.Hour), 2*time.Hour)
				inPlace(r.t, r.file("a", mappings.KeyFileName), kp.KeyPEM)
				inPlace(r.t, r.file("a", mappings.CertFileName), kp.CertPEM)
			}},
		{desc: "certificate replaced by a rename, other hosts", picked: []string{"a"}, attempts: []string{"a"},
			edit: func(r *rig) {
				kp := selfSigned(r.t, []string{"other.example.com"}, r.clock.Now(), year)
				byRename(r.t, r.file("a", mappings.KeyFileName), kp.KeyPEM)
				byRename(r.t, r.file("a", mappings.CertFileName), kp.CertPEM)
			}},
		{desc: "key rewritten in place, not the certificate's", picked: []string{"b"}, attempts: []string{"b"},
			edit: func(r *rig) {
				kp := selfSigned(r.t, []string{"b.example.com"}, r.clock.Now(), year)
				inPlace(r.t, r.file("b", mappings.KeyFileName), kp.KeyPEM)
			}},
		{desc: "meta.toml rewritten in place, the back-off ended by hand", picked: []string{"c"}, attempts: []string{"c"},
			edit: func(r *rig) {
				meta, err := mappings.LoadMeta(context.Background(), r.store, "c")
				if err != nil {
					r.t.Fatal(err)
				}
				b, err := os.ReadFile(r.file("c", mappings.MetaFileName))
				if err != nil || !strings.Contains(string(b), "retry_at") {
					r.t.Fatalf("meta.toml of c: %v\n%s", err, b)
				}
				var kept []string
				for _, line := range strings.Split(string(b), "\n") {
					if !strings.HasPrefix(line, "retry_at") {
						kept = append(kept, line)
					}
				}
				inPlace(r.t, r.file("c", mappings.MetaFileName), []byte(strings.Join(kept, "\n")))
				if meta.RetryAt.IsZero() {
					r.t.Fatal("c was not backing off")
				}
			}},
		{desc: "record changed by hand", fed: true, picked: []string{"b"}, attempts: []string{"b"},
			edit: func(r *rig) {
				p := filepath.Join(r.store.Root(), filepath.FromSlash(state.RecordName("b")))
				b, err := os.ReadFile(p)
				if err != nil {
					r.t.Fatal(err)
				}
				inPlace(r.t, p, []byte(strings.Replace(string(b), "b.example.com", "b2.example.com", 1)))
			}},
		{desc: "record added by hand", fed: true, picked: []string{"d"}, attempts: []string{"d"},
			edit: func(r *rig) {
				rec := "id = 'd'\nlistener = 'web'\nhosts = ['d.example.com']\nsource = 'acme'\nchallenge = 'tls-alpn-01'\n"
				if err := os.WriteFile(filepath.Join(r.store.Root(), filepath.FromSlash(state.RecordName("d"))), []byte(rec), 0o600); err != nil {
					r.t.Fatal(err)
				}
			}},
		{desc: "record removed by hand", fed: true, gone: "c",
			edit: func(r *rig) {
				if err := os.Remove(filepath.Join(r.store.Root(), filepath.FromSlash(state.RecordName("c")))); err != nil {
					r.t.Fatal(err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			r := newRig(t)
			now := r.clock.Now()
			addACME(t, r.store, "a", now.Add(-time.Hour), year)
			addACME(t, r.store, "b", now.Add(-time.Hour), year)
			addACME(t, r.store, "c", now.Add(-48*time.Hour), 2*time.Hour) // expired: fails, backs off
			if got := r.pass(); !slices.Equal(got, []string{"c"}) {
				t.Fatalf("first pass ordered %v, want [c] (expired)", got)
			}
			r.settle()
			if got := r.picked(); got != nil {
				t.Fatalf("settled, a pass would decide %v again, want none", got)
			}
			if _, ok := r.bo.set["c"]; !ok {
				t.Fatal("c is not counted as backing off")
			}

			if tc.edit != nil {
				tc.edit(r)
			}
			if tc.fed {
				id := tc.gone
				if id == "" {
					id = tc.picked[0]
				}
				r.waitNamed(id)
			} else if got := r.picked(); !slices.Equal(got, tc.picked) {
				// Nothing but the stat tells these: what the next pass
				// decides is what a stat finds now.
				t.Fatalf("after the edit a pass would decide %v, want %v", got, tc.picked)
			}
			if got := r.pass(); !slices.Equal(got, tc.attempts) {
				t.Fatalf("the next pass ordered %v, want %v", got, tc.attempts)
			}
			if tc.gone != "" {
				if _, ok := r.tr.find(tc.gone); ok {
					t.Errorf("mapping %s is still followed after its record was removed", tc.gone)
				}
				if _, ok := r.bo.set[tc.gone]; ok {
					t.Errorf("mapping %s still counts as backing off after its record was removed", tc.gone)
				}
			}
			r.settle()
			if got := r.picked(); got != nil {
				t.Errorf("settled after the edit, a pass would decide %v again, want none", got)
			}
		})
	}
}

// A certificate that nothing changes is renewed at its renewal time, and
// a back-off retried at its end: the time kept from the decision comes.
func TestKeptTimesComeDue(t *testing.T) {
	r := newRig(t)
	start := r.clock.Now()
	// 70 minutes ahead, one hour back (pki's backdate): due at half its
	// life, 5 minutes from now.
	cert := addACME(t, r.store, "short", start, 70*time.Minute)
	addACME(t, r.store, "long", start, 365*24*time.Hour)
	renewAt := pki.RenewalTime(cert)
	if got := r.pass(); got != nil {
		t.Fatalf("first pass ordered %v, want none", got)
	}
	r.settle()
	if got := r.pass(); got != nil {
		t.Fatalf("ordered %v before the renewal time", got)
	}
	r.clock.advance(renewAt.Add(-time.Second))
	if got := r.picked(); got != nil {
		t.Fatalf("a second before the renewal time a pass would decide %v, want none", got)
	}
	r.clock.advance(renewAt)
	if got := r.picked(); !slices.Equal(got, []string{"short"}) {
		t.Fatalf("at the renewal time a pass would decide %v, want [short]", got)
	}
	if got := r.pass(); !slices.Equal(got, []string{"short"}) {
		t.Fatalf("at the renewal time the pass ordered %v, want [short]", got)
	}
	// The failure backs off 5 minutes: decided again when it ends.
	r.waitNamed("short")
	if got := r.pass(); got != nil {
		t.Fatalf("during the back-off the pass ordered %v", got)
	}
	retry := renewAt.Add(5 * time.Minute)
	if next := r.tr.earliest(); !next.Equal(retry) {
		t.Fatalf("the loop would wake at %s, want the end of the back-off %s", next, retry)
	}
	r.clock.advance(retry)
	if got := r.pass(); !slices.Equal(got, []string{"short"}) {
		t.Fatalf("when the back-off ended the pass ordered %v, want [short]", got)
	}
}

// A file changed just before a pass is decided again at the next one
// even when a stat then finds it as it was: a change within the file
// system's time granularity may not show in its identity.
func TestRecentChangeIsLookedAtAgain(t *testing.T) {
	r := newRig(t)
	addACME(t, r.store, "a", r.clock.Now().Add(-time.Hour), 365*24*time.Hour)
	r.pass()
	r.settle()
	if got := r.picked(); got != nil {
		t.Fatalf("settled, a pass would decide %v", got)
	}
	b, err := os.ReadFile(r.file("a", mappings.MetaFileName))
	if err != nil {
		t.Fatal(err)
	}
	inPlace(t, r.file("a", mappings.MetaFileName), b) // same content, same size
	r.pass()
	if got := r.picked(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("right after a pass that saw a fresh change, the next would decide %v, want [a]", got)
	}
	time.Sleep(1100 * time.Millisecond)
	r.pass()
	if got := r.picked(); got != nil {
		t.Fatalf("once the change is older than the racy window a pass would decide %v, want none", got)
	}
}

// The timed pass is complete at start, after an hour, when the clock
// went back and when the feed cannot tell what changed (p2ptls.toml); in
// between it decides only what changed.
func TestCompletePasses(t *testing.T) {
	r := newRig(t)
	addACME(t, r.store, "a", r.clock.Now().Add(-time.Hour), 365*24*time.Hour)
	var kinds []string
	testHook = func(kind string) { kinds = append(kinds, kind) }
	t.Cleanup(func() { testHook = nil })
	complete := func(want bool, what string) {
		t.Helper()
		kinds = nil
		r.pass()
		if got := slices.Contains(kinds, "complete"); got != want {
			t.Fatalf("%s: complete pass %v, want %v", what, got, want)
		}
	}
	start := r.clock.Now()
	complete(true, "at start")
	r.clock.advance(start.Add(10 * time.Minute))
	complete(false, "10 minutes on")
	r.clock.advance(start.Add(completeEvery - time.Second))
	complete(false, "just before the hour")
	r.clock.advance(start.Add(completeEvery))
	complete(true, "an hour on")
	r.clock.advance(start)
	complete(true, "the clock went back")
	complete(false, "the pass after")
	p := filepath.Join(r.store.Root(), state.ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	inPlace(t, p, append(b, "# edited by hand\n"...))
	deadline := time.After(10 * time.Second)
	for !r.tr.complete {
		select {
		case <-r.feed.C:
			r.tr.note(r.feed.Take())
		case <-deadline:
			t.Fatal("the feed did not name p2ptls.toml")
		}
	}
	complete(true, "after p2ptls.toml changed")
	// A complete pass cut short by a panic leaves the next one complete.
	r.clock.advance(start.Add(3 * completeEvery))
	testHook = func(kind string) {
		if kind == "complete" {
			panic("injected")
		}
	}
	timedPass(context.Background(), r.o, acme.Options{Log: r.o.Log}, r.clock, r.bo, r.tr)
	testHook = func(kind string) { kinds = append(kinds, kind) }
	complete(true, "after a pass that panicked")
	complete(false, "the pass after")
}

// The feed's names: which decide one mapping again, which make the pass
// complete, and which are nothing to renewal.
func TestNote(t *testing.T) {
	tests := []struct {
		names    []string
		full     bool
		complete bool
		reload   bool
		named    []string
	}{
		{full: true, complete: true},
		{names: []string{"p2ptls.toml"}, complete: true},
		{names: []string{"acme/accounts/abc/account.json"}, complete: true},
		{names: []string{"mappings"}, complete: true},
		{names: []string{"certs/public"}, complete: true},
		{names: []string{"mappings/app.toml"}, reload: true, named: []string{"app"}},
		{names: []string{"mappings/app.toml~", "mappings/.app.toml.swp"}},
		{names: []string{"certs/public/app/cert.pem", "certs/public/app/meta.toml", "certs/public/b/key.pem"}, named: []string{"app", "b"}},
		{names: []string{"acme/challenges/tok", "secrets/dns/cf", "run/status.json"}},
	}
	for _, tc := range tests {
		tr := newTracker()
		tr.note(state.Changed{Names: tc.names, Full: tc.full})
		var named []string
		for id := range tr.named {
			named = append(named, id)
		}
		slices.Sort(named)
		if tr.complete != tc.complete || tr.reload != tc.reload || !slices.Equal(named, tc.named) {
			t.Errorf("note(%v, full %v): complete %v reload %v named %v, want %v %v %v", tc.names, tc.full, tr.complete, tr.reload, named, tc.complete, tc.reload, tc.named)
		}
	}
}

// Under Run, with the store's feed: after the complete pass at start, a
// certificate rewritten in place by hand and a record edited by hand are
// each ordered at the next timed pass, which is not a complete one.
func TestLoopDecidesHandEditsAtItsNextPass(t *testing.T) {
	store := newStore(t)
	clock := newFakeClock()
	addACME(t, store, "a", clock.Now().Add(-time.Hour), 365*24*time.Hour)
	addACME(t, store, "b", clock.Now().Add(-time.Hour), 365*24*time.Hour)
	l := startLoop(t, store, clock, false)
	l.pass(t, "complete", "at start")
	time.Sleep(1100 * time.Millisecond) // the files older than the racy window
	at := l.clock.sleeping(t)
	l.clock.advance(at)
	l.pass(t, "full", "10 minutes on")
	l.clock.sleeping(t) // the pass has ended
	l.noAttempt(t, "nothing changed")

	kp := selfSigned(t, []string{"a.example.com"}, clock.Now().Add(-48*time.Hour), 2*time.Hour)
	dir := filepath.Join(store.Root(), filepath.FromSlash(mappings.MappingDir("a")))
	inPlace(t, filepath.Join(dir, mappings.KeyFileName), kp.KeyPEM)
	inPlace(t, filepath.Join(dir, mappings.CertFileName), kp.CertPEM)
	rec := filepath.Join(store.Root(), filepath.FromSlash(state.RecordName("b")))
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	inPlace(t, rec, []byte(strings.Replace(string(b), "b.example.com", "b2.example.com", 1)))
	l.pass(t, "prompt", "after the record changed")
	at = l.clock.sleeping(t)
	l.noAttempt(t, "before the next pass")
	l.clock.advance(at)
	passes := []string{}
	got := map[string]bool{}
	for range 2 {
		select {
		case o := <-l.observed:
			got[o.id] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("ordered only %v at the next pass", got)
		}
	}
	for drained := false; !drained; {
		select {
		case k := <-l.passes:
			passes = append(passes, k)
		default:
			drained = true
		}
	}
	if !got["a"] || !got["b"] {
		t.Fatalf("ordered %v at the next pass, want a (certificate expired by hand) and b (hosts changed by hand)", got)
	}
	if slices.Contains(passes, "complete") {
		t.Errorf("passes %v: the pass after hand edits was complete, want one that decides what changed", passes)
	}
}
