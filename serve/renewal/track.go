package renewal

import (
	"cmp"
	"context"
	"encoding/binary"
	"hash/maphash"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/parallel"
)

// How a pass with nothing changed stays cheap at 100k ACME mappings. The
// loop keeps, between its passes, what it decided of each ACME mapping:
// the identities of the files it decided from (cert.pem, key.pem,
// meta.toml) and when the decision runs out (a renewal time, the end of
// a back-off, renewal info to ask again). The store's feed names what a
// locked change wrote and the records and p2ptls.toml edited by hand; a
// hand edit of a mapping's files, which no feed reports (one watch per
// mapping directory would be 100k watches), shows in their stat. So a
// pass stats those three files of each mapping and decides again only
// the mappings whose files changed or that the feed named, and those
// whose time came; the rest would be decided the same. It loads the
// config only when the feed named a record, and otherwise reads the
// records of the few it decides.
//
// A complete pass decides every mapping from the config loaded afresh,
// as "cert renew" does: at start, when the feed cannot tell what changed
// (Full, p2ptls.toml, an ACME account), after a pass that did not end,
// when the clock went back, and at least every completeEvery, so that
// what neither the feed nor a stat tells (an account put in place by
// hand, an ACME server that began to offer renewal info) is seen within
// it. A store that is not a local directory has no stats: every pass is
// complete there.

// completeEvery bounds the time between complete passes.
const completeEvery = time.Hour

// trackedFiles are the files of a mapping that a decision reads, in the
// order of fileIDs.
var trackedFiles = [...]string{mappings.CertFileName, mappings.KeyFileName, mappings.MetaFileName}

// fileIDs are the identities of one mapping's trackedFiles; a missing
// file's is zero.
type fileIDs [len(trackedFiles)]state.FileID

// tracker is what the loop knows of the ACME mappings between passes.
// Only the loop's goroutine uses it.
type tracker struct {
	seed maphash.Seed
	// settings is the config of the last load without its mappings; nil
	// until a complete pass ended, and while a pass runs (one that does
	// not end leaves the next one complete).
	settings   *state.Config
	completeAt time.Time // when the last complete pass began
	entries    []entry   // the ACME mappings, by id
	// What the feed told since the last pass: anything may have changed
	// (complete), a record did (reload), and the mappings it named.
	complete, reload bool
	named            map[string]bool
}

// entry is one ACME mapping as the last decision of it left it.
type entry struct {
	id string
	// files is sum of the fileIDs it was decided from; 0: decide again.
	files uint64
	// next is when to decide again (UnixNano); 0: at the next pass.
	next int64
}

func newTracker() *tracker {
	return &tracker{seed: maphash.MakeSeed(), named: map[string]bool{}}
}

// note takes in what the feed reported.
func (t *tracker) note(c state.Changed) {
	if c.Full {
		t.complete = true
		return
	}
	for _, n := range c.Names {
		n = path.Clean(n)
		switch {
		case n == state.ConfigFile, n == state.RecordsDir, n == mappings.PublicDir, n == path.Dir(mappings.PublicDir),
			n == acme.AccountsDir, strings.HasPrefix(n, acme.AccountsDir+"/"):
			// Listeners, ACME settings, every mapping of a schema 1
			// state, a whole directory, or an account that can now be
			// asked for renewal info.
			t.complete = true
		case strings.HasPrefix(n, state.RecordsDir+"/"):
			if state.IsRecordFile(n) { // else ignored, as loading ignores it
				t.reload = true
				t.named[strings.TrimSuffix(path.Base(n), ".toml")] = true
			}
		case strings.HasPrefix(n, mappings.PublicDir+"/"):
			id, _, _ := strings.Cut(n[len(mappings.PublicDir)+1:], "/")
			t.named[id] = true
		}
	}
}

// pick is an entry to decide again, with the identities of its files
// taken just before.
type pick struct {
	i     int // into entries
	files fileIDs
	racy  bool // one changed too recently for its identity to tell a change after
}

// pass is the loop's timed pass: it renews what is due and returns when
// something may be due next (zero: nothing known).
func (t *tracker) pass(ctx context.Context, o Options, opts acme.Options, clk Clock, bo *backoffs) time.Time {
	now := clk.Now()
	settings := t.settings
	t.settings = nil
	dir, local := statRoot(o.Store)
	if settings == nil || t.complete || !local || now.Before(t.completeAt) || !now.Before(t.completeAt.Add(completeEvery)) {
		return t.completePass(ctx, o, opts, clk, bo, dir, local)
	}
	var cfg *state.Config
	if t.reload {
		var err error
		if cfg, err = state.LoadConfig(ctx, o.Store); err != nil {
			// As a complete pass that cannot load: nothing is decided
			// until the state loads again.
			logPassFailed(ctx, o, err)
			t.settings = settings
			return time.Time{}
		}
		t.reconcile(cfg, bo)
		settings, t.reload = settingsOf(cfg), false
	}
	picks := t.stat(ctx, dir, now, false)
	if ctx.Err() != nil {
		return time.Time{}
	}
	var r *acme.Report
	if len(picks) > 0 {
		if cfg == nil {
			cfg = t.mappingsOf(ctx, o.Store, settings, picks)
		}
		ids := make([]string, len(picks))
		for k, p := range picks {
			ids[k] = t.entries[p.i].id
		}
		r = pass(ctx, o, clk, acme.RenewOptions{Options: opts, Config: cfg, Only: ids, Seen: t.seen(picks)})
		t.decided(picks, r)
		if bo != nil && r != nil {
			bo.merge(ids, r.Backoffs)
		}
	}
	if bo != nil {
		bo.publish(ctx, o, clk.Now())
	}
	t.settings = settings
	clear(t.named)
	next := t.earliest()
	if r != nil {
		next = earliest(next, r.Next)
	}
	return next
}

// completePass decides every ACME mapping (see the top of the file).
func (t *tracker) completePass(ctx context.Context, o Options, opts acme.Options, clk Clock, bo *backoffs, dir string, local bool) time.Time {
	if testHook != nil {
		testHook("complete")
	}
	began := clk.Now()
	cfg, err := state.LoadConfig(ctx, o.Store)
	if err != nil {
		logPassFailed(ctx, o, err)
		return time.Time{}
	}
	t.reconcile(cfg, nil)
	ro := acme.RenewOptions{Options: opts, Config: cfg}
	var picks []pick
	if local {
		picks = t.stat(ctx, dir, began, true)
		ro.Seen = t.seen(picks)
	}
	r := pass(ctx, o, clk, ro)
	if r == nil {
		return time.Time{}
	}
	t.decided(picks, r)
	if bo != nil { // nil: a benchmark's pass, nothing published
		bo.set = r.Backoffs // every ACME mapping: the whole count
		bo.publish(ctx, o, clk.Now())
	}
	if ctx.Err() != nil {
		return time.Time{} // cut short: the next pass (if any) is complete
	}
	t.settings, t.completeAt = settingsOf(cfg), began
	t.complete, t.reload = false, false
	clear(t.named)
	return r.Next
}

// statRoot is the directory whose mappings' files the loop stats, and
// whether it can: the store is a local directory.
func statRoot(s state.Store) (string, bool) {
	if _, ok := s.(state.Local); !ok {
		return "", false
	}
	dir := state.Locate(s, mappings.PublicDir)
	return dir, filepath.IsAbs(dir)
}

// settingsOf is cfg without its mappings (nor what it keeps of the load,
// which holds every mapping's id).
func settingsOf(cfg *state.Config) *state.Config {
	return &state.Config{SchemaVersion: cfg.SchemaVersion, ACME: cfg.ACME, Listeners: cfg.Listeners, DNSCredentials: cfg.DNSCredentials}
}

// reconcile makes the entries cfg's ACME mappings: those kept keep what
// was decided of them, new ones are decided at the next look, and removed
// ones leave the back-off count.
func (t *tracker) reconcile(cfg *state.Config, bo *backoffs) {
	var ids []string
	for i := range cfg.Mappings {
		if cfg.Mappings[i].Source == state.SourceACME {
			ids = append(ids, cfg.Mappings[i].ID)
		}
	}
	if !slices.IsSorted(ids) {
		slices.Sort(ids)
	}
	old := t.entries
	out := make([]entry, 0, len(ids))
	j := 0
	drop := func(e entry) {
		if bo != nil {
			delete(bo.set, e.id)
		}
	}
	for _, id := range ids {
		for ; j < len(old) && old[j].id < id; j++ {
			drop(old[j])
		}
		if j < len(old) && old[j].id == id {
			out = append(out, old[j])
			j++
			continue
		}
		// Its own copy: the config's ids point into the records memo,
		// which the entry must not keep alive.
		out = append(out, entry{id: strings.Clone(id)})
	}
	for ; j < len(old); j++ {
		drop(old[j])
	}
	t.entries = out
}

// statChunk is how many entries a worker of stat takes at a time.
const statChunk = 256

// stat stats the files of every entry, at now, and returns those to
// decide again, in the order of the entries: all of them, or those whose
// files changed since the decision, that the feed named, or whose time
// came.
func (t *tracker) stat(ctx context.Context, dir string, now time.Time, all bool) []pick {
	sd := state.OpenStatDir(dir)
	defer sd.Close()
	at := now.UnixNano()
	// A file changed within the file system's time granularity of this
	// look may change again unseen: its identity is trusted from the
	// next look on (state.FileID.Racy). The kernel's clock, not the
	// loop's.
	wall := time.Now()
	// Every entry's pick in place (a complete pass: 13 MB at 100k), or
	// the few of each chunk.
	var every []pick
	if all {
		every = make([]pick, len(t.entries))
	}
	chunks := make([][]pick, (len(t.entries)+statChunk-1)/statChunk)
	parallel.Each(len(chunks), func(c int) bool {
		for i := c * statChunk; i < min(len(t.entries), (c+1)*statChunk); i++ {
			e := &t.entries[i]
			p := pick{i: i}
			for f, name := range trackedFiles {
				p.files[f], _ = sd.Stat(e.id + "/" + name)
				p.racy = p.racy || (p.files[f] != state.FileID{} && p.files[f].Racy(wall))
			}
			switch {
			case all:
				every[i] = p
			case e.files == 0 || e.next <= at || t.named[e.id] || t.sum(&p.files) != e.files:
				chunks[c] = append(chunks[c], p)
			}
		}
		return ctx.Err() == nil
	})
	if all {
		return every
	}
	return slices.Concat(chunks...)
}

// sum digests ids; never 0, which means none.
func (t *tracker) sum(ids *fileIDs) uint64 {
	var b [len(trackedFiles) * 40]byte
	for f, id := range ids {
		o := b[f*40:]
		binary.LittleEndian.PutUint64(o[0:], id.Dev)
		binary.LittleEndian.PutUint64(o[8:], id.Ino)
		binary.LittleEndian.PutUint64(o[16:], uint64(id.Size))
		binary.LittleEndian.PutUint64(o[24:], uint64(id.Mtime))
		binary.LittleEndian.PutUint64(o[32:], uint64(id.Ctime))
	}
	return max(maphash.Bytes(t.seed, b[:]), 1)
}

// find is the index of the entry of id.
func (t *tracker) find(id string) (int, bool) {
	return slices.BinarySearchFunc(t.entries, id, func(e entry, id string) int { return strings.Compare(e.id, id) })
}

// seen gives the decisions the identities picks took, so that they do
// not stat the files again.
func (t *tracker) seen(picks []pick) mappings.Seen {
	return func(id, file string) (state.FileID, bool) {
		i, ok := t.find(id)
		if !ok {
			return state.FileID{}, false
		}
		k := i // a complete pass picks every entry
		if len(picks) != len(t.entries) {
			k, ok = slices.BinarySearchFunc(picks, i, func(p pick, i int) int { return cmp.Compare(p.i, i) })
		}
		f := slices.Index(trackedFiles[:], file)
		if !ok || f < 0 {
			return state.FileID{}, false
		}
		fid := picks[k].files[f]
		return fid, fid != state.FileID{}
	}
}

// decided records what the run r (nil: it failed) decided of picks: the
// files it decided from (none when one had just changed: see stat), and
// when each mapping found not due may be due. The others are decided
// again at the next pass.
func (t *tracker) decided(picks []pick, r *acme.Report) {
	for _, p := range picks {
		e := &t.entries[p.i]
		e.files, e.next = 0, 0
		if r != nil && !p.racy {
			e.files = t.sum(&p.files)
		}
	}
	if r == nil {
		return
	}
	for _, w := range r.Waits { // a racy one keeps its time too: earliest
		if i, ok := t.find(w.ID); ok {
			t.entries[i].next = max(w.Next.UnixNano(), 1)
		}
	}
}

// earliest is the earliest time an entry runs out (zero: none).
func (t *tracker) earliest() time.Time {
	var at int64
	for _, e := range t.entries {
		if e.next != 0 && (at == 0 || e.next < at) {
			at = e.next
		}
	}
	if at == 0 {
		return time.Time{}
	}
	return time.Unix(0, at)
}

// mappingsOf is a config of settings and the records of picks, read and
// checked as a load would check them against the rest of the state (as
// serve's public listeners reload a changed record). A record that cannot
// be read or checked is not decided: the next pass loads the config, and
// reports it, or drops the mapping the feed will say was removed.
func (t *tracker) mappingsOf(ctx context.Context, s state.Store, settings *state.Config, picks []pick) *state.Config {
	cfg := *settings
	if settings.SchemaVersion != state.SchemaVersion {
		// A schema 1 state has no records; any change of its mappings
		// names p2ptls.toml, which makes a complete pass.
		full, err := state.LoadConfig(ctx, s)
		if err != nil {
			t.reload = true
			return &cfg
		}
		return full
	}
	for _, p := range picks {
		id := t.entries[p.i].id
		b, err := s.Read(ctx, state.RecordName(id))
		if err != nil {
			t.reload = true
			continue
		}
		m, err := state.ParseMapping(id, b)
		one := &state.Config{SchemaVersion: settings.SchemaVersion, ACME: settings.ACME,
			Listeners: slices.Clone(settings.Listeners), DNSCredentials: settings.DNSCredentials, Mappings: []state.Mapping{m}}
		if err != nil || one.Validate() != nil {
			t.reload = true
			continue
		}
		cfg.Mappings = append(cfg.Mappings, one.Mappings[0])
	}
	return &cfg
}
