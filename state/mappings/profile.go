package mappings

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
)

// ProfileOffer is what the issuing ACME server offers, read once per
// command before the state lock is taken (never over the network under
// the lock).
type ProfileOffer struct {
	// Directory is the ACME directory the names came from.
	Directory string
	// Names are the profiles it advertises, sorted; empty when it offers
	// none.
	Names []string
	// Descriptions are the server's words for each name.
	Descriptions map[string]string
	// Unchecked, when not empty, says why the offer could not be read (no
	// account yet, the server unreachable): profiles are then stored
	// unchecked, with a warning.
	Unchecked string
}

// ProfileSource reads the offer; AddChecked and ImportChecked call it at
// most once, and only when a mapping names a profile.
type ProfileSource func(ctx context.Context) ProfileOffer

// hintProfile is the way out of an unknown profile.
const hintProfile = "choose one of the profiles it offers, or leave the profile out for the CA's default"

// check returns the refusal of profile p (bad input), or nil.
func (o ProfileOffer) check(p string) error {
	if o.Unchecked != "" || slices.Contains(o.Names, p) {
		return nil
	}
	offers := "it offers none"
	if len(o.Names) > 0 {
		offers = "it offers " + strings.Join(o.Names, ", ")
	}
	return fault.Invalidf(hintProfile, "the ACME server at %s offers no profile %q; %s", o.Directory, p, offers)
}

// warning is what storing a profile unchecked says.
func (o ProfileOffer) warning(what string) string {
	return fmt.Sprintf("%s not checked against the ACME server (%s); an order fails if the server does not offer it", what, o.Unchecked)
}

// checksProfile reports whether m names a profile the ACME server must offer.
func checksProfile(m state.Mapping) bool {
	return m.Source == state.SourceACME && m.Profile != ""
}

// AddChecked is Add with an ACME mapping's profile checked against the
// offer src reads, before the lock: a profile the server does not
// advertise is bad input and nothing changes; one that cannot be checked
// is stored with a warning. A nil src checks nothing.
func AddChecked(ctx context.Context, s state.Store, in Input, now time.Time, src ProfileSource) (state.Mapping, []string, error) {
	var warnings []string
	if src != nil && checksProfile(in.Mapping) {
		o := src(ctx)
		if err := o.check(in.Mapping.Profile); err != nil {
			return in.Mapping, nil, err
		}
		if o.Unchecked != "" {
			warnings = append(warnings, o.warning(fmt.Sprintf("profile %q was", in.Mapping.Profile)))
		}
	}
	m, more, err := Add(ctx, s, in, now)
	if err != nil {
		return m, nil, err
	}
	return m, append(warnings, more...), nil
}

// ImportChecked is Import with the profiles of ACME mappings checked as
// AddChecked checks one, with a single read of the offer for all lines.
func ImportChecked(ctx context.Context, s state.Store, r io.Reader, name string, now time.Time, src ProfileSource) ([]Imported, []string, error) {
	return importRecords(ctx, s, newLineReader(r, name, MaxImportBytes, MaxImportLine), now, src)
}

// checkBatchProfiles checks the profiles of the prepared batch against one
// offer read from src; lines number the batch for messages. It returns a
// single warning when they could not be checked.
func checkBatchProfiles(ctx context.Context, batch []prepared, lines []int, src ProfileSource) ([]string, error) {
	if src == nil || !slices.ContainsFunc(batch, func(p prepared) bool { return checksProfile(p.m) }) {
		return nil, nil
	}
	o := src(ctx)
	n := 0
	for i, p := range batch {
		if !checksProfile(p.m) {
			continue
		}
		n++
		if err := o.check(p.m.Profile); err != nil {
			return nil, atLine(lines[i], err)
		}
	}
	if o.Unchecked == "" {
		return nil, nil
	}
	what := "the profile of 1 mapping was"
	if n > 1 {
		what = fmt.Sprintf("the profiles of %d mappings were", n)
	}
	return []string{o.warning(what)}, nil
}
