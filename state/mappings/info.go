package mappings

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/hostname"
	"github.com/p2pstream/p2ptls/state/parallel"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// Status of a mapping's certificate, as "mapping list" and "cert list" show it.
const (
	StatusValid    = "valid"
	StatusExpiring = "expiring" // renewal is due: pki.NeedsRenewal
	StatusExpired  = "expired"  // expired, or not valid yet
	StatusPending  = "pending"  // acme: not issued yet
	StatusFailed   = "failed"   // acme: not issued, and the last attempt failed
	StatusMissing  = "missing"  // manual, file, self-signed: no usable certificate
)

// Info is a mapping with the state of its certificate; its JSON fields are
// the ones scripts rely on ("mapping list", "cert list"). Times are nil when
// there is no certificate.
type Info struct {
	ID                string     `json:"id"`
	Listener          string     `json:"listener"`
	Hosts             []string   `json:"hosts"`
	Source            string     `json:"source"`
	Challenge         string     `json:"challenge"`
	DNSCredential     string     `json:"dns_credential"`
	Profile           string     `json:"profile"`  // ACME profile sent with every order; "" for the CA's default
	KeyType           string     `json:"key_type"` // ACME: the key of every order (DefaultKeyType when the mapping names none); "" for the other sources
	Upstream          string     `json:"upstream"`
	Status            string     `json:"status"`
	NotBefore         *time.Time `json:"not_before"`
	NotAfter          *time.Time `json:"not_after"`
	NextRenewalAt     *time.Time `json:"next_renewal_at"`
	LastError         string     `json:"last_error"`
	FingerprintSHA256 string     `json:"fingerprint_sha256"`
	CertFile          string     `json:"cert_file"`
	KeyFile           string     `json:"key_file"`
	// ACME attempts: when the certificate was issued, the last attempt, the
	// failed attempts in a row and when the next one is allowed.
	IssuedAt      *time.Time `json:"issued_at"`
	LastAttemptAt *time.Time `json:"last_attempt_at"`
	Attempts      int        `json:"attempts"`
	RetryAt       *time.Time `json:"retry_at"`
	// ACME renewal info (RFC 9773) last recorded about the certificate in
	// place: the server's suggested window and its explanation page; nil
	// and "" when none is recorded.
	ARIWindowStart    *time.Time `json:"ari_window_start"`
	ARIWindowEnd      *time.Time `json:"ari_window_end"`
	ARIExplanationURL string     `json:"ari_explanation_url"`
	// LastErrorDetail is the full text of LastError (bounded; LastError
	// is its one-line summary), and BackoffReason why RetryAt holds
	// (rate_limited, account_paused or failed); "" when not backing off.
	LastErrorDetail string `json:"last_error_detail"`
	BackoffReason   string `json:"backoff_reason"`
	// ServedBy is set while the mapping has no usable certificate (status
	// pending, failed or missing) and every one of its hosts is covered by
	// a wildcard mapping on the same listener that has one: serve then
	// answers those names with the wildcard's certificate (exact with a
	// certificate > wildcard with a certificate > fallback). It is that
	// mapping's id, or the ids joined by "," when hosts under different
	// parents are served by different wildcards; "" otherwise.
	ServedBy string `json:"served_by"`
}

// Details describe a certificate (chain) file: "cert show", "cert inspect"
// and GET /api/v1/certificates/{id}. The top-level fields are the leaf's.
type Details struct {
	Subject           string      `json:"subject"`
	DNSNames          []string    `json:"dns_names"`
	IPAddresses       []string    `json:"ip_addresses"`
	Issuer            string      `json:"issuer"`
	Serial            string      `json:"serial"` // upper-case hex
	KeyType           string      `json:"key_type"`
	FingerprintSHA256 string      `json:"fingerprint_sha256"`
	NotBefore         time.Time   `json:"not_before"`
	NotAfter          time.Time   `json:"not_after"`
	Status            string      `json:"status"` // valid, expiring or expired
	Chain             []ChainCert `json:"chain"`  // every certificate of the file, leaf first
}

// ChainCert is one certificate of a chain.
type ChainCert struct {
	Subject           string    `json:"subject"`
	Issuer            string    `json:"issuer"`
	FingerprintSHA256 string    `json:"fingerprint_sha256"`
	NotAfter          time.Time `json:"not_after"`
}

// List describes the mappings of cfg, or of one listener when listener is
// not empty, in config order. It looks at each mapping's certificate once
// (and an ACME mapping's meta.toml), through the certs memo: a stat for a
// file that has not changed since the last list, a read and parse for one
// that has.
func List(ctx context.Context, s state.Store, cfg *state.Config, listener string, now time.Time) ([]Info, error) {
	infos := make([]Info, 0, len(cfg.Mappings)) // [] rather than null in JSON
	err := Each(ctx, s, cfg, listener, now, func(info Info) error {
		infos = append(infos, info)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return infos, nil
}

// eachBatch is how many mappings Each describes at once: enough to keep
// every core busy, few enough that the Infos in flight stay small next to
// the config itself. A variable so that tests cross batches.
var eachBatch = 1024

// Each calls fn with the Info of each mapping List would return, in the
// same order, without holding them all: "mapping list --output json"
// streams 100k of them. The certificates are summarized one worker per
// core, a batch at a time; fn runs on the caller's goroutine, and its error
// ends the walk.
func Each(ctx context.Context, s state.Store, cfg *state.Config, listener string, now time.Time, fn func(Info) error) error {
	// Certificates and metadata are summarized through the memo: a list
	// reads and parses only the files that changed since the last one.
	sums := NewSummaries(s)
	defer sums.Save()
	return each(ctx, sums, cfg, listener, now, fn)
}

// each is Each reading through sums.
func each(ctx context.Context, sums *Summaries, cfg *state.Config, listener string, now time.Time, fn func(Info) error) error {
	if listener != "" {
		if _, err := cfg.FindListener(listener); err != nil {
			return err
		}
	}
	var ms []state.Mapping
	if listener == "" {
		ms = cfg.Mappings
	} else {
		for _, m := range cfg.Mappings {
			if m.Listener == listener {
				ms = append(ms, m)
			}
		}
	}
	if listener == "" {
		ids := make(map[string]bool, len(ms))
		for _, m := range ms {
			ids[m.ID] = true
		}
		sums.retain(ids)
	}
	wild := wildcards(ctx, sums, ms, now)
	batch := make([]Info, min(len(ms), eachBatch))
	for start := 0; start < len(ms); start += len(batch) {
		if err := ctx.Err(); err != nil {
			return err
		}
		part := ms[start:min(start+len(batch), len(ms))]
		parallel.Each(len(part), func(i int) bool {
			batch[i], _ = describe(ctx, sums, part[i], now, false)
			return true
		})
		for i := range part {
			info := batch[i]
			batch[i] = Info{} // let fn's caller be the only holder
			setServedBy(&info, wild)
			if err := fn(info); err != nil {
				return err
			}
		}
	}
	return nil
}

// wildcards maps listener+"\x00"+"*.parent" to the id of the mapping
// among ms with that wildcard host and a certificate, for ServedBy: only
// the mappings with a wildcard host can serve another's, so they are
// described first (and again in their turn). nil when there is none.
func wildcards(ctx context.Context, sums *Summaries, ms []state.Mapping, now time.Time) map[string]string {
	var wild map[string]string
	for _, m := range ms {
		if !slices.ContainsFunc(m.Hosts, hostname.IsWildcard) {
			continue
		}
		if info, _ := describe(ctx, sums, m, now, false); !hasCertificate(info.Status) {
			continue
		}
		for _, h := range m.Hosts {
			if hostname.IsWildcard(h) {
				if wild == nil {
					wild = map[string]string{}
				}
				wild[m.Listener+"\x00"+h] = m.ID
			}
		}
	}
	return wild
}

// setServedBy sets info.ServedBy from wild (see wildcards).
func setServedBy(info *Info, wild map[string]string) {
	if wild == nil || hasCertificate(info.Status) {
		return
	}
	info.ServedBy = servedBy(info.Listener, info.Hosts, func(key string) (string, bool) {
		id, ok := wild[key]
		return id, ok
	})
}

// hasCertificate reports whether a mapping of this status has a certificate
// that serve uses (valid, expiring, or expired: serve still presents it).
func hasCertificate(status string) bool {
	return status != StatusPending && status != StatusFailed && status != StatusMissing
}

// servedBy returns the ids of the wildcard mappings that serve every one of
// hosts on listener, joined by ","; "" when a host has none. wildcard looks
// up listener+"\x00"+"*.parent" among mappings with a certificate.
func servedBy(listener string, hosts []string, wildcard func(key string) (string, bool)) string {
	var ids []string
	for _, h := range hosts {
		w := hostname.WildcardFor(h)
		if w == "" {
			return ""
		}
		id, ok := wildcard(listener + "\x00" + w)
		if !ok {
			return ""
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return strings.Join(ids, ",")
}

// Show describes mapping id and its certificate; the details are nil while
// it has no usable certificate (Info.Status and LastError say why).
func Show(ctx context.Context, s state.Store, cfg *state.Config, id string, now time.Time) (Info, *Details, error) {
	info, chain, err := show(ctx, s, cfg, id, now)
	if err != nil || chain == nil {
		return info, nil, err
	}
	return info, details(chain, now), nil
}

// ChainPEM is Show with the certificate chain of mapping id as PEM, leaf
// first, for a download: nil while it has no usable certificate. The
// blocks are encoded again from the parsed chain, never copied from the
// file, so that no other block of the file (the key, which a file
// mapping's certificate file may hold too) is ever in it.
func ChainPEM(ctx context.Context, s state.Store, cfg *state.Config, id string, now time.Time) (Info, []byte, error) {
	info, chain, err := show(ctx, s, cfg, id, now)
	if err != nil || chain == nil {
		return info, nil, err
	}
	var b []byte
	for _, c := range chain {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return info, b, nil
}

// show describes mapping id and returns its chain, nil without a usable
// certificate (and then ServedBy says what serves its hosts).
func show(ctx context.Context, s state.Store, cfg *state.Config, id string, now time.Time) (Info, []*x509.Certificate, error) {
	i, err := find(cfg, id)
	if err != nil {
		return Info{}, nil, err
	}
	m := cfg.Mappings[i]
	info, chain := describe(ctx, direct(s), m, now, true)
	if chain == nil {
		info.ServedBy = servedBy(m.Listener, m.Hosts, func(key string) (string, bool) {
			return wildcardWithCertificate(ctx, s, cfg, key, now)
		})
	}
	return info, chain, nil
}

// Describe is Show for mapping m, which the caller has (one just added),
// without the config: load is called for it only when m has no usable
// certificate and ServedBy must look at the other mappings. "mapping add"
// then reads every record once, not twice.
func Describe(ctx context.Context, s state.Store, m state.Mapping, now time.Time, load func() (*state.Config, error)) (Info, *Details, error) {
	info, chain := describe(ctx, direct(s), m, now, true)
	if chain != nil {
		return info, details(chain, now), nil
	}
	cfg, err := load()
	if err != nil {
		return Info{}, nil, err
	}
	return Show(ctx, s, cfg, m.ID, now)
}

// wildcardWithCertificate finds the mapping holding the wildcard host of key
// (listener+"\x00"+host) and reports its id when it has a certificate.
func wildcardWithCertificate(ctx context.Context, s state.Store, cfg *state.Config, key string, now time.Time) (string, bool) {
	listener, host, _ := strings.Cut(key, "\x00")
	for _, o := range cfg.Mappings {
		if o.Listener == listener && slices.Contains(o.Hosts, host) {
			info, _ := describe(ctx, direct(s), o, now, false)
			return o.ID, hasCertificate(info.Status)
		}
	}
	return "", false
}

// Inspect describes the certificates in pemBytes, e.g. a file the user
// names; other PEM blocks (a key in the same file) are skipped.
func Inspect(pemBytes []byte, now time.Time) (*Details, error) {
	chain, err := pki.ParseCertChain(pemBytes)
	if err != nil {
		return nil, fault.Invalidf("give a PEM file with at least one CERTIFICATE block", "cannot read a certificate: %v", err)
	}
	return details(chain, now), nil
}

// describe returns m's Info and, when it has a usable certificate and
// withChain asks for it, its chain (read and parsed: without it, c may
// describe the certificate from its memo).
func describe(ctx context.Context, c *Summaries, m state.Mapping, now time.Time, withChain bool) (Info, []*x509.Certificate) {
	s := c.s
	info := Info{
		ID:            m.ID,
		Listener:      m.Listener,
		Hosts:         slices.Clone(m.Hosts),
		Source:        m.Source,
		Challenge:     m.Challenge,
		DNSCredential: m.DNSCredential,
		Profile:       m.Profile,
		Upstream:      m.Upstream,
		CertFile:      c.path(m, CertFileName),
		KeyFile:       c.path(m, KeyFileName),
	}
	// Only ACME records attempts; the other sources' meta.toml says nothing
	// the certificate does not, and List should read one file per mapping.
	var meta Meta
	if m.Source == state.SourceACME {
		info.KeyType = m.KeyType
		if info.KeyType == "" { // a hand-written record: the ACME client's default
			info.KeyType = DefaultKeyType
		}
		var err error
		if meta, err = c.Meta(ctx, m.ID); err != nil {
			info.LastError = err.Error()
		} else {
			info.LastError = meta.LastError
			info.Attempts = meta.Attempts
			info.LastAttemptAt = timePtr(meta.LastAttemptAt)
			info.RetryAt = timePtr(meta.RetryAt)
			info.IssuedAt = timePtr(meta.IssuedAt)
			info.LastErrorDetail = meta.LastErrorDetail
			info.BackoffReason, _ = meta.BackingOff(now)
		}
	}
	var chain []*x509.Certificate
	var sum CertSummary
	var err error
	if withChain {
		if _, chain, err = readChain(ctx, s, m); err == nil {
			sum = summarize(chain[0])
		}
	} else {
		sum, err = c.Cert(ctx, m)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && m.Source == state.SourceACME:
		info.Status = StatusPending
		if info.LastError != "" {
			info.Status = StatusFailed
		}
		return info, nil
	case errors.Is(err, fs.ErrNotExist):
		info.Status = StatusMissing
		info.LastError = fmt.Sprintf("there is no certificate at %s", info.CertFile)
		return info, nil
	case err != nil:
		info.Status = StatusMissing
		info.LastError = err.Error()
		return info, nil
	}
	leaf := sum.Leaf()
	notBefore, notAfter, next := sum.NotBefore, sum.NotAfter, pki.RenewalTime(leaf)
	if !meta.NextRenewalAt.IsZero() { // ACME's own schedule (ARI, back-off) wins
		next = meta.NextRenewalAt.UTC()
	}
	info.NotBefore, info.NotAfter, info.NextRenewalAt = &notBefore, &notAfter, &next
	if meta.ARIAbout(sum.FingerprintSHA256()) { // about this certificate
		info.ARIWindowStart, info.ARIWindowEnd = timePtr(meta.ARI.WindowStart), timePtr(meta.ARI.WindowEnd)
		info.ARIExplanationURL = meta.ARI.ExplanationURL
	}
	info.FingerprintSHA256 = sum.FingerprintSHA256()
	var problem string
	info.Status, problem = certStatus(leaf, now)
	if info.Status == StatusValid && (ariDue(meta, info.FingerprintSHA256, now) || meta.Reissue != "") {
		// The ARI window's time came, or the mapping changed (Set): renewal is due.
		info.Status = StatusExpiring
	}
	if info.LastError == "" {
		info.LastError = problem
	}
	return info, chain
}

// certStatus is valid, expiring or expired, and for a certificate that is
// not valid yet (only one accepted with --allow-expired, or a file that
// changed) "expired" with a problem that says so: clients refuse both.
func certStatus(leaf *x509.Certificate, now time.Time) (string, string) {
	switch {
	case now.After(leaf.NotAfter):
		return StatusExpired, ""
	case now.Before(leaf.NotBefore):
		return StatusExpired, "the certificate is not valid before " + text.Stamp(leaf.NotBefore)
	case pki.NeedsRenewal(leaf, now):
		return StatusExpiring, ""
	}
	return StatusValid, ""
}

// details describes chain, leaf first.
func details(chain []*x509.Certificate, now time.Time) *Details {
	leaf := chain[0]
	ips := make([]string, len(leaf.IPAddresses))
	for i, ip := range leaf.IPAddresses {
		ips[i] = ip.String()
	}
	d := &Details{
		Subject:           leaf.Subject.String(),
		DNSNames:          append([]string{}, leaf.DNSNames...),
		IPAddresses:       ips,
		Issuer:            leaf.Issuer.String(),
		Serial:            strings.ToUpper(leaf.SerialNumber.Text(16)),
		KeyType:           pki.KeyType(leaf.PublicKey),
		FingerprintSHA256: pki.Fingerprint(leaf),
		NotBefore:         leaf.NotBefore.UTC(),
		NotAfter:          leaf.NotAfter.UTC(),
		Chain:             make([]ChainCert, len(chain)),
	}
	d.Status, _ = certStatus(leaf, now)
	for i, c := range chain {
		d.Chain[i] = ChainCert{
			Subject:           c.Subject.String(),
			Issuer:            c.Issuer.String(),
			FingerprintSHA256: pki.Fingerprint(c),
			NotAfter:          c.NotAfter.UTC(),
		}
	}
	return d
}

// timePtr is nil for the zero time, so JSON says null rather than year 1.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
