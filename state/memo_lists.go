package state

// Prune is Retain for a caller that prunes on every run ("mapping list"
// keeps only the entries of the mappings it listed): the memo is marked
// changed, and written at the next save, only when an entry is dropped.
func (m *Memo) Prune(keep func(name string) bool) {
	m.mu.Lock()
	drop := false
	for _, e := range m.entries {
		if !keep(e.name) && (m.drop == nil || !m.drop(e.name)) {
			drop = true
			break
		}
	}
	for name, e := range m.puts {
		if drop {
			break
		}
		drop = e.val != nil && !keep(name)
	}
	m.mu.Unlock()
	if drop {
		m.Retain(keep)
	}
}
