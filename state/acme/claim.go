package acme

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// claimName is the claim every ACME order for mapping id runs under, in
// every process: cron's "cert renew", serve and "cert issue" never order
// one mapping's certificate twice at once.
func claimName(id string) string { return "acme-order-" + id }

// BusyError is a mapping whose claim another order holds: it is being
// issued by another process (or goroutine) right now, and is skipped.
type BusyError struct{ ID string }

func (e *BusyError) Error() string {
	return fmt.Sprintf("mapping %q is being issued by another process", e.ID)
}

// Busy reports whether err is a mapping skipped because another order for
// it runs: no failure, and nothing recorded.
func Busy(err error) bool {
	var b *BusyError
	return errors.As(err, &b)
}

// busy is the error of a mapping whose claim is held: Locked, like a
// state lock held elsewhere (exit 3, API 503), when one was asked for by
// name.
func busy(id string) error {
	return &fault.Error{Kind: fault.Locked, Err: &BusyError{ID: id},
		Hint: "wait for it to finish; 'p2ptls cert list' then shows its result"}
}

// decision is what an issuance decided under the claim: whether to order,
// the certificate the order replaces (ARI), and a renewal info answer to
// record when not ordering.
type decision struct {
	due      bool
	replaces *x509.Certificate
	ari      *ariAnswer
}

// orderFunc runs one ACME order; a variable so that tests can stand in
// for the ACME server where only what surrounds the order is tested.
var orderFunc = order

// commitMu lines up this process's commits of orders, which would
// otherwise poll the state lock against each other.
var commitMu sync.Mutex

// issueClaimed issues ACME mapping id outside the state lock: it takes
// the mapping's claim (held elsewhere: a *BusyError, nothing done), reads
// the config and the mapping again, lets decide say whether to order (a
// renewal that is no longer due), runs the order, and commits its outcome
// in one change that first checks that the mapping is still the one
// ordered for (same hosts, challenge, credential, key type, profile and
// directory) and that the certificate in place is still the one the order
// started from. When either changed meanwhile (an edit, a removal, a
// certificate put in place by another way) the outcome is dropped and
// logged: nothing is written, and a newer certificate is never
// overwritten. attempted reports that an order ran and its outcome was
// recorded; the decision is decide's.
func issueClaimed(ctx context.Context, s state.Store, purpose, id string, now func() time.Time, o *Options, decide func(cfg *state.Config, m state.Mapping) (decision, error)) (decision, bool, error) {
	release, ok, err := state.ClaimLocal(ctx, s, claimName(id))
	if err != nil {
		return decision{}, false, err
	}
	if !ok {
		o.log().Info("not issued now: another process is issuing it", "mapping", id)
		return decision{}, false, busy(id)
	}
	defer release()
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return decision{}, false, err
	}
	mp, ok := cfg.Mapping(id)
	if !ok {
		return decision{}, false, fault.NotFoundf("see 'p2ptls mapping list'", "mapping %q does not exist", id)
	}
	m := *mp
	if m.Source != state.SourceACME {
		return decision{}, false, fault.Failf("", "mapping %q is not an ACME mapping (source %s)", id, m.Source)
	}
	fp, err := inPlace(ctx, s, m)
	if err != nil {
		return decision{}, false, err
	}
	d, err := decide(cfg, m)
	if err != nil || !d.due {
		if err == nil && d.ari != nil {
			err = commitARI(ctx, s, id, d.ari)
		}
		return d, false, err
	}
	started := now()
	// Which process ordered is what an operator of several replicas
	// (or of serve and cron) asks first.
	o.log().Info("ordering a certificate", "mapping", id, "hosts", m.Hosts, "challenge", m.Challenge)
	kp, next, oerr := orderFunc(ctx, s, cfg, m, d.replaces, started, o)
	if oerr != nil && ctx.Err() != nil {
		return d, false, fmt.Errorf("mapping %q: certificate not issued: %w", m.ID, context.Cause(ctx))
	}
	res := ordered{kp: kp, next: next, err: oerr}
	var failed *attemptError
	dropped := ""
	commitMu.Lock()
	err = state.Update(ctx, s, purpose, func(tx *state.Tx) error {
		cur, ok := tx.Config.Mapping(id)
		switch {
		case !ok:
			dropped = "the mapping was removed while its order ran"
		case !sameOrder(m, cfg.ACME.Directory, *cur, tx.Config.ACME.Directory):
			dropped = "the mapping was changed while its order ran"
		}
		if dropped == "" {
			now, err := inPlace(ctx, tx, *cur)
			if err != nil {
				return err
			}
			if now != fp {
				dropped = "another certificate was put in place while the order ran"
			}
		}
		if dropped != "" {
			return errUnchanged
		}
		w := &staged{Tx: tx}
		err := obtain(ctx, w, *cur, res, started, o)
		if errors.As(err, &failed) {
			err = nil
		}
		if err == nil && !w.wrote {
			return errUnchanged
		}
		return err
	})
	commitMu.Unlock()
	switch {
	case dropped != "":
		o.log().Warn("order result dropped, nothing written", "mapping", id, "why", dropped, "order_failed", oerr != nil)
		return d, false, nil
	case failed != nil && err != nil && !errors.Is(err, errUnchanged):
		// The attempt is not recorded: no back-off follows it.
		return d, false, fmt.Errorf("%w (and recording the attempt failed: %v)", failed.err, err)
	case failed != nil:
		return d, true, failed
	case errors.Is(err, errUnchanged):
		return d, false, nil
	case err != nil:
		return d, false, err
	}
	return d, true, nil
}

// commitARI records a renewal info answer asked under the claim.
func commitARI(ctx context.Context, s state.Store, id string, a *ariAnswer) error {
	commitMu.Lock()
	defer commitMu.Unlock()
	err := state.Update(ctx, s, "record renewal info "+id, func(tx *state.Tx) error {
		if _, ok := tx.Config.Mapping(id); !ok {
			return errUnchanged
		}
		w := &staged{Tx: tx}
		if err := saveARI(ctx, w, id, a); err != nil {
			return err
		}
		if !w.wrote {
			return errUnchanged
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// sameOrder reports whether mapping b (in directory db) asks for the
// certificate an order for a (in da) obtains. Its upstream or listener
// may change: the certificate is the same.
func sameOrder(a state.Mapping, da string, b state.Mapping, db string) bool {
	return da == db && a.Source == b.Source && slices.Equal(a.Hosts, b.Hosts) && a.Challenge == b.Challenge &&
		a.DNSCredential == b.DNSCredential && a.KeyType == b.KeyType && a.Profile == b.Profile
}

// inPlace identifies the certificate file of m as it is now ("" when there
// is none), so that a commit can tell whether another was put in place.
func inPlace(ctx context.Context, s state.Store, m state.Mapping) (string, error) {
	names, _ := mappings.CertFiles(m)
	b, err := s.Read(ctx, names[0])
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the certificate of mapping %q: %w", m.ID, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
