package mappings

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// DefaultDays is the validity of a self-signed certificate when none is given.
const DefaultDays = 90

// MaxDays is the longest self-signed validity: pki.ServerMaxValidity.
const MaxDays = int(pki.ServerMaxValidity / (24 * time.Hour))

// maxIDLen is the longest name hostname.ValidateName accepts.
const maxIDLen = 63

// hintAllowExpired is the way out for a certificate outside its validity.
const hintAllowExpired = "renew it, or pass --allow-expired to accept it anyway"

// Input is a mapping to add with what its source needs.
type Input struct {
	// Mapping is saved as given, except that hosts are normalised, an empty
	// ID is derived from the first host, Days defaults to DefaultDays for
	// source self-signed, and CertFile and KeyFile (source file) are made
	// absolute.
	Mapping state.Mapping
	// CertPEM (the chain, leaf first) and KeyPEM are the certificate of
	// source manual; they are copied into the state directory.
	CertPEM, KeyPEM []byte
	// AllowExpired accepts a manual or file certificate that is expired or
	// not yet valid; Add returns a warning about it instead of refusing it.
	AllowExpired bool
}

// Add checks in and adds its mapping, with the certificate files of sources
// manual and self-signed. It returns the mapping as saved and warnings the
// caller should show: an expired certificate accepted with AllowExpired, a
// disabled DNS credential.
//
// Refused input changes nothing on disk. Bad input (exit 2) is refused before
// waiting for the lock where it can be; a missing listener or DNS credential
// and a host already mapped on the listener are bad input too (the mapping
// is what is wrong, as in a hand-edited p2ptls.toml); an id in use is a
// failure (exit 1), like every other name that already exists.
func Add(ctx context.Context, s state.Store, in Input, now time.Time) (state.Mapping, []string, error) {
	p, err := prepare(in, now)
	if err != nil {
		return p.m, nil, err
	}
	batch := []prepared{p}
	if err := commit(ctx, s, "mapping add "+p.m.ID, batch, now); err != nil {
		// One mapping: the error is about it, no need to say which.
		var ie *itemError
		if errors.As(err, &ie) {
			err = ie.Err
		}
		return p.m, nil, err
	}
	return batch[0].m, batch[0].warnings, nil
}

// prepared is an Input checked by prepare, ready for commit.
type prepared struct {
	m           state.Mapping
	kp          *pki.KeyPair // the files to write: sources manual and self-signed
	warnings    []string
	generatedID bool // m.ID was derived from the first host, so it may get a suffix
}

// itemError is commit's refusal of one mapping of its batch: Index is its
// position, Other that of the earlier mapping of the batch it collides with
// (-1 when none).
type itemError struct {
	Index, Other int
	Err          error
}

func (e *itemError) Error() string { return e.Err.Error() }
func (e *itemError) Unwrap() error { return e.Err }

// commit adds the prepared mappings of batch in one change: each is
// admitted against the config and the mappings before it, then the files
// of all of them and the config are written together (state.Update).
// Nothing is written unless every mapping is admitted; a refusal is an
// *itemError. On success batch holds the mappings as saved and every
// warning.
func commit(ctx context.Context, s state.Store, purpose string, batch []prepared, now time.Time) error {
	first := -1 // the index of the batch's first mapping, once admitted
	err := state.Update(ctx, s, purpose, func(tx *state.Tx) error {
		cfg := tx.Config
		start := len(cfg.Mappings)
		t := newTaken(cfg)
		for i := range batch {
			p := &batch[i]
			if err := t.collision(p.m, p.generatedID); err != nil {
				err.Index = i
				return err
			}
			more, err := admit(cfg, t, &p.m, p.generatedID)
			if err != nil {
				return &itemError{Index: i, Other: -1, Err: err}
			}
			p.warnings = append(p.warnings, more...)
			p.warnings = append(p.warnings, ipWarnings(cfg.ACME.Directory, p.m)...)
			t.add(p.m, i)
			cfg.Mappings = append(cfg.Mappings, p.m)
		}
		// The mappings are as prepare normalised them, which is what the
		// rules would make of them: Update checks them once, with the rest
		// of the config, before anything is written.
		if err := install(ctx, tx, batch, now); err != nil {
			return err
		}
		first = start
		// Stopped now, nothing is written; once the change is committed,
		// an interrupted command waits for it, all of a batch or none.
		return ctx.Err()
	})
	// A broken rule is traced to the mapping of the batch that breaks it.
	var ee *state.EntryError
	if first >= 0 && errors.As(err, &ee) && ee.Table == "mappings" && ee.Index >= first && ee.Index-first < len(batch) {
		return &itemError{Index: ee.Index - first, Other: -1, Err: ee.Err}
	}
	return err
}

// install puts the files of every mapping of batch into the change tx.
func install(ctx context.Context, tx state.Store, batch []prepared, now time.Time) error {
	for _, p := range batch {
		// No mapping has this id, so whatever its directory holds was left
		// by a crashed remove and must not be served as the new mapping's
		// certificate. Stat first, so that a batch of thousands does not
		// carry a delete for each.
		if _, err := tx.Stat(ctx, MappingDir(p.m.ID)); !errors.Is(err, fs.ErrNotExist) {
			if err := tx.Delete(ctx, MappingDir(p.m.ID)); err != nil {
				return err
			}
		}
		if p.kp != nil {
			if err := writeMaterial(ctx, tx, p.m.ID, p.kp, newMeta(p.m.Source, p.kp, now)); err != nil {
				return fmt.Errorf("add mapping %q: %w", p.m.ID, err)
			}
		}
	}
	return nil
}

// prepare checks everything about in that does not depend on the state and
// returns the mapping to save, the key pair to write (sources manual and
// self-signed) and warnings. The mapping is returned on error too, for the
// caller's message.
func prepare(in Input, now time.Time) (prepared, error) {
	m, kp, warnings, err := prepareMapping(in, now)
	return prepared{m: m, kp: kp, warnings: warnings, generatedID: in.Mapping.ID == ""}, err
}

func prepareMapping(in Input, now time.Time) (state.Mapping, *pki.KeyPair, []string, error) {
	m := in.Mapping
	m.Hosts = slices.Clone(m.Hosts) // normalised in place below
	if len(m.Hosts) == 0 {
		return m, nil, nil, fault.Invalidf("give at least one --host", "a mapping needs at least one host")
	}
	for i, h := range m.Hosts {
		n, err := hostname.Normalize(h)
		if err != nil {
			return m, nil, nil, fault.AsInvalid(err, "give each host as a DNS name or an IP address, e.g. shop.example.com, *.example.com or 192.0.2.1")
		}
		m.Hosts[i] = n
	}
	if m.ID == "" {
		m.ID = idFromHost(m.Hosts[0])
	} else if err := hostname.ValidateName("mapping id", m.ID); err != nil {
		return m, nil, nil, fault.AsInvalid(err, "give another --id, or leave it out to derive one from the first host")
	}
	if err := hostname.ValidateName("listener", m.Listener); err != nil {
		return m, nil, nil, fault.AsInvalid(err, "see 'p2ptls listener list' for the existing ones")
	}
	if m.Source == state.SourceSelfSigned && m.Days == 0 {
		m.Days = DefaultDays
	}
	if m.Source == state.SourceFile {
		if m.CertFile == "" || m.KeyFile == "" {
			return m, nil, nil, fault.Invalidf("pass --cert-file and --key-file", "source file needs a certificate file and a key file")
		}
		for _, p := range []*string{&m.CertFile, &m.KeyFile} {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return m, nil, nil, fault.Invalidf("give an absolute path", "cannot make %s absolute: %v", *p, err)
			}
			*p = abs
		}
	}
	if err := validateAlone(m); err != nil {
		return m, nil, nil, err
	}
	if err := checkFields(in); err != nil {
		return m, nil, nil, err
	}
	switch m.Source {
	case state.SourceManual:
		if len(in.CertPEM) == 0 || len(in.KeyPEM) == 0 {
			return m, nil, nil, fault.Invalidf("pass --cert-file and --key-file", "source manual needs a certificate and its private key")
		}
		kp, warn, err := checkPair(m.Hosts, in.CertPEM, in.KeyPEM, "the uploaded certificate", "the uploaded private key", in.AllowExpired, now)
		return m, kp, warn, err
	case state.SourceFile:
		certPEM, err := ReadPEM(m.CertFile)
		if err != nil {
			return m, nil, nil, err
		}
		keyPEM, err := ReadPEM(m.KeyFile)
		if err != nil {
			return m, nil, nil, err
		}
		// The files stay where they are: only their check is kept.
		_, warn, err := checkPair(m.Hosts, certPEM, keyPEM, "the certificate in "+m.CertFile, "the private key in "+m.KeyFile, in.AllowExpired, now)
		return m, nil, warn, err
	case state.SourceSelfSigned:
		if err := checkDays(m.Days, fmt.Sprintf("give --days between 1 and %d", MaxDays)); err != nil {
			return m, nil, nil, err
		}
		kp, err := selfSigned(m, now)
		return m, kp, nil, err
	}
	return m, nil, nil, nil // acme: issued later
}

// validateAlone holds m to the rules of p2ptls.toml (id, hosts, source,
// challenge, key type, wildcard with DNS-01 only) without the state: the
// config it checks holds only m and a listener and credential by the names
// m uses, so that the rules stay in state.Config.Validate alone.
func validateAlone(m state.Mapping) error {
	m.Hosts = slices.Clone(m.Hosts) // Validate normalises in place
	cfg := state.Config{
		SchemaVersion: state.SchemaVersion,
		Listeners:     []state.Listener{{Name: m.Listener, Addr: ":443"}},
		Mappings:      []state.Mapping{m},
	}
	if m.DNSCredential != "" {
		cfg.DNSCredentials = []state.DNSCredential{{Name: m.DNSCredential, Provider: state.ProviderCloudflare}}
	}
	err := cfg.Validate()
	// Validate says "mappings[0]: …", which means nothing to someone who
	// gave one mapping on the command line; the reason underneath does.
	if inner := errors.Unwrap(err); inner != nil && fault.KindOf(inner) == fault.Invalid {
		return inner
	}
	return err
}

// checkFields refuses settings of another source, so that a mapping is
// never saved with settings nothing reads.
func checkFields(in Input) error {
	m := in.Mapping
	for _, f := range []struct {
		set          bool
		source, what string
	}{
		{len(in.CertPEM) > 0 || len(in.KeyPEM) > 0, state.SourceManual, "an uploaded certificate and key"},
		{m.CertFile != "" || m.KeyFile != "", state.SourceFile, "certificate and key file paths"},
		{m.Days != 0, state.SourceSelfSigned, "a validity in days"},
		{m.Challenge != "" || m.DNSCredential != "" || m.KeyType != "" || m.Profile != "", state.SourceACME, "a challenge, DNS credential, key type or profile"},
	} {
		if f.set && m.Source != f.source {
			return fault.Invalidf("leave it out, or choose source "+f.source,
				"source %s does not take %s; only source %s does", m.Source, f.what, f.source)
		}
	}
	return nil
}

// checkDays refuses a self-signed validity pki.SelfSigned would refuse.
func checkDays(days int, hint string) error {
	if days < 1 || days > MaxDays {
		return fault.Invalidf(hint, "a self-signed certificate cannot be valid for %d days; it needs 1 to %d", days, MaxDays)
	}
	return nil
}

// selfSigned generates mapping m's certificate.
func selfSigned(m state.Mapping, now time.Time) (*pki.KeyPair, error) {
	kp, err := pki.SelfSigned(pki.ParseNames(m.Hosts), now, time.Duration(m.Days)*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("generate a self-signed certificate for mapping %q: %w", m.ID, err)
	}
	return kp, nil
}

// ReadPEM reads a certificate or key file the user named. An unreadable
// file is bad input, named in the message.
func ReadPEM(path string) ([]byte, error) {
	// Bounded and regular-only: /dev/zero, /dev/urandom or a FIFO named
	// here (or in an API request) is refused at once instead of growing
	// without end or blocking forever.
	return userfile.Read(path, userfile.MaxPEM)
}

// checkPair parses a certificate chain and its key and checks that they
// serve hosts now. certWhat and keyWhat name them in messages.
func checkPair(hosts []string, certPEM, keyPEM []byte, certWhat, keyWhat string, allowExpired bool, now time.Time) (*pki.KeyPair, []string, error) {
	const hint = "give the certificate chain (leaf first) and the private key that belongs to it"
	// Parsed on its own first, so that a broken certificate is not blamed on the key.
	chain, err := pki.ParseCertChain(certPEM)
	if err != nil {
		return nil, nil, fault.Invalidf(hint, "%s cannot be used: %v", certWhat, err)
	}
	if err := pki.CheckKeyStrength(chain[0].PublicKey); err != nil {
		return nil, nil, fault.Invalidf("use a certificate with a 2048-bit or longer RSA key, or an ECDSA key", "%s cannot be used: %v", certWhat, err)
	}
	kp, err := pki.LoadKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fault.Invalidf(hint, "%s cannot be used: %v", keyWhat, err)
	}
	leaf := kp.Cert
	if missing := uncovered(hosts, leaf); len(missing) > 0 {
		return nil, nil, fault.Invalidf("use a certificate issued for every host of the mapping, or map only the hosts it covers",
			"%s does not cover %s (its names: %s)", certWhat, strings.Join(missing, ", "), namesOf(leaf))
	}
	var warnings []string
	for _, c := range pki.LeafConcerns(leaf) {
		warnings = append(warnings, certWhat+" "+c)
	}
	var problem string
	switch {
	case now.After(leaf.NotAfter):
		problem = fmt.Sprintf("%s expired on %s", certWhat, text.Stamp(leaf.NotAfter))
	case now.Before(leaf.NotBefore):
		problem = fmt.Sprintf("%s is not valid before %s", certWhat, text.Stamp(leaf.NotBefore))
	default:
		return kp, warnings, nil
	}
	if !allowExpired {
		return nil, nil, fault.Invalidf(hintAllowExpired, "%s", problem)
	}
	return kp, append([]string{problem + "; clients refuse it until it is replaced"}, warnings...), nil
}

// uncovered returns the hosts leaf does not cover (pki.Covers), the way a TLS
// client matches them: exactly, or by a wildcard over the leftmost label.
// A wildcard host needs the same wildcard name.
func uncovered(hosts []string, leaf *x509.Certificate) []string {
	var missing []string
	for _, h := range hosts {
		if !pki.Covers(leaf, h) {
			missing = append(missing, h)
		}
	}
	return missing
}

// namesOf lists a certificate's DNS names and IP addresses for a message.
func namesOf(c *x509.Certificate) string {
	if n := pki.SANList(c); len(n) > 0 {
		return strings.Join(n, ", ")
	}
	return "none"
}

// idFromHost derives a mapping id from a normalised host:
// "*.example.com" → "wildcard-example-com", "a.example.com" →
// "a-example-com", cut to the length a name may have. Hosts are ASCII
// letters, digits, "-" and "." after normalisation, so the result is a
// valid name.
func idFromHost(h string) string {
	if strings.Contains(h, ":") {
		return ipv6ID(h)
	}
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		h = "wildcard." + rest
	}
	return cutID(strings.ReplaceAll(h, ".", "-"), maxIDLen)
}

// cutID shortens id to n bytes without leaving a trailing "-".
func cutID(id string, n int) string {
	if len(id) > n {
		id = id[:n]
	}
	return strings.TrimRight(id, "-")
}

// taken is what the config and the mappings of a batch already claim. The
// config's mappings are searched one by one for the first few questions
// (adding one mapping to 100k asks four or five) and indexed once more are
// asked (an import), so that admitting each mapping of a large batch takes
// constant time.
type taken struct {
	config    []state.Mapping                // the config's own, not the batch's
	ids       map[string]int                 // mapping id -> its index in the batch, -1 if in the config
	hosts     map[state.ListenerHost]claimer // -> its mapping
	indexed   bool                           // config's mappings are in ids and hosts
	questions int
}

type claimer struct {
	id   string
	item int // index in the batch, -1 if in the config
}

// takenScans is how many questions taken answers by a pass over the
// config before indexing it.
const takenScans = 16

func newTaken(cfg *state.Config) *taken {
	return &taken{config: cfg.Mappings[:len(cfg.Mappings):len(cfg.Mappings)], ids: map[string]int{}, hosts: map[state.ListenerHost]claimer{}}
}

func (t *taken) add(m state.Mapping, item int) {
	t.ids[m.ID] = item
	for _, h := range m.Hosts {
		t.hosts[state.ListenerHost{Listener: m.Listener, Host: h}] = claimer{id: m.ID, item: item}
	}
}

// ask counts a question about the config, indexing it past takenScans;
// it reports whether the maps now answer for the config too.
func (t *taken) ask() bool {
	if !t.indexed {
		if t.questions++; t.questions > takenScans {
			for _, m := range t.config {
				for _, h := range m.Hosts {
					key := state.ListenerHost{Listener: m.Listener, Host: h}
					if _, ok := t.hosts[key]; !ok {
						t.hosts[key] = claimer{id: m.ID, item: -1}
					}
				}
				if _, ok := t.ids[m.ID]; !ok {
					t.ids[m.ID] = -1
				}
			}
			t.indexed = true
		}
	}
	return t.indexed
}

// id reports who holds mapping id: its index in the batch, or -1 for the
// config.
func (t *taken) id(id string) (int, bool) {
	if j, ok := t.ids[id]; ok || t.ask() {
		return j, ok
	}
	for i := range t.config {
		if t.config[i].ID == id {
			return -1, true
		}
	}
	return 0, false
}

// host reports who maps host on listener.
func (t *taken) host(listener, host string) (claimer, bool) {
	key := state.ListenerHost{Listener: listener, Host: host}
	if c, ok := t.hosts[key]; ok || t.ask() {
		return c, ok
	}
	for i := range t.config {
		if m := &t.config[i]; m.Listener == listener && slices.Contains(m.Hosts, host) {
			return claimer{id: m.ID, item: -1}, true
		}
	}
	return claimer{}, false
}

// collision refuses a mapping whose id (given, not derived) or host an
// earlier mapping of the same batch has already: the batch repeats itself,
// which is bad input, unlike an id that the state already holds.
func (t *taken) collision(m state.Mapping, generatedID bool) *itemError {
	if j, ok := t.ids[m.ID]; ok && j >= 0 && !generatedID { // the batch's own
		return &itemError{Other: j, Err: fault.Invalidf("give each mapping its own id", "mapping id %q is given twice", m.ID)}
	}
	for _, h := range m.Hosts {
		if c, ok := t.hosts[state.ListenerHost{Listener: m.Listener, Host: h}]; ok && c.item >= 0 { // the batch's own
			return &itemError{Other: c.item, Err: fault.Invalidf("map each host once per listener",
				"host %q is given twice on listener %q", h, m.Listener)}
		}
	}
	return nil
}

// admit checks m against the current config and what t holds, and returns
// warnings. A generated id that is taken (the same host on another
// listener) gets the first free suffix "-2", "-3", ….
func admit(cfg *state.Config, t *taken, m *state.Mapping, generatedID bool) ([]string, error) {
	// A mapping that names a missing listener is bad input (exit 2), unlike
	// "listener show" of a missing one: the mapping is what is wrong.
	if _, ok := cfg.Listener(m.Listener); !ok {
		return nil, fault.Invalidf("add it first with 'p2ptls listener add', or see 'p2ptls listener list'",
			"listener %q does not exist", m.Listener)
	}
	if _, used := t.id(m.ID); used && !generatedID {
		return nil, fault.Failf(fmt.Sprintf("choose another --id, or remove it first with 'p2ptls mapping remove %s'", m.ID),
			"mapping %q already exists", m.ID)
	}
	for _, h := range m.Hosts {
		if c, ok := t.host(m.Listener, h); ok {
			return nil, fault.Invalidf(fmt.Sprintf("remove it from mapping %q first, or map it on another listener", c.id),
				"host %q is already mapped on listener %q by mapping %q", h, m.Listener, c.id)
		}
	}
	for base, n := m.ID, 2; ; n++ {
		if _, used := t.id(m.ID); !used {
			break
		}
		suffix := "-" + strconv.Itoa(n)
		m.ID = cutID(base, maxIDLen-len(suffix)) + suffix
	}
	if m.DNSCredential == "" {
		return nil, nil
	}
	for _, d := range cfg.DNSCredentials {
		if d.Name != m.DNSCredential {
			continue
		}
		if !d.Enabled {
			return []string{fmt.Sprintf("DNS credential %q is disabled: mapping %q cannot be issued until 'p2ptls dns-credential enable %s'", d.Name, m.ID, d.Name)}, nil
		}
		return nil, nil
	}
	return nil, fault.Invalidf("add it with 'p2ptls dns-credential add', or see 'p2ptls dns-credential list'",
		"DNS credential %q does not exist", m.DNSCredential)
}
