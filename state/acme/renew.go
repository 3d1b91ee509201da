package acme

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-acme/lego/v4/certificate"
	"github.com/go-acme/lego/v4/lego"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/parallel"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// RenewOptions choose what "cert renew" does.
type RenewOptions struct {
	Options
	// Days, when > 0, renews certificates with fewer days left, instead of
	// the ARI window or the one-third rule.
	Days int
	// DryRun decides without issuing.
	DryRun bool
	// Force renews every ACME certificate and ignores back-off.
	Force bool
	// DeployHook is a shell command run after each successful renewal.
	DeployHook string
	// Only limits the run to these mapping ids (serve's prompt issuance).
	Only []string
	// BeforeRenewal, when set, runs once before the first renewal, only
	// when one is due and this is not a dry run: cron's random delay, so
	// that a pass with nothing to do ends at once. Its error (the context
	// ended while it waited) ends the run.
	BeforeRenewal func(ctx context.Context) error
}

// Report says what happened to each ACME mapping, by id.
type Report struct {
	Renewed []string          `json:"renewed"`
	Failed  []string          `json:"failed"`
	Skipped []string          `json:"skipped"`
	DryRun  bool              `json:"dry_run"`
	Errors  map[string]string `json:"errors"`
	Reasons map[string]string `json:"reasons"`
}

// Renew renews every ACME certificate that is due. Each mapping is first
// decided from the state as loaded, without the lock: one that is not due
// (nearly all of them, nearly always) costs a read of its files, not a
// change that loads every record again. One that is due is decided again
// and issued under the state lock, so two renewals at once (cron and
// serve, or two crons) never issue the same certificate twice: the second
// sees the first's result and skips.
func Renew(ctx context.Context, s state.Store, now func() time.Time, o RenewOptions) (*Report, error) {
	cfg, err := state.LoadConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	r := &Report{Renewed: []string{}, Failed: []string{}, Skipped: []string{}, DryRun: o.DryRun, Errors: map[string]string{}, Reasons: map[string]string{}}
	waited := o.BeforeRenewal == nil
	ari := &ariClients{}
	var todo []state.Mapping
	for _, m := range cfg.Mappings {
		if m.Source == state.SourceACME && (len(o.Only) == 0 || slices.Contains(o.Only, m.ID)) {
			todo = append(todo, m)
		}
	}
	// The first decisions summarize each certificate through the certs
	// memo (a stat per file when nothing changed; see mappings.Summaries)
	// and may ask the ACME server: one worker per core makes them, in any
	// order.
	type decision struct {
		due bool
		why string
	}
	sums := mappings.NewSummaries(s)
	decided := make([]decision, len(todo))
	parallel.Each(len(todo), func(i int) bool {
		decided[i].due, decided[i].why, _ = isDue(ctx, sums, s, cfg, todo[i], now(), o, ari)
		return ctx.Err() == nil
	})
	sums.Save()
	for i, m := range todo {
		if ctx.Err() != nil {
			break // stopped: the mappings not reached are not reported
		}
		due, why := decided[i].due, decided[i].why
		if !due || o.DryRun {
			r.Reasons[m.ID] = why
			if due {
				r.Renewed = append(r.Renewed, m.ID)
			} else {
				r.Skipped = append(r.Skipped, m.ID)
			}
			continue
		}
		if !waited {
			waited = true
			if err := o.BeforeRenewal(ctx); err != nil {
				return nil, err
			}
			if ctx.Err() != nil {
				break
			}
		}
		err := withMapping(ctx, s, "cert renew "+m.ID, m.ID, func(w state.Store, cfg *state.Config, cur state.Mapping) error {
			var why string
			var leaf *x509.Certificate
			m = cur
			due, why, leaf = isDue(ctx, nil, w, cfg, m, now(), o, ari)
			r.Reasons[m.ID] = why
			if !due || o.DryRun {
				return nil
			}
			return obtain(ctx, s, w, cfg, m, leaf, now(), &o.Options)
		})
		if err == nil && due && !o.DryRun {
			err = deploy(ctx, o.DeployHook, s, m)
		}
		switch {
		case err != nil:
			r.Failed = append(r.Failed, m.ID)
			r.Errors[m.ID] = text.OneLine(err.Error())
		case due:
			r.Renewed = append(r.Renewed, m.ID)
		default:
			r.Skipped = append(r.Skipped, m.ID)
		}
	}
	return r, nil
}

// isDue decides whether m's certificate should be renewed now, and why;
// ari holds the run's clients for the renewal info. With sums, it decides
// from the certificate's summary and returns no certificate (the first,
// unlocked decision); without, it loads and parses the certificate and
// returns its leaf (the decision under the lock, which obtain is given).
func isDue(ctx context.Context, sums *mappings.Summaries, s state.Store, cfg *state.Config, m state.Mapping, now time.Time, o RenewOptions, ari *ariClients) (bool, string, *x509.Certificate) {
	var meta mappings.Meta
	if sums != nil {
		meta, _ = sums.Meta(ctx, m.ID)
	} else {
		meta, _ = mappings.LoadMeta(ctx, s, m.ID)
	}
	if !o.Force && now.Before(meta.RetryAt) {
		return false, fmt.Sprintf("backing off after %d failed attempts until %s", meta.Attempts, meta.RetryAt.Format(time.RFC3339)), nil
	}
	// leaf carries what the rules below read (validity and names); full is
	// the parsed certificate, which only ARI and obtain need.
	var leaf, full *x509.Certificate
	if sums != nil {
		sum, err := sums.Usable(ctx, m)
		if err != nil {
			return true, "no certificate yet", nil
		}
		leaf = sum.Leaf()
	} else {
		c, err := mappings.Load(ctx, s, m)
		if err != nil {
			return true, "no certificate yet", nil
		}
		leaf, full = c.Chain[0], c.Chain[0]
	}
	switch {
	case o.Force:
		return true, "forced", full
	case !sameHosts(leaf, m.Hosts):
		return true, "the mapping's hosts changed", full
	case o.Days > 0:
		left := leaf.NotAfter.Sub(now)
		return left < time.Duration(o.Days)*24*time.Hour, fmt.Sprintf("%d days left, renewing below %d", int(left.Hours()/24), o.Days), full
	}
	if client := ari.client(ctx, s, cfg, m); client != nil {
		if full == nil {
			c, err := mappings.Load(ctx, s, m)
			if err != nil {
				return true, "no certificate yet", nil
			}
			full = c.Chain[0]
		}
		if at, ok := askARI(client, full, now); ok {
			if at == nil {
				return false, "outside the ACME server's renewal window", full
			}
			return true, "inside the ACME server's renewal window", full
		}
	}
	if pki.NeedsRenewal(leaf, now) {
		return true, "less than a third of its lifetime left", full
	}
	return false, "renews from " + pki.RenewalTime(leaf).Format(time.RFC3339), full
}

// ariClients are the clients one renewal run asks for renewal info with,
// by directory and key type: made once, they fetch the directory once
// and keep their connection, where a client per mapping cost a TLS
// handshake and a directory request for each of 10k ACME mappings.
// Failures are kept too: a server that is away is not asked again.
type ariClients struct {
	mu      sync.Mutex
	clients map[[2]string]*lego.Client // nil: no account, or unreachable
}

// client is the run's client for m's renewal info; nil without an
// account, or when the server could not be reached.
func (a *ariClients) client(ctx context.Context, s state.Store, cfg *state.Config, m state.Mapping) *lego.Client {
	key := [2]string{cfg.ACME.Directory, m.KeyType}
	a.mu.Lock() // held while the client is made, so that it is made once
	client, seen := a.clients[key]
	if !seen {
		if acct, err := LoadAccount(ctx, s, cfg.ACME.Directory); err == nil {
			client, _ = newClient(ctx, acct, m.KeyType)
		}
		if a.clients == nil {
			a.clients = map[[2]string]*lego.Client{}
		}
		a.clients[key] = client
	}
	a.mu.Unlock()
	return client
}

// askARI asks the server's renewal info; ok is false when it has none.
func askARI(client *lego.Client, leaf *x509.Certificate, now time.Time) (*time.Time, bool) {
	info, err := client.Certificate.GetRenewalInfo(certificate.RenewalInfoRequest{Cert: leaf})
	if err != nil {
		return nil, false // api.ErrNoARI, or the server is away: the lifetime rule decides
	}
	return info.ShouldRenewAt(now, 0), true
}

// sameHosts reports whether the certificate covers exactly the mapping's hosts.
func sameHosts(leaf *x509.Certificate, hosts []string) bool {
	return pki.ParseNames(hosts).Equal(leaf)
}

// hookWaitDelay is how long a cancelled deploy hook has after SIGTERM.
const hookWaitDelay = 500 * time.Millisecond

// deploy runs the deploy hook for a renewed mapping with its files in the
// environment, once the change that wrote them is saved (and the lock
// released: a hook may run p2ptls). A signal must not leave it running for
// long: cancelled, the hook gets SIGTERM, and SIGKILL if it has not ended
// a moment later.
func deploy(ctx context.Context, hook string, s state.Store, m state.Mapping) error {
	if hook == "" {
		return nil
	}
	certFile, keyFile, cleanup, err := hookFiles(ctx, s, m.ID)
	if err != nil {
		return fmt.Errorf("renewed, but the deploy hook cannot be given the files: %w", err)
	}
	defer cleanup()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hook)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = hookWaitDelay
	cmd.Env = append(os.Environ(),
		"P2PTLS_MAPPING_ID="+m.ID,
		"P2PTLS_LISTENER="+m.Listener,
		"P2PTLS_HOSTS="+strings.Join(m.Hosts, " "),
		"P2PTLS_CERT_FILE="+certFile,
		"P2PTLS_KEY_FILE="+keyFile,
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("renewed, but the deploy hook failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// hookFiles names the deploy hook's certificate and key files. In a local
// state directory they are the mapping's own files. A store that is no
// directory (a remote backend, or a change not yet committed) has no such
// paths: the files are read through it into a private temporary directory
// that cleanup removes once the hook has run.
func hookFiles(ctx context.Context, s state.Store, id string) (certFile, keyFile string, cleanup func(), err error) {
	dir := mappings.MappingDir(id)
	if l, ok := s.(state.Local); ok {
		root := filepath.Join(l.Root(), filepath.FromSlash(dir))
		return filepath.Join(root, mappings.CertFileName), filepath.Join(root, mappings.KeyFileName), func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "p2ptls-deploy-")
	if err != nil {
		return "", "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(tmp) }
	for _, f := range []struct {
		name string
		mode os.FileMode
		path *string
	}{{mappings.CertFileName, state.PublicMode, &certFile}, {mappings.KeyFileName, state.SecretMode, &keyFile}} {
		b, err := s.Read(ctx, dir+"/"+f.name)
		if err == nil {
			*f.path = filepath.Join(tmp, f.name)
			err = state.WriteFileAtomic(*f.path, b, f.mode)
		}
		if err != nil {
			cleanup()
			return "", "", nil, err
		}
	}
	return certFile, keyFile, cleanup, nil
}
