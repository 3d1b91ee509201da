package mappings

import (
	"context"
	"time"

	"github.com/p2pstream/p2ptls/state"
)

// StatusCounts is how many mappings have each status; every status is a
// field, so that JSON always has every key, zeros included.
type StatusCounts struct {
	Valid    int `json:"valid"`
	Expiring int `json:"expiring"`
	Expired  int `json:"expired"`
	Pending  int `json:"pending"`
	Failed   int `json:"failed"`
	Missing  int `json:"missing"`
}

// add counts one mapping of status, one of Statuses.
func (c *StatusCounts) add(status string) {
	switch status {
	case StatusValid:
		c.Valid++
	case StatusExpiring:
		c.Expiring++
	case StatusExpired:
		c.Expired++
	case StatusPending:
		c.Pending++
	case StatusFailed:
		c.Failed++
	case StatusMissing:
		c.Missing++
	}
}

// ListenerCounts are the counts of one listener's mappings.
type ListenerCounts struct {
	Name   string       `json:"name"`
	Total  int          `json:"total"`
	Status StatusCounts `json:"status"`
}

// Counts are how many mappings there are, per status and per listener:
// GET /api/v1/mapping-counts, the figures at the top of the UI's TLS page.
type Counts struct {
	Total     int              `json:"total"`
	Status    StatusCounts     `json:"status"`
	Listeners []ListenerCounts `json:"listeners"` // in config order, those without mappings too
}

// Count counts the mappings of cfg, or of one listener when listener is
// not empty, by the status List gives them. It walks them with Each, so
// that 100k mappings are counted without holding 100k Infos.
func Count(ctx context.Context, s state.Store, cfg *state.Config, listener string, now time.Time) (Counts, error) {
	c := Counts{Listeners: []ListenerCounts{}} // [] in JSON, not null, for a state without listeners
	at := map[string]int{}                     // listener name: its index in c.Listeners
	for _, l := range cfg.Listeners {
		if listener == "" || l.Name == listener {
			at[l.Name] = len(c.Listeners)
			c.Listeners = append(c.Listeners, ListenerCounts{Name: l.Name})
		}
	}
	err := Each(ctx, s, cfg, listener, now, func(info Info) error {
		c.Total++
		c.Status.add(info.Status)
		// Validation holds every mapping to an existing listener.
		l := &c.Listeners[at[info.Listener]]
		l.Total++
		l.Status.add(info.Status)
		return nil
	})
	if err != nil {
		return Counts{}, err
	}
	return c, nil
}
