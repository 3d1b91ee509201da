package mappings

import "time"

// ARI is what the ACME server's renewal info (RFC 9773) last said about
// a mapping's certificate: its suggested window and when to ask again (the
// server's Retry-After). The renewal time chosen in the window is the
// Meta's NextRenewalAt. It describes the certificate whose fingerprint the
// Meta records, and only that one: a certificate put in place since (by
// hand, or restored) is asked about afresh.
type ARI struct {
	WindowStart time.Time `toml:"ari_window_start,omitempty"`
	WindowEnd   time.Time `toml:"ari_window_end,omitempty"`
	// CheckAt is when to ask again; zero: never asked.
	CheckAt time.Time `toml:"ari_check_at,omitempty"`
	// FingerprintSHA256 is the certificate the answer is about: a
	// renewal keeps the old certificate's answer in the Meta until the
	// new one is asked about (RFC 9773, 4.3: at once), and must not take
	// it for the new one's. Empty in a meta.toml written before it was
	// recorded: the answer is then about the Meta's certificate.
	FingerprintSHA256 string `toml:"ari_fingerprint_sha256,omitempty"`
	// ExplanationURL is the server's page about this window (RFC 9773,
	// 4.2: e.g. a mass revocation), for the operator; "" when it gave none.
	ExplanationURL string `toml:"ari_explanation_url,omitempty"`
}

// ARIFresh reports whether m holds a renewal info answer about the
// certificate with fingerprint fp (CertSummary.FingerprintSHA256) that is not due to be
// asked again at now.
func (m Meta) ARIFresh(fp string, now time.Time) bool {
	return !m.ARI.CheckAt.IsZero() && now.Before(m.ARI.CheckAt) && m.ARIAbout(fp)
}

// ARIAbout reports whether the recorded renewal info answer is about the
// certificate with fingerprint fp, which is the one in place.
func (m Meta) ARIAbout(fp string) bool {
	about := m.ARI.FingerprintSHA256
	if about == "" {
		about = m.FingerprintSHA256
	}
	return about == fp && m.FingerprintSHA256 == fp
}

// HasWindow reports whether the answer held a window (a server that
// could not answer for the certificate is recorded without one, so that it
// is not asked again at once).
func (a ARI) HasWindow() bool { return !a.WindowStart.IsZero() }

// ariDue reports whether the renewal time chosen in the ACME server's
// window for the certificate with fingerprint fp has come at now: its
// renewal is due (status "expiring") although the lifetime rule would
// wait, e.g. a window moved earlier by a revocation.
func ariDue(m Meta, fp string, now time.Time) bool {
	return m.ARI.HasWindow() && m.ARIAbout(fp) && !m.NextRenewalAt.IsZero() && !now.Before(m.NextRenewalAt)
}
