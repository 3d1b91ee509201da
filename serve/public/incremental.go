package public

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/p2pstream/p2ptls/serve/sni"
	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// How serve applies a change of a few mappings (an add, a remove, a
// renewal) without reading the other 100k: the store names the files a
// change touched (state.Feed); a mapping's record and certificate files
// name its id; only those records are read again, validated against the
// listeners and credentials serve holds and against the hosts the other
// mappings own on their listener (the listener's index), and the
// listeners they are on get a new view: the old index copied with those
// hosts swapped. Everything else keeps its entry, parsed certificate
// included. A handshake keeps the view it loaded.

// affected returns the ids of the mappings that c's names belong to;
// full when c is Full or names something that decides more than one
// mapping (p2ptls.toml: listeners and settings; a whole directory).
func (s *Server) affected(c state.Changed) (ids []string, full bool) {
	if c.Full {
		return nil, true
	}
	if len(c.Names) == 0 {
		return nil, false
	}
	if s.cfg == nil || s.cfg.SchemaVersion != state.SchemaVersion {
		// A schema_version 1 state keeps every mapping in p2ptls.toml.
		return nil, true
	}
	seen := map[string]bool{}
	for _, n := range c.Names {
		id, kind := mappingOf(n)
		switch kind {
		case nameAll:
			return nil, true
		case nameMapping:
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	return ids, false
}

type nameKind int

const (
	nameOther   nameKind = iota // decides nothing served (runtime, other commands' files)
	nameMapping                 // a mapping's record or certificate files
	nameAll                     // reload everything
)

// mappingOf tells what a changed store name is to the public listeners.
func mappingOf(name string) (string, nameKind) {
	name = path.Clean(name)
	switch {
	case name == state.ConfigFile, name == state.RecordsDir, name == mappings.PublicDir, name == path.Dir(mappings.PublicDir):
		return "", nameAll
	case strings.HasPrefix(name, state.RecordsDir+"/"):
		base := name[len(state.RecordsDir)+1:]
		if !state.IsRecordFile(name) {
			return "", nameOther // an editor's leftover, as loading has it
		}
		id := strings.TrimSuffix(base, ".toml")
		if hostname.ValidateName("mapping id", id) != nil {
			return "", nameAll // the full load names the bad file
		}
		return id, nameMapping
	case strings.HasPrefix(name, mappings.PublicDir+"/"):
		id, _, _ := strings.Cut(name[len(mappings.PublicDir)+1:], "/")
		if hostname.ValidateName("mapping id", id) != nil {
			return "", nameOther
		}
		return id, nameMapping
	}
	return "", nameOther
}

// changedMapping is one mapping of an incremental reload.
type changedMapping struct {
	id  string
	old *entry         // what was served, nil for none
	m   *state.Mapping // the record now, nil when removed
	e   *entry         // what is served after
	err error          // the record does not apply: old stays
}

// applyChanged reloads the mappings ids (see the comment at the top).
func (s *Server) applyChanged(ctx context.Context, ids []string) {
	slices.Sort(ids)
	cs := make([]*changedMapping, 0, len(ids))
	for _, id := range ids {
		c := &changedMapping{id: id, old: s.byID.get(id)}
		c.m, c.err = s.readMapping(ctx, id)
		cs = append(cs, c)
	}
	// Many changes at once (an import) share slabs and string blocks as
	// a full load's entries do; a few get a slab of one entry each.
	var strs *strArena
	if len(ids) >= entrySlab {
		strs = new(strArena)
	}
	edits := map[string]*sni.Builder[*entry]{}
	edit := func(listener string) *sni.Builder[*entry] {
		if b, ok := edits[listener]; ok {
			return b
		}
		l, ok := s.listeners[listener]
		if !ok {
			return nil // not listening (see s.errors): nothing to serve
		}
		b := l.view.Load().index.Edit()
		edits[listener] = b
		return b
	}
	// Out first, then in, so that hosts moving between the changed
	// mappings are no conflict.
	for _, c := range cs {
		if c.err == nil && c.old != nil {
			if b := edit(c.old.listenerName()); b != nil {
				for h := range c.old.eachHost() {
					_ = b.Remove(h)
				}
			}
		}
	}
	for _, c := range cs {
		if c.err != nil || c.m == nil {
			continue
		}
		b := edit(c.m.Listener)
		if b == nil {
			continue
		}
		if err := claim(b, c.m); err != nil {
			c.err = &state.ConfigFileError{Path: state.Locate(s.o.Store, state.RecordName(c.id)), Err: err}
			continue
		}
		c.e = s.entryFor(ctx, c.m, c.old, strs)
		for h := range c.e.eachHost() {
			_ = b.Add(h, c.e) // claim checked every host
		}
	}
	// A record that does not apply keeps its mapping's previous state,
	// unless a changed mapping took one of its hosts meanwhile.
	for _, c := range cs {
		if c.err == nil || c.old == nil {
			continue
		}
		b := edit(c.old.listenerName())
		if b == nil {
			continue
		}
		restore := true
		for h := range c.old.eachHost() {
			if owner, ok := b.Get(h); ok && owner != c.old {
				restore = false
			}
		}
		if !restore {
			for h := range c.old.eachHost() {
				if owner, ok := b.Get(h); ok && owner == c.old {
					_ = b.Remove(h)
				}
			}
			c.err = fmt.Errorf("%w; its previous state is no longer served either, since another mapping now has one of its hosts", c.err)
			continue
		}
		for h := range c.old.eachHost() {
			if _, ok := b.Get(h); !ok {
				_ = b.Add(h, c.old)
			}
		}
		c.e = c.old
	}
	s.swapViews(edits, cs)
	for _, c := range cs {
		if c.err != nil {
			s.recErrs[c.id] = c.err.Error()
		} else {
			delete(s.recErrs, c.id)
		}
		if c.e != nil {
			s.byID.set(c.e)
		} else {
			s.byID.del(c.id)
		}
	}
	s.files = s.files[:0]
	for _, lc := range s.cfg.Listeners {
		if l, ok := s.listeners[lc.Name]; ok {
			s.files = append(s.files, l.view.Load().files...)
		}
	}
	if d := s.byID.dir; d != nil && d.stale() {
		s.renumber()
	}
}

// renumber moves the views and the by-id table to a new entryDir that
// numbers only the slabs of the entries served now (see entryDir.stale):
// each listener gets a new host index over the entries it has. A listener
// whose index cannot be rebuilt keeps its view, and the directory that
// view refers by: nothing requires one directory for all.
func (s *Server) renumber() {
	var a strArena
	dir := a.refs()
	for name, l := range s.listeners {
		v := l.view.Load()
		if nv, err := v.renumbered(dir); err != nil {
			s.o.Log.Error("cannot rebuild the host index; it keeps its previous one", "listener", name, "err", err)
		} else {
			l.view.Store(nv)
		}
	}
	old := s.byID
	s.byID.reset(old.len(), dir)
	old.each(s.byID.set)
}

// renumbered is v with a host index whose references are dir's.
func (v *view) renumbered(dir *entryDir) (*view, error) {
	b := sni.NewBuilderOn(v.index.Len(), (*entry).hosts, dir)
	entries := newEntryList(dir, v.entries.len())
	for _, e := range v.entries.all() {
		entries.add(e)
		for h := range e.eachHost() {
			if err := b.Add(h, e); err != nil {
				return nil, fmt.Errorf("mapping %q: %w", e.id(), err)
			}
		}
	}
	return &view{cfg: v.cfg, index: b.Build(), entries: entries, files: v.files}, nil
}

// claim checks that m's hosts are free on its listener, but for m's own.
func claim(b *sni.Builder[*entry], m *state.Mapping) error {
	for _, h := range m.Hosts {
		if owner, ok := b.Get(h); ok && owner.id() != m.ID {
			return fault.Invalidf("remove it from one of the mappings",
				"mapping %q: host %q is already mapped on listener %q by mapping %q", m.ID, h, m.Listener, owner.id())
		}
	}
	return nil
}

// swapViews gives every edited listener its new view: the index edited,
// the entries of the changed mappings replaced. The entries are copied
// (a memmove, not a hash per entry: 100k ids hashed cost 25 ms) and each
// changed one is found by its slot.
func (s *Server) swapViews(edits map[string]*sni.Builder[*entry], cs []*changedMapping) {
	for name, b := range edits {
		l := s.listeners[name]
		v := l.view.Load()
		nv := &view{cfg: v.cfg, index: b.Build(), entries: v.entries.clone()}
		var files map[string]bool
		for _, c := range cs {
			if c.old != nil && c.old.listenerName() == name {
				nv.entries.remove(c.old)
				if c.old.source == sourceFile {
					if files == nil {
						files = map[string]bool{}
					}
					files[c.id] = true
				}
			}
		}
		nv.files = slices.DeleteFunc(slices.Clone(v.files), func(e *entry) bool { return files[e.id()] })
		for _, c := range cs {
			if c.e == nil || c.e.listenerName() != name {
				continue
			}
			nv.entries.add(c.e)
			if c.e.source == sourceFile {
				nv.files = append(nv.files, c.e)
			}
		}
		l.view.Store(nv)
	}
}

// entryFor is the entry serving m: old when m and its files are as they
// were, a new one otherwise (read on first use, from strs, see newEntry),
// as a full reload has it.
func (s *Server) entryFor(ctx context.Context, m *state.Mapping, old *entry, strs *strArena) *entry {
	digest := mappingDigest(s.seed, m)
	switch {
	case old == nil || old.digest != digest:
		return newEntry(m, s.listenerName(m.Listener), digest, strs)
	case old.changed(ctx, s.o.Store):
		ne := newEntry(m, s.listenerName(m.Listener), digest, strs)
		if err := ne.load(s.o.Store); err != nil {
			s.o.Log.Warn("certificate changed but does not load; still serving the previous one", "mapping", m.ID, "err", err)
			s.loadErrs = append(s.loadErrs, err.Error())
			return old
		}
		return ne
	}
	return old
}

// listenerName is the name of the listener served as name, else name.
func (s *Server) listenerName(name string) string {
	for _, lc := range s.cfg.Listeners {
		if lc.Name == name {
			return lc.Name
		}
	}
	return name
}

// readMapping reads and validates mapping id's record against the
// listeners and credentials being served; nil when it was removed.
func (s *Server) readMapping(ctx context.Context, id string) (*state.Mapping, error) {
	name := state.RecordName(id)
	where := state.Locate(s.o.Store, name)
	b, err := s.o.Store.Read(ctx, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", where, err)
	}
	m, err := state.ParseMapping(id, b)
	if err != nil {
		return nil, &state.ConfigFileError{Path: where, Err: err}
	}
	// The rules of a full load, for this one mapping: the rest of the
	// config is what serve loaded, and already valid.
	cfg := &state.Config{SchemaVersion: s.cfg.SchemaVersion, ACME: s.cfg.ACME,
		Listeners: slices.Clone(s.cfg.Listeners), DNSCredentials: s.cfg.DNSCredentials, Mappings: []state.Mapping{m}}
	if err := cfg.Validate(); err != nil {
		var ee *state.EntryError
		if errors.As(err, &ee) {
			err = ee.Err
		}
		var fe *state.FieldError
		if errors.As(err, &fe) {
			err = fmt.Errorf("field %q: %w", fe.Field, err)
		}
		return nil, &state.ConfigFileError{Path: where, Err: err}
	}
	return &cfg.Mappings[0], nil
}
