package snapshot

import "time"

// Health is what status, doctor and the metrics say of the store and its
// copy.
type Health struct {
	// Connected is whether the primary answers; while it does not, reads
	// are answered from the copy and changes are refused.
	Connected bool `json:"connected"`
	// Since is when Connected last changed (when the Store was opened, if
	// it never did).
	Since time.Time `json:"since"`
	// Error is one line: why the primary is unreachable, or, while it is
	// connected, why the copy could not be brought up to date ("" when
	// neither).
	Error string `json:"error,omitempty"`
	// SnapshotAt is when the copy was last brought up to date (zero while
	// there is none); SnapshotRevision is the primary's revision it holds.
	SnapshotAt       time.Time `json:"snapshot_at,omitzero"`
	SnapshotRevision string    `json:"snapshot_revision,omitempty"`
	// Current is whether the copy holds what the primary holds, as far as
	// the primary's feed has told: connected, and nothing left to copy.
	Current bool `json:"current"`
}

// Age is how far the copy may be behind the primary at now: zero while it
// is current, else the time since it was last brought up to date (after a
// restart while the primary is away, since the last update before it).
func (h Health) Age(now time.Time) time.Duration {
	if h.Current || h.SnapshotAt.IsZero() {
		return 0
	}
	return max(now.Sub(h.SnapshotAt), 0)
}

// Health reports the store and its copy now.
func (s *Store) Health() Health {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := Health{Connected: s.up, Since: s.since, SnapshotRevision: s.mark.Revision,
		Current: s.up && s.inSync && s.syncErr == ""}
	if s.have || s.mark.Revision != "" {
		h.SnapshotAt = s.syncAt
	}
	if s.up {
		h.Error = s.syncErr
	} else {
		h.Error = oneLine(s.lastErr)
	}
	return h
}
