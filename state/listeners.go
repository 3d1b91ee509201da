package state

import (
	"context"
	"fmt"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// Fallback behaviours of an HTTPS listener when no mapping matches the SNI.
const (
	FallbackSelfSigned = "self-signed"
	FallbackReject     = "reject"
)

// Listener is one public HTTPS listener (and its optional HTTP listener).
type Listener struct {
	Name     string `toml:"name" json:"name"`
	Addr     string `toml:"addr" json:"addr"`
	HTTPAddr string `toml:"http_addr,omitempty" json:"http_addr"`
	Fallback string `toml:"fallback" json:"fallback"`
	Upstream string `toml:"upstream,omitempty" json:"upstream"`
}

// normalize validates l on its own and puts it in canonical form (lower-case
// hosts, the default fallback). Errors are bad input.
func (l *Listener) normalize() error {
	if err := hostname.ValidateName("listener", l.Name); err != nil {
		return fault.AsInvalid(err, "")
	}
	addr, err := hostname.ValidateListenAddr(l.Addr)
	if err != nil {
		return fault.AsInvalid(fmt.Errorf("listener %q: address: %w", l.Name, err), "give HOST:PORT, e.g. :443 or 127.0.0.1:8443")
	}
	l.Addr = addr
	if l.HTTPAddr != "" {
		if l.HTTPAddr, err = hostname.ValidateListenAddr(l.HTTPAddr); err != nil {
			return fault.AsInvalid(fmt.Errorf("listener %q: HTTP address: %w", l.Name, err), "give HOST:PORT, e.g. :80")
		}
		if hostname.Conflicts(l.Addr, l.HTTPAddr) {
			return fault.Invalidf("give the HTTP listener its own port, e.g. :80",
				"listener %q: HTTP address %s collides with its HTTPS address %s", l.Name, l.HTTPAddr, l.Addr)
		}
	}
	switch l.Fallback {
	case "":
		l.Fallback = FallbackSelfSigned
	case FallbackSelfSigned, FallbackReject:
	default:
		return fault.Invalidf(`use "self-signed" or "reject"`, "listener %q: unknown fallback %q", l.Name, l.Fallback)
	}
	if l.Upstream != "" {
		if err := validateUpstream(l.Upstream); err != nil {
			return fault.AsInvalid(fmt.Errorf("listener %q: %w", l.Name, err), "") // validateUpstream's hint
		}
	}
	return nil
}

// Mapping returns the mapping with id: the one lookup the CLI, the API and
// serve use.
func (c *Config) Mapping(id string) (*Mapping, bool) {
	for i := range c.Mappings {
		if c.Mappings[i].ID == id {
			return &c.Mappings[i], true
		}
	}
	return nil, false
}

// Listener returns the listener called name.
func (c *Config) Listener(name string) (*Listener, bool) {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i], true
		}
	}
	return nil, false
}

// AddListener validates l against the whole config and appends it.
func (c *Config) AddListener(l Listener) (Listener, error) {
	if err := l.normalize(); err != nil {
		return l, err
	}
	if _, ok := c.Listener(l.Name); ok {
		return l, fault.Failf(fmt.Sprintf("choose another name, or remove it first with 'p2ptls listener remove %s'", l.Name),
			"listener %q already exists", l.Name)
	}
	if err := c.checkAddrConflicts(l); err != nil {
		return l, err
	}
	c.Listeners = append(c.Listeners, l)
	return l, nil
}

// RemoveListener removes the listener called name; it refuses while
// mappings still belong to it, since they would be left serving nowhere.
func (c *Config) RemoveListener(name string) (Listener, error) {
	for i, l := range c.Listeners {
		if l.Name != name {
			continue
		}
		var used []string
		for _, m := range c.Mappings {
			if m.Listener == name {
				used = append(used, m.ID)
			}
		}
		if len(used) > 0 {
			return l, fault.Failf(fmt.Sprintf("remove its mappings first ('p2ptls mapping list --listener %s')", name),
				"listener %q still has %d mapping(s): %v", name, len(used), used)
		}
		c.Listeners = append(c.Listeners[:i], c.Listeners[i+1:]...)
		return l, nil
	}
	return Listener{}, notFound("listener", name, "p2ptls listener list")
}

// notFound is the error for a name that names nothing.
func notFound(kind, name, listCmd string) error {
	return fault.NotFoundf(fmt.Sprintf("see '%s' for the existing ones", listCmd), "%s %q does not exist", kind, name)
}

// FindListener returns the listener called name or a not-found error.
func (c *Config) FindListener(name string) (Listener, error) {
	return FindListenerIn(c.Listeners, name)
}

// checkAddrConflicts refuses a listener whose addresses would collide with
// another listener's on bind.
func (c *Config) checkAddrConflicts(l Listener) error {
	mine := []string{l.Addr}
	if l.HTTPAddr != "" {
		mine = append(mine, l.HTTPAddr)
	}
	for _, o := range c.Listeners {
		if o.Name == l.Name {
			continue
		}
		theirs := []string{o.Addr}
		if o.HTTPAddr != "" {
			theirs = append(theirs, o.HTTPAddr)
		}
		for _, a := range mine {
			for _, b := range theirs {
				if hostname.Conflicts(a, b) {
					return fault.Invalidf("give each listener its own port",
						"listener %q: address %s collides with listener %q (%s)", l.Name, a, o.Name, b)
				}
			}
		}
	}
	return nil
}

// AddListener adds l to the state under the lock and returns it as saved.
func AddListener(ctx context.Context, s Store, l Listener) (Listener, error) {
	// Validate on its own first: bad input never waits for the lock.
	if err := l.normalize(); err != nil {
		return l, err
	}
	err := Update(ctx, s, "listener add "+l.Name, func(tx *Tx) error {
		var err error
		l, err = tx.Config.AddListener(l)
		return err
	})
	return l, err
}

// RemoveListener removes the listener called name under the lock.
func RemoveListener(ctx context.Context, s Store, name string) (Listener, error) {
	var removed Listener
	err := Update(ctx, s, "listener remove "+name, func(tx *Tx) error {
		var err error
		removed, err = tx.Config.RemoveListener(name)
		return err
	})
	return removed, err
}
