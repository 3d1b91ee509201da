package mappings

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
)

// Changes are what "mapping set" and PATCH /api/v1/mappings/{id} change of
// a mapping in place; a nil field is left as it is. Hosts replace the
// mapping's hosts as a whole. An empty string clears Upstream, Profile and
// DNSCredential; an empty KeyType is the default, ec256.
type Changes struct {
	Upstream      *string
	Hosts         []string
	Challenge     *string
	DNSCredential *string
	Profile       *string
	KeyType       *string
}

// empty reports whether c changes nothing.
func (c Changes) empty() bool {
	return c.Upstream == nil && c.Hosts == nil && c.Challenge == nil && c.DNSCredential == nil && c.Profile == nil && c.KeyType == nil
}

// acmeFields names the ACME settings c changes, in the words of fields.
func (c Changes) acmeFields(fields Fields) []string {
	var out []string
	for _, f := range []struct {
		set  bool
		name string
	}{{c.Challenge != nil, fields.Challenge}, {c.DNSCredential != nil, fields.DNSCredential}, {c.Profile != nil, fields.Profile}, {c.KeyType != nil, fields.KeyType}} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

// Fields name the settings of Changes in the caller's words: flags on the
// command line (CLIFields), JSON fields in the API (APIFields), so that a
// refusal names what its reader typed.
type Fields struct {
	Hosts, Challenge, DNSCredential, Profile, KeyType string
	// Nothing is the hint of a Set with nothing to change.
	Nothing string
	// List is where the existing mappings are listed.
	List string
}

// CLIFields and APIFields are the two vocabularies of Fields.
var (
	CLIFields = Fields{Hosts: "--host", Challenge: "--challenge", DNSCredential: "--dns-credential", Profile: "--profile", KeyType: "--key-type",
		Nothing: "give at least one of --upstream, --host, --challenge, --dns-credential, --profile or --key-type",
		List:    "see 'p2ptls mapping list' for the existing ones"}
	APIFields = Fields{Hosts: `"hosts"`, Challenge: `"challenge"`, DNSCredential: `"dns_credential"`, Profile: `"profile"`, KeyType: `"key_type"`,
		Nothing: `send at least one of "upstream", "hosts", "challenge", "dns_credential", "profile" or "key_type"`,
		List:    "GET /api/v1/mappings lists the existing ones"}
)

// Set changes mapping id in place and returns it as saved, with warnings
// to show (a disabled DNS credential, an IP a public CA cannot reach, a
// profile that could not be checked). It goes through the same rules as
// Add, under the lock, in one change: a host mapped by another mapping on
// the listener, a wildcard without DNS-01, DNS-01 without a credential, an
// IP host with DNS-01, a profile the ACME server does not offer (checked
// with src before the lock, as AddChecked does) are bad input, and so are
// ACME settings for a mapping of another source and new hosts that an
// uploaded or file certificate does not cover. A missing mapping is
// fault.NotFound. Refused, nothing changes.
//
// What follows a change (decided here, documented in the README):
//   - upstream alone: nothing else; the certificate is untouched.
//   - self-signed, new hosts: a new key and certificate for them, valid
//     from now for the mapping's days, in the same change.
//   - ACME, new hosts or any ACME setting: the mapping is due for a new
//     order (Meta.Reissue, a back-off is forgotten). The current certificate
//     keeps serving until the new one lands while it covers at least one of
//     the new hosts; one that covers none of them is removed, so the mapping
//     is pending and serve orders at once.
func Set(ctx context.Context, s state.Store, id string, c Changes, now time.Time, src ProfileSource, fields Fields) (state.Mapping, []string, error) {
	if c.empty() {
		return state.Mapping{}, nil, fault.Invalidf(fields.Nothing, "nothing to change in mapping %q", id)
	}
	if c.Hosts != nil {
		if len(c.Hosts) == 0 {
			return state.Mapping{}, nil, fault.Invalidf("give the mapping's new hosts with "+fields.Hosts, "a mapping needs at least one host")
		}
		hosts := make([]string, len(c.Hosts))
		for i, h := range c.Hosts {
			n, err := hostname.Normalize(h)
			if err != nil {
				return state.Mapping{}, nil, fault.AsInvalid(err, "give each host as a DNS name or an IP address, e.g. shop.example.com, *.example.com or 192.0.2.1")
			}
			hosts[i] = n
		}
		c.Hosts = hosts
	}
	if c.KeyType != nil && *c.KeyType == "" {
		def := DefaultKeyType
		c.KeyType = &def
	}
	var warnings []string
	if src != nil && c.Profile != nil && *c.Profile != "" {
		// Read before the lock, never over the network under it.
		o := src(ctx)
		if err := o.check(*c.Profile); err != nil {
			return state.Mapping{}, nil, err
		}
		if o.Unchecked != "" {
			warnings = append(warnings, o.warning(fmt.Sprintf("profile %q was", *c.Profile)))
		}
	}
	var saved state.Mapping
	err := state.Update(ctx, s, "mapping set "+id, func(tx *state.Tx) error {
		cfg := tx.Config
		i := slices.IndexFunc(cfg.Mappings, func(m state.Mapping) bool { return m.ID == id })
		if i < 0 {
			return fault.NotFoundf(fields.List, "mapping %q does not exist", id)
		}
		old := cfg.Mappings[i]
		m, err := applyChanges(old, c, fields)
		if err != nil {
			return err
		}
		if err := validateAlone(m); err != nil {
			return err
		}
		more, err := admitChange(cfg, i, m)
		if err != nil {
			return err
		}
		warnings = append(warnings, more...)
		warnings = append(warnings, ipWarnings(cfg.ACME.Directory, m)...)
		if err := followChange(ctx, tx, old, m, c, now, fields); err != nil {
			return err
		}
		cfg.Mappings[i] = m
		saved = m
		return ctx.Err()
	})
	if err != nil {
		return saved, nil, err
	}
	return saved, warnings, nil
}

// applyChanges returns m with c applied, refusing ACME settings for a
// mapping of another source.
func applyChanges(m state.Mapping, c Changes, fields Fields) (state.Mapping, error) {
	if acme := c.acmeFields(fields); len(acme) > 0 && m.Source != state.SourceACME {
		return m, fault.Invalidf("leave "+strings.Join(acme, ", ")+" out: only ACME mappings have them",
			"mapping %q has source %s, which takes no %s", m.ID, m.Source, strings.Join(acme, ", "))
	}
	m.Hosts = slices.Clone(m.Hosts)
	for _, f := range []struct {
		to   *string
		from *string
	}{{&m.Upstream, c.Upstream}, {&m.Challenge, c.Challenge}, {&m.DNSCredential, c.DNSCredential}, {&m.Profile, c.Profile}, {&m.KeyType, c.KeyType}} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if c.Hosts != nil {
		m.Hosts = slices.Clone(c.Hosts)
	}
	return m, nil
}

// admitChange checks the changed mapping m, at index i of cfg, against the
// other mappings and the DNS credentials, as admit does for a new one.
func admitChange(cfg *state.Config, i int, m state.Mapping) ([]string, error) {
	for j := range cfg.Mappings {
		o := &cfg.Mappings[j]
		if j == i || o.Listener != m.Listener {
			continue
		}
		for _, h := range m.Hosts {
			if slices.Contains(o.Hosts, h) {
				return nil, fault.Invalidf(fmt.Sprintf("remove it from mapping %q first, or leave it out", o.ID),
					"host %q is already mapped on listener %q by mapping %q", h, m.Listener, o.ID)
			}
		}
	}
	if m.DNSCredential == "" {
		return nil, nil
	}
	for _, d := range cfg.DNSCredentials {
		if d.Name == m.DNSCredential && !d.Enabled {
			return []string{fmt.Sprintf("DNS credential %q is disabled: mapping %q cannot be issued until it is enabled", d.Name, m.ID)}, nil
		}
	}
	return nil, nil // a missing one is refused by validateAlone's rules at commit
}

// followChange writes what the change of old into m calls for into tx (see
// Set).
func followChange(ctx context.Context, tx *state.Tx, old, m state.Mapping, c Changes, now time.Time, fields Fields) error {
	hostsChanged := !slices.Equal(old.Hosts, m.Hosts)
	switch m.Source {
	case state.SourceSelfSigned:
		if !hostsChanged {
			return nil
		}
		return regenerate(ctx, tx, m, now)
	case state.SourceManual, state.SourceFile:
		if !hostsChanged {
			return nil
		}
		cert, err := Load(ctx, tx, old)
		if err != nil {
			return fault.Failf("replace the certificate first, then change the hosts", "cannot check that mapping %q's certificate covers the new hosts: %v", m.ID, err)
		}
		if missing := uncovered(m.Hosts, cert.Chain[0]); len(missing) > 0 {
			return fault.Invalidf("map only hosts its certificate covers, or replace the certificate first",
				"mapping %q's certificate does not cover %s (its names: %s)", m.ID, strings.Join(missing, ", "), namesOf(cert.Chain[0]))
		}
		return nil
	case state.SourceACME:
		changed := c.acmeFields(fields)
		if hostsChanged {
			changed = append([]string{fields.Hosts}, changed...)
		}
		if len(changed) == 0 {
			return nil
		}
		return markReissue(ctx, tx, m, "changed "+strings.Join(changed, ", ")+" at "+now.UTC().Format(time.RFC3339), now)
	}
	return nil
}

// markReissue makes ACME mapping m due for a new order: see Set.
func markReissue(ctx context.Context, tx *state.Tx, m state.Mapping, why string, now time.Time) error {
	meta, err := LoadMeta(ctx, tx, m.ID)
	if err != nil {
		return err
	}
	// The settings the back-off and the last error were about are gone.
	meta.Attempts, meta.RetryAt, meta.BackoffReason = 0, time.Time{}, ""
	meta.LastError, meta.LastErrorDetail = "", ""
	cert, err := Load(ctx, tx, m)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Pending already: the order is made at once.
	case err != nil || len(uncovered(m.Hosts, cert.Chain[0])) == len(m.Hosts):
		// Nothing left it could serve (or it does not load): gone, so
		// that the mapping is pending and serve orders at once.
		for _, name := range []string{keyName(m.ID), certName(m.ID)} {
			if err := tx.Delete(ctx, name); err != nil {
				return err
			}
		}
		meta.IssuedAt, meta.NotAfter, meta.FingerprintSHA256, meta.NextRenewalAt = time.Time{}, time.Time{}, "", time.Time{}
		meta.ARI = ARI{}
	default:
		meta.Reissue = why
		meta.NextRenewalAt = now.UTC().Truncate(time.Second)
	}
	if meta == (Meta{}) {
		return nil
	}
	if meta.Source == "" {
		meta.Source = state.SourceACME
	}
	return SaveMeta(ctx, tx, m.ID, meta)
}
