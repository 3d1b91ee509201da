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

// validateChanged checks the mappings of c against the rules as a full
// check would, but looks closely only at those that differ from the valid
// config c was loaded (or last saved) as: a mapping unchanged since, with
// the same listener and credential names, is as valid as it was. It
// reports false whenever it cannot vouch for c, so that the full check
// runs and gives its exact error; true means the full check would pass.
// A change of one mapping among 100k then costs a digest of each and a
// pass over their hosts, not the rules of every one.
func (c *Config) validateChanged(v *mappingValidator) bool {
	base := c.loaded
	if base == nil || !base.valid || base.sums == nil || base.names != c.namesKey() {
		return false
	}
	used := make([]bool, len(base.ids))
	var changed []int
	var newIDs map[string]bool
	next := 0
	for i := range c.Mappings {
		m := &c.Mappings[i]
		if j, found := base.findNext(m.ID, &next); found {
			if used[j] {
				return false // an id twice
			}
			used[j] = true
			if base.sums[j] == digest(m) {
				continue
			}
		} else {
			if newIDs[m.ID] {
				return false
			}
			if newIDs == nil {
				newIDs = map[string]bool{}
			}
			newIDs[m.ID] = true
		}
		if len(changed) == changedMax {
			return false
		}
		changed = append(changed, i)
	}
	isChanged := make(map[int]bool, len(changed))
	for _, i := range changed {
		if v.check(&c.Mappings[i]) != nil {
			return false
		}
		isChanged[i] = true
	}
	if len(changed) == 0 {
		return true
	}
	// v.hosts holds the changed mappings' hosts, normalised; each
	// unchanged mapping's hosts were normalised when it was loaded.
	for i := range c.Mappings {
		if isChanged[i] {
			continue
		}
		m := &c.Mappings[i]
		for _, h := range m.Hosts {
			if _, taken := v.hosts[ListenerHost{m.Listener, h}]; taken {
				return false
			}
		}
	}
	return true
}
