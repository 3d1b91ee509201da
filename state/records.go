package state

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/parallel"
)

// recordExt ends the name of every mapping record.
const recordExt = ".toml"

// RecordName is the store name of mapping id's record, "mappings/<id>.toml".
func RecordName(id string) string { return RecordsDir + "/" + id + recordExt }

// recordID tells what a name listed in mappings/ is: a record (its id), a
// file to leave alone (an editor's swap or backup file, a temporary file of
// an atomic write), or an error for a ".toml" whose name is not an id,
// which would otherwise be a mapping silently left out.
func recordID(name string) (id string, ok bool, err error) {
	if strings.HasPrefix(name, ".") || !strings.HasSuffix(name, recordExt) {
		return "", false, nil // .x.toml.swp, .#x.toml, x.toml~, #x.toml#, x.toml.bak
	}
	id = strings.TrimSuffix(name, recordExt)
	if err := hostname.ValidateName("mapping id", id); err != nil {
		return "", false, fault.Invalidf("name the file after the mapping's id (ID.toml), or move it out of "+RecordsDir+"/",
			"the file name is not a mapping id: %v", err)
	}
	return id, true, nil
}

// ParseMapping decodes one record, the content of mappings/<id>.toml: the
// fields of a mapping, its id included, which must be the file's. The
// mapping is checked against the rest of the state by Config.Validate.
// Errors name the line and the field; they are all bad input.
func ParseMapping(id string, b []byte) (Mapping, error) {
	var m Mapping
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Mapping{}, decodeError(err)
	}
	switch {
	case m.ID == "":
		return Mapping{}, fault.Invalidf(fmt.Sprintf("add id = %q", id), `field "id" is missing: a record names its mapping`)
	case m.ID != id:
		return Mapping{}, fault.Invalidf(fmt.Sprintf("set id = %q, or rename the file to %s%s", id, m.ID, recordExt),
			"line %d, field \"id\": id %q is not the file's name %q", recordLine(b, "id"), m.ID, id)
	}
	return m, nil
}

// encodeRecord returns the content of m's record.
func encodeRecord(m *Mapping) ([]byte, error) {
	b, err := toml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", RecordName(m.ID), err)
	}
	return append([]byte(recordHeader), b...), nil
}

// recordLine finds the line (from 1) where a record sets field, 0 when it
// does not. A record is one table of keys: the first header ends it.
func recordLine(b []byte, field string) int {
	for i, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "[") {
			return 0
		}
		key, _, ok := strings.Cut(t, "=")
		if ok && strings.Trim(strings.TrimSpace(key), `"'`) == field {
			return i + 1
		}
	}
	return 0
}

// loadRecords reads every record into cfg.Mappings, in the order of their
// ids, and validates the whole config. A directory reads them through its
// memo (see recordsMemo; quick: the lock holder's way); any other store
// reads and decodes each, one worker per core (reading 100k small files,
// about two thirds system calls and one third decoding, is all the cost).
// trusted reports that the records came from the memo unchecked.
func loadRecords(ctx context.Context, s Reader, cfg *Config, quick bool) (trusted bool, err error) {
	d, local := s.(*Dir)
	var names string
	var gen uint64
	var sums []uint64
	var listing *memoListing
	if local {
		cfg.Mappings, sums, names, gen, listing, err = d.loadMappings(ctx, quick)
	} else {
		cfg.Mappings, _, err = readRecords(ctx, s, func(id string) (Mapping, bool, error) { return loadRecord(ctx, s, id) })
	}
	trusted = sums != nil
	if err == nil {
		if !slices.IsSortedFunc(cfg.Mappings, func(a, b Mapping) int { return strings.Compare(a.ID, b.ID) }) {
			sortMappings(cfg.Mappings)
			sums = nil
		}
		// Records the memo vouches for passed the rules with these
		// listener and credential names: only their hosts are put in
		// canonical form again, as the rules would.
		valid := false
		if trusted && names == cfg.namesKey() {
			var changed bool
			valid, changed = normalizeHosts(cfg.Mappings)
			if changed {
				sums = nil
			}
		}
		if err = cfg.validate(valid); err != nil {
			err = recordError(ctx, s, cfg, err)
		}
		cfg.sums = sums
	}
	if local {
		if ctx.Err() == nil {
			d.memoLoaded(gen, listing, err == nil, cfg.namesKey())
		} else { // a load cut short vouches for nothing
			d.memo(recordsMemo).setListingAt(gen, memoListing{})
		}
	}
	if err != nil {
		return false, err
	}
	return trusted, nil
}

// normalizeHosts puts every host of ms in canonical form; valid is false
// when one is not valid, changed true when one was not canonical.
func normalizeHosts(ms []Mapping) (valid, changed bool) {
	for i := range ms {
		for j, h := range ms[i].Hosts {
			n, err := hostname.Normalize(h)
			if err != nil {
				return false, changed
			}
			if n != h {
				ms[i].Hosts[j], changed = n, true
			}
		}
	}
	return true, changed
}

// readRecords lists the records of s and loads each with load, which
// reports a record removed since it was listed as not found; complete is
// false when one was.
func readRecords(ctx context.Context, s Reader, load func(id string) (Mapping, bool, error)) (_ []Mapping, complete bool, err error) {
	names, err := s.List(ctx, RecordsDir)
	if err != nil {
		return nil, false, fmt.Errorf("list %s: %w", RecordsDir, err)
	}
	var ids []string
	for _, n := range names {
		id, ok, err := recordID(n)
		if err != nil {
			return nil, false, &ConfigFileError{Path: Locate(s, path.Join(RecordsDir, n)), Err: err}
		}
		if ok {
			ids = append(ids, id)
		}
	}
	ms := make([]Mapping, len(ids), len(ids)+appendRoom)
	found := make([]bool, len(ids))
	errs := make([]error, len(ids))
	// Work is handed out in order, so once it has stopped the first
	// failing record is the same in every run.
	parallel.Each(len(ids), func(i int) bool {
		ms[i], found[i], errs[i] = load(ids[i])
		return errs[i] == nil
	})
	if i := slices.IndexFunc(errs, func(e error) bool { return e != nil }); i >= 0 {
		return nil, false, errs[i]
	}
	if !slices.Contains(found, false) {
		return ms, true, nil
	}
	return slices.DeleteFunc(ms, func(m Mapping) bool { return m.ID == "" }), false, nil
}

// loadRecord reads and decodes the record of id. A record removed since
// it was listed (a change made while reading without the lock) is not
// found, not an error.
func loadRecord(ctx context.Context, s Reader, id string) (Mapping, bool, error) {
	name := RecordName(id)
	b, err := s.Read(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return Mapping{}, false, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return Mapping{}, false, err
		}
		return Mapping{}, false, fmt.Errorf("read %s: %w", name, err)
	}
	m, err := ParseMapping(id, b)
	if err != nil {
		return Mapping{}, false, &ConfigFileError{Path: Locate(s, name), Err: err}
	}
	return m, true, nil
}

// recordError names the file, line and field of a validation error: the
// record of the mapping it is about, else p2ptls.toml.
func recordError(ctx context.Context, s Reader, cfg *Config, err error) error {
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Table != "mappings" || ee.Index >= len(cfg.Mappings) {
		b, _ := s.Read(ctx, ConfigFile)
		return &ConfigFileError{Path: Locate(s, ConfigFile), Err: fault.AsInvalid(locateEntry(b, err), hintFixFile)}
	}
	name := RecordName(cfg.Mappings[ee.Index].ID)
	var fe *FieldError
	if errors.As(ee.Err, &fe) {
		b, _ := s.Read(ctx, name)
		if line := recordLine(b, fe.Field); line > 0 {
			err = fmt.Errorf("line %d, field %q: %w", line, fe.Field, ee.Err)
		} else {
			err = fmt.Errorf("field %q (not set): %w", fe.Field, ee.Err)
		}
	} else {
		err = ee.Err
	}
	return &ConfigFileError{Path: Locate(s, name), Err: fault.AsInvalid(err, hintFixFile)}
}

// sortMappings puts ms in the order of their ids.
func sortMappings(ms []Mapping) {
	slices.SortFunc(ms, func(a, b Mapping) int { return strings.Compare(a.ID, b.ID) })
}

// baseline is what a config was loaded from: what a save compares with to
// write only what changed. It holds a digest per mapping rather than a
// copy, so that a reader that never saves (serve) keeps little for it.
type baseline struct {
	// version is the schema of the state read: 0 when it had no
	// p2ptls.toml, 1 (every save migrates it) or 2.
	version int
	// top is p2ptls.toml as this config would encode it; nil when
	// unknown, so that it is written.
	top []byte
	// ids are the ids of the state's records, sorted; sums[i] is the
	// digest of mapping ids[i] as loaded. sums is nil when the contents
	// are unknown: every mapping is written again.
	ids  []string
	sums []uint64
	// trusted: the records came from the memo without a look at their
	// files (see recordsMemo), so a change checks the ones it replaces.
	trusted bool
	// valid: the config validated as it is described here, with the
	// listener and credential names of names (see validateChanged).
	valid bool
	names string
}

// newBaseline remembers cfg, just loaded from (or saved to) a state of
// schema version, and validated.
func newBaseline(version int, cfg *Config) *baseline {
	b := &baseline{version: version, ids: make([]string, len(cfg.Mappings)), sums: make([]uint64, len(cfg.Mappings)), valid: true, names: cfg.namesKey()}
	b.top, _ = encodeConfig(cfg)
	sorted := slices.IsSortedFunc(cfg.Mappings, func(x, y Mapping) int { return strings.Compare(x.ID, y.ID) })
	known := len(cfg.sums) == len(cfg.Mappings)
	for i := range cfg.Mappings {
		b.ids[i] = cfg.Mappings[i].ID
		if known {
			b.sums[i] = cfg.sums[i]
		} else {
			b.sums[i] = digest(&cfg.Mappings[i])
		}
	}
	cfg.sums = nil
	if !sorted {
		order := make([]int, len(b.ids))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(x, y int) int { return strings.Compare(b.ids[x], b.ids[y]) })
		ids, sums := make([]string, len(order)), make([]uint64, len(order))
		for i, j := range order {
			ids[i], sums[i] = b.ids[j], b.sums[j]
		}
		b.ids, b.sums = ids, sums
	}
	return b
}

// find returns the index of id in b.ids.
func (b *baseline) find(id string) (int, bool) { return slices.BinarySearch(b.ids, id) }

// findNext is find for a walk over mappings that are mostly in the order of
// their ids, as loaded: it tries the entry after the last one found first.
func (b *baseline) findNext(id string, next *int) (int, bool) {
	j, ok := *next, *next < len(b.ids) && b.ids[*next] == id
	if !ok {
		j, ok = b.find(id)
	}
	if ok {
		*next = j + 1
	}
	return j, ok
}

// digestSeed is random per process: digests are compared in memory only,
// and nobody can make two mappings collide without knowing it.
var digestSeed = maphash.MakeSeed()

// digest sums every field of m, as the memo encodes them (each string
// with its length, so that no two different mappings give the same bytes).
func digest(m *Mapping) uint64 {
	var buf [256]byte
	return maphash.Bytes(digestSeed, appendMappingMemo(buf[:0], m))
}

// probeBaseline describes what s holds for a config that was not loaded
// from it: the schema of its p2ptls.toml and the ids of its records, whose
// contents are not read (every mapping is written).
func probeBaseline(ctx context.Context, s Store) (*baseline, error) {
	b := &baseline{}
	raw, err := s.Read(ctx, ConfigFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b.version = 0
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", ConfigFile, err)
	default:
		var head struct {
			SchemaVersion int `toml:"schema_version"`
		}
		// A file that does not say schema_version 1 is replaced as it is,
		// as before records: only a version 1 file is kept as a backup.
		_ = toml.Unmarshal(raw, &head)
		b.version = SchemaVersion
		if head.SchemaVersion == schemaVersion1 {
			b.version = schemaVersion1
			return b, nil
		}
	}
	names, err := s.List(ctx, RecordsDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", RecordsDir, err)
	}
	for _, n := range names {
		if id, ok, _ := recordID(n); ok {
			b.ids = append(b.ids, id)
		}
	}
	slices.Sort(b.ids)
	return b, nil
}

// bulkChange is how many records a save changes before it rebuilds its
// baseline rather than updating it in place (each in-place insert moves
// the rest of the sorted ids).
const bulkChange = 64

// change validates c and returns the change that saves it: what differs
// from what it was loaded with, or the migration of a schema_version 1
// state. saved, called once the change is made, makes the change c's new
// baseline.
func (c *Config) change(ctx context.Context, s Store, now time.Time) (_ Change, saved func(), err error) {
	return c.changeWith(ctx, s, now, true)
}

// changeWith is change; useDiff false compares every mapping with the
// baseline again, as a reference for the tests.
func (c *Config) changeWith(ctx context.Context, s Store, now time.Time, useDiff bool) (_ Change, saved func(), err error) {
	// What the check found changed, when it could tell, so that each
	// mapping is not digested again below.
	diff, err := c.validateDiff(false)
	if err != nil {
		return Change{}, nil, err
	}
	if !useDiff {
		diff = nil
	}
	base := c.loaded
	if base == nil {
		if base, err = probeBaseline(ctx, s); err != nil {
			return Change{}, nil, err
		}
	}
	top, err := encodeConfig(c)
	if err != nil {
		return Change{}, nil, err
	}
	var ch Change
	migrating := base.version == schemaVersion1
	if migrating {
		if ch, err = migration(ctx, s, now); err != nil {
			return Change{}, nil, err
		}
		base = &baseline{}
	}
	// Where a store's Apply is not atomic, the order of the writes is what
	// a reader may see half of. p2ptls.toml comes first, so that a record
	// never names a listener or credential not written yet; but last when
	// migrating, so that until it is written a reader sees the version 1
	// file, which ignores mappings/, and after it every record.
	topChanged := base.version != SchemaVersion || !bytes.Equal(top, base.top)
	writeTop := FileWrite{Name: ConfigFile, Data: top, Perm: SecretMode}
	if topChanged && !migrating {
		ch.Writes = append(ch.Writes, writeTop)
	}
	type written struct {
		id  string
		sum uint64
	}
	var changed []written
	write := func(m *Mapping, sum uint64) error {
		b, err := encodeRecord(m)
		if err != nil {
			return err
		}
		ch.Writes = append(ch.Writes, FileWrite{Name: RecordName(m.ID), Data: b, Perm: SecretMode})
		changed = append(changed, written{m.ID, sum})
		return nil
	}
	var removed []string
	diffed := diff != nil && diff.base == base && base.sums != nil
	if diffed {
		for k, i := range diff.changed {
			// A host spelt otherwise may be the same once normalised.
			sum := digest(&c.Mappings[i])
			if j := diff.was[k]; j >= 0 && base.sums[j] == sum {
				continue
			}
			if err := write(&c.Mappings[i], sum); err != nil {
				return Change{}, nil, err
			}
		}
		for j, id := range base.ids {
			if !diff.kept[j] {
				removed = append(removed, id)
				ch.Deletes = append(ch.Deletes, RecordName(id))
			}
		}
	} else {
		next := 0
		for i := range c.Mappings {
			m := &c.Mappings[i]
			sum := digest(m)
			if j, ok := base.findNext(m.ID, &next); ok && base.sums != nil && base.sums[j] == sum {
				continue
			}
			if err := write(m, sum); err != nil {
				return Change{}, nil, err
			}
		}
	}
	if len(base.ids) > 0 && !diffed {
		ids := make(map[string]bool, len(c.Mappings))
		for i := range c.Mappings {
			ids[c.Mappings[i].ID] = true
		}
		for _, id := range base.ids {
			if !ids[id] {
				removed = append(removed, id)
				ch.Deletes = append(ch.Deletes, RecordName(id))
			}
		}
	}
	if topChanged && migrating {
		ch.Writes = append(ch.Writes, writeTop)
	}
	saved = func() {
		c.SchemaVersion = SchemaVersion
		if base.sums == nil || c.loaded != base || len(changed)+len(removed) > bulkChange {
			c.loaded = newBaseline(SchemaVersion, c)
			return
		}
		// The common case, a few mappings added or removed among many,
		// updates the baseline in place rather than summing all of it.
		base.version, base.top, base.valid, base.names = SchemaVersion, top, true, c.namesKey()
		for _, id := range removed {
			if j, ok := base.find(id); ok {
				base.ids, base.sums = slices.Delete(base.ids, j, j+1), slices.Delete(base.sums, j, j+1)
			}
		}
		for _, w := range changed {
			if j, ok := base.find(w.id); ok {
				base.sums[j] = w.sum
			} else {
				base.ids, base.sums = slices.Insert(base.ids, j, w.id), slices.Insert(base.sums, j, w.sum)
			}
		}
	}
	return ch, saved, nil
}

// LoadConfigLoose reads the desired state without validating it, so that
// doctor can still say which mapping is wrong in a state that does not
// load: p2ptls.toml decoded leniently and, in schema_version 2, every
// record that decodes. ok is false when p2ptls.toml cannot be decoded.
func LoadConfigLoose(ctx context.Context, s Reader) (_ *Config, ok bool) {
	b, err := s.Read(ctx, ConfigFile)
	var cfg Config
	if err != nil || toml.Unmarshal(b, &cfg) != nil || !knownSchema(cfg.SchemaVersion) {
		return nil, false
	}
	if cfg.SchemaVersion == schemaVersion1 {
		return &cfg, true
	}
	cfg.Mappings = nil
	names, _ := s.List(ctx, RecordsDir)
	for _, n := range names {
		id, isRecord, _ := recordID(n)
		if !isRecord {
			continue
		}
		var m Mapping
		if b, err := s.Read(ctx, RecordName(id)); err == nil && toml.Unmarshal(b, &m) == nil && m.ID == id {
			cfg.Mappings = append(cfg.Mappings, m)
		}
	}
	sortMappings(cfg.Mappings)
	return &cfg, true
}

// IsRecordFile reports whether LoadConfig takes the store name for a
// mapping record, to read it or to refuse it: a ".toml" in mappings/ that
// is not hidden. A backup keeps these to check the state it holds.
func IsRecordFile(name string) bool {
	dir, base := path.Split(name)
	if dir != RecordsDir+"/" {
		return false
	}
	_, ok, err := recordID(base)
	return ok || err != nil
}

// ParseState loads a desired state from its files, by store name
// (p2ptls.toml and the records, as a backup holds them), as LoadConfig
// loads it from a store; errors are *ConfigFileError naming the file.
func ParseState(files map[string][]byte) (*Config, error) {
	// In memory: there is nothing to wait for that a context could stop.
	return LoadConfig(context.Background(), fileSet(files))
}

// fileSet is a Reader of files in memory.
type fileSet map[string][]byte

func (f fileSet) Read(_ context.Context, name string) ([]byte, error) {
	if b, ok := f[name]; ok {
		return slices.Clone(b), nil
	}
	return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
}

func (f fileSet) Stat(_ context.Context, name string) (fs.FileInfo, error) {
	if b, ok := f[name]; ok {
		return stagedInfo{FileWrite{Name: name, Data: b, Perm: SecretMode}}, nil
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

func (f fileSet) List(_ context.Context, dir string) ([]string, error) {
	seen := map[string]bool{}
	for name := range f {
		if rest, ok := strings.CutPrefix(name, dir+"/"); ok {
			first, _, _ := strings.Cut(rest, "/")
			seen[first] = true
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}
