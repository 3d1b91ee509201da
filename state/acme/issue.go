package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/lego"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// Back-off after failed attempts: 5 minutes, doubling, at most a day.
const (
	backoffBase = 5 * time.Minute
	backoffMax  = 24 * time.Hour
)

// Options are shared by Issue and Renew.
type Options struct {
	Log *slog.Logger
	// DNSResolvers (HOST:PORT) check DNS-01 propagation; empty means
	// p2ptls.toml's acme.dns_resolvers, then the system's.
	DNSResolvers []string
	// Concurrency is how many orders a run (Renew, issuance.Run) makes at
	// once; 0 means p2ptls.toml's acme.concurrency, then
	// DefaultConcurrency.
	Concurrency int
}

func (o *Options) log() *slog.Logger {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o.Log
}

// backoff is the wait after the n-th failed attempt in a row.
func backoff(n int) time.Duration {
	d := backoffBase
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// Issue obtains a certificate for ACME mapping id now, whether or not it is
// due. The order runs outside the state lock, under the mapping's claim
// (see issueClaimed): the new certificate, its key and record are one
// change, made once the order is done. A failed order is recorded in the
// mapping (last_error, attempts, retry_at) and returned; Attempted reports
// it. A mapping another process is issuing is not ordered again: Busy
// reports that error.
func Issue(ctx context.Context, s state.Store, id string, now time.Time, o Options) error {
	_, _, err := issueClaimed(ctx, s, "cert issue "+id, id, func() time.Time { return now }, &o,
		func(cfg *state.Config, m state.Mapping) (decision, error) {
			var current *x509.Certificate
			if c, err := mappings.Load(ctx, s, m); err == nil {
				current = c.Chain[0]
			}
			return decision{due: true, replaces: current}, nil
		})
	return err
}

// attemptError is an ACME order that failed and is recorded as an attempt.
type attemptError struct{ err error }

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// Attempted reports whether err is a failed ACME order recorded in the
// mapping's record, as opposed to a refusal before any order or an order
// cut short, which leave the record as it was.
func Attempted(err error) bool {
	var ae *attemptError
	return errors.As(err, &ae)
}

// errUnchanged ends a change that wrote nothing, so that nothing is saved.
var errUnchanged = errors.New("nothing to change")

// staged is a change that notes whether anything was written into it.
type staged struct {
	*state.Tx
	wrote bool
}

func (w *staged) Write(ctx context.Context, name string, data []byte, perm fs.FileMode) error {
	w.wrote = true
	return w.Tx.Write(ctx, name, data, perm)
}

func (w *staged) Delete(ctx context.Context, name string) error {
	w.wrote = true
	return w.Tx.Delete(ctx, name)
}

func (w *staged) Apply(ctx context.Context, c state.Change) error {
	w.wrote = true
	return w.Tx.Apply(ctx, c)
}

// ordered is the outcome of one ACME order, to be recorded: the new key
// pair and its renewal time, or the order's error.
type ordered struct {
	kp   *pki.KeyPair
	next time.Time
	err  error
}

// obtain records the outcome of one ACME order for m into the change w,
// made once the order is done (issueClaimed). On failure the certificate
// in place stays: only a success replaces it. now is when the order
// started. An order cut short by ctx (a signal, serve shutting down) is no
// attempt and never gets here: nothing is recorded, and no back-off
// follows.
func obtain(ctx context.Context, w state.Store, m state.Mapping, res ordered, now time.Time, o *Options) error {
	log := o.log().With("mapping", m.ID)
	meta, err := mappings.LoadMeta(ctx, w, m.ID)
	if err != nil {
		return err
	}
	meta.Source = state.SourceACME
	meta.LastAttemptAt = now.UTC().Truncate(time.Second)
	kp, next, err := res.kp, res.next, res.err
	if err != nil {
		err = recordFailure(&meta, err)
		if serr := mappings.SaveMeta(ctx, w, m.ID, meta); serr != nil {
			return fmt.Errorf("record the failed attempt of mapping %q: %w", m.ID, serr)
		}
		log.Warn("certificate not issued; the previous one, if any, keeps serving", "err", meta.LastError, "retry_at", meta.RetryAt)
		return &attemptError{&fault.Error{Kind: fault.KindOf(err), Msg: fmt.Sprintf("mapping %q", m.ID), Err: err, Hint: fault.HintOf(err)}}
	}
	meta.IssuedAt, meta.NotAfter = meta.LastAttemptAt, kp.Cert.NotAfter.UTC()
	meta.FingerprintSHA256 = pki.Fingerprint(kp.Cert)
	meta.LastError, meta.Attempts, meta.RetryAt = "", 0, time.Time{}
	meta.LastErrorDetail, meta.BackoffReason, meta.Reissue = "", "", ""
	meta.NextRenewalAt = next
	if err := mappings.WriteCertificate(ctx, w, m.ID, kp, meta); err != nil {
		return fmt.Errorf("save the certificate of mapping %q: %w", m.ID, err)
	}
	log.Info("certificate issued", "not_after", meta.NotAfter, "next_renewal_at", meta.NextRenewalAt)
	return nil
}

// order talks to the ACME server: account, solver, order, and the renewal
// time of the new certificate.
func order(ctx context.Context, s state.Store, cfg *state.Config, m state.Mapping, replaces *x509.Certificate, now time.Time, o *Options) (*pki.KeyPair, time.Time, error) {
	acct, err := LoadAccount(ctx, s, cfg.ACME.Directory)
	if err != nil {
		return nil, time.Time{}, err
	}
	client, err := newClient(ctx, acct, m.KeyType)
	if err != nil {
		return nil, time.Time{}, err
	}
	resolvers := o.DNSResolvers
	if len(resolvers) == 0 {
		resolvers = cfg.ACME.DNSResolvers
	}
	release, err := setSolver(ctx, client, s, cfg, m, resolvers)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer release()
	req := certificate.ObtainRequest{Domains: m.Hosts, Bundle: true, Profile: m.Profile}
	if replaces != nil && len(replaces.AuthorityKeyId) > 0 { // no ARI id without one
		if _, err := client.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: replaces}); err == nil {
			req.ReplacesCertID, _ = certificate.MakeARICertID(replaces)
		}
	}
	res, err := client.Certificate.Obtain(req)
	if err != nil && req.ReplacesCertID != "" && replacesRefused(err) {
		req.ReplacesCertID = ""
		res, err = client.Certificate.Obtain(req)
	}
	if err != nil {
		return nil, time.Time{}, profileRefused(ctx, acct, m, err) // lego's error types are the summary's (problem.go)
	}
	kp, err := pki.LoadKeyPair(res.Certificate, res.PrivateKey)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("the ACME server's certificate does not load: %w", err)
	}
	return kp, renewalTime(client, kp.Cert, now), nil
}

// renewalTime is the start of the server's ARI window when it offers one,
// else when a third of the lifetime remains.
func renewalTime(client *lego.Client, cert *x509.Certificate, now time.Time) time.Time {
	info, err := client.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: cert})
	if err != nil || info.SuggestedWindow.Start.IsZero() {
		return pki.RenewalTime(cert)
	}
	return info.SuggestedWindow.Start.UTC()
}
