package state

import "context"

// FindLeftoversListed is FindLeftoversIn with the names in MappingsDir
// (sorted) as a walk of the state directory has just read them, instead
// of listing that directory again: at 100k mappings it holds 100k names.
// Each candidate orphan is still stat'ed, as FindLeftoversIn does, so a
// directory removed since the walk is not reported.
func FindLeftoversListed(ctx context.Context, s Store, root string, temps []TempEntry, load func() (*Config, error), names []string) (Leftovers, error) {
	return findLeftoversIn(ctx, s, root, temps, load, func() ([]string, error) { return names, nil })
}
