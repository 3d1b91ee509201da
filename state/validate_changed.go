package state

import (
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
