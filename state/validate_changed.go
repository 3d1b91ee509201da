package state

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// changedMax is how many changed mappings validateChanged takes on: each
// costs a pass over the hosts of all the others, so past it the full check
// is cheaper.
const changedMax = 256

// namesKey is what the mapping rules need of the rest of the config: the
// names of its listeners and DNS credentials.
func (c *Config) namesKey() string {
	names := make([]string, 0, len(c.Listeners)+len(c.DNSCredentials)+1)
	for _, l := range c.Listeners {
		names = append(names, l.Name)
	}
	slices.Sort(names)
	names = append(names, "")
	creds := make([]string, 0, len(c.DNSCredentials))
	for _, d := range c.DNSCredentials {
		creds = append(creds, d.Name)
	}
	slices.Sort(creds)
	return strings.Join(append(names, creds...), "\x00")
}

// mappingDiff is how the mappings of a config differ from the baseline
// they were loaded (or last saved) as, found by validateChanged for the
// change that follows (Config.change), so that a change of one mapping
// among 100k digests each of them once, not once per pass.
type mappingDiff struct {
	base *baseline
	// changed are the indexes in Mappings of the mappings added or
	// changed since base, in order; was[k] is the index in base.ids of
	// changed[k]'s id, -1 for an id new since.
	changed, was []int
	// kept[j] says that base.ids[j] is still a mapping; the others are
	// removed.
	kept []bool
}

// validateChanged checks the mappings of c against the rules as a full
// check would, but looks closely only at those that differ from the valid
// config c was loaded (or last saved) as: a mapping unchanged since, with
// the same listener and credential names, is as valid as it was. It
// reports nil whenever it cannot vouch for c, so that the full check
// runs and gives its exact error; a diff means the full check would pass.
// A change of one mapping among 100k then costs a digest of each and a
// pass over their hosts, not the rules of every one.
//
// The diff is what it found, for the change made from c right after (see
// Config.change): only the changed mappings were touched (their hosts
// normalised), so it still describes c then.
func (c *Config) validateChanged(v *mappingValidator) *mappingDiff {
	base := c.loaded
	if base == nil || !base.valid || base.sums == nil || base.names != c.namesKey() {
		return nil
	}
	used := make([]bool, len(base.ids))
	var changed, was []int
	var newIDs map[string]bool
	next := 0
	for i := range c.Mappings {
		m := &c.Mappings[i]
		j, found := base.findNext(m.ID, &next)
		if found {
			if used[j] {
				return nil // an id twice
			}
			used[j] = true
			if base.sums[j] == digest(m) {
				continue
			}
		} else {
			j = -1
			if newIDs[m.ID] {
				return nil
			}
			if newIDs == nil {
				newIDs = map[string]bool{}
			}
			newIDs[m.ID] = true
		}
		if len(changed) == changedMax {
			return nil
		}
		changed, was = append(changed, i), append(was, j)
	}
	for _, i := range changed {
		if v.check(&c.Mappings[i]) != nil {
			return nil
		}
	}
	// v.hosts holds the changed mappings' hosts, normalised; each
	// unchanged mapping's hosts were normalised when it was loaded.
	if len(changed) > 0 {
		rest := changed
		for i := range c.Mappings {
			if len(rest) > 0 && rest[0] == i {
				rest = rest[1:]
				continue
			}
			m := &c.Mappings[i]
			for _, h := range m.Hosts {
				if _, taken := v.hosts[ListenerHost{m.Listener, h}]; taken {
					return nil
				}
			}
		}
	}
	return &mappingDiff{base: base, changed: changed, was: was, kept: used}
}

// LoadChanged is LoadConfig of r, for a state r that differs from the one
// c was loaded from (by LoadConfig, and not changed since) only in the
// mapping records named (store names, each written or removed in r): it
// reads only those records and checks them against the others as a full
// load would (validateChanged), so that a change of one record among 100k
// costs that record and a pass over the others' hosts rather than a read
// of every record. The result and its errors are LoadConfig's. Where it
// cannot vouch (c not loaded from records, a name that is not a record,
// p2ptls.toml among them) it is LoadConfig(ctx, r).
//
// The result shares the unchanged mappings with c: neither may be used
// by another goroutine during the call.
func (c *Config) LoadChanged(ctx context.Context, r Reader, names []string) (*Config, error) {
	base := c.loaded
	if base == nil || !base.valid || base.sums == nil || base.version == schemaVersion1 || len(base.ids) != len(c.Mappings) {
		return LoadConfig(ctx, r)
	}
	changed := make(map[string]*Mapping, len(names)) // by id; nil: removed
	for _, name := range names {
		dir, file := path.Split(path.Clean(name))
		if dir != RecordsDir+"/" {
			return LoadConfig(ctx, r)
		}
		id, ok, idErr := recordID(file)
		if idErr == nil && !ok {
			continue // not a record: LoadConfig leaves it alone too
		}
		if idErr != nil {
			if _, err := r.Stat(ctx, name); errors.Is(err, fs.ErrNotExist) {
				continue // gone: it was never a record of c either
			}
			return nil, &ConfigFileError{Path: Locate(r, name), Err: idErr}
		}
		m, found, err := loadRecord(ctx, r, id)
		if err != nil {
			return nil, err
		}
		changed[id] = nil
		if found {
			changed[id] = &m
		}
	}
	next := &Config{SchemaVersion: c.SchemaVersion, ACME: c.ACME, Listeners: slices.Clone(c.Listeners),
		DNSCredentials: slices.Clone(c.DNSCredentials), loaded: base}
	next.Mappings = make([]Mapping, 0, len(c.Mappings)+len(changed))
	for i := range c.Mappings {
		m := &c.Mappings[i]
		if n, ok := changed[m.ID]; ok {
			delete(changed, m.ID)
			if n == nil {
				continue
			}
			m = n
		}
		next.Mappings = append(next.Mappings, *m)
	}
	added := false
	for _, m := range changed {
		if m != nil {
			next.Mappings, added = append(next.Mappings, *m), true
		}
	}
	if added {
		sortMappings(next.Mappings)
	}
	// Checked against the baseline c was loaded as: only what differs
	// from it is looked at closely.
	if err := next.validate(false); err != nil {
		return nil, recordError(ctx, r, next, err)
	}
	next.loaded = newBaseline(base.version, next)
	return next, nil
}
