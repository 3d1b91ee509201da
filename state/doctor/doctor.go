// Package doctor checks a state directory and the management settings for
// the deployment mistakes of the product description, and more, before they
// bite: a MANAGEMENT_PUBLIC_URL agents cannot reach or that the management
// certificate does not cover, MANAGEMENT_TLS_EXTRA_HOSTS missing from it, a
// wildcard with HTTP-01/TLS-ALPN-01, a management CA that the last backup
// does not hold, fallback handshakes, loose file modes and more.
//
// Every check has a stable id, a status (ok, warn or fail), a message and,
// unless it is ok, a hint that names the fix. A check with nothing to look at
// is ok and says so; one that cannot look because something it needs is
// broken warns and names the check that reports that. Doctor only reads
// the state: it never takes the state lock, creates or changes a file of
// it. What it derives from the mappings' certificates and keys it keeps in
// a memo (state.MemoDir/doctor: derived data, not state), so that a run
// over files that did not change does not parse them again.
package doctor

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/management"
)

// Status is the outcome of one check.
type Status string

// Statuses, from good to bad.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Check is the outcome of one check; its JSON is what "doctor --output
// json" prints in checks[].
type Check struct {
	ID      string `json:"id"`
	Status  Status `json:"status"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

// Report is every check in a fixed order. OK is false when a check failed,
// or with Input.Strict when one warned: it agrees with doctor's exit code.
type Report struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Problems returns the checks that make the report not OK.
func (r Report) Problems(strict bool) []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Status == Fail || (strict && c.Status == Warn) {
			out = append(out, c)
		}
	}
	return out
}

// Count returns how many checks have status s.
func (r Report) Count(s Status) int {
	n := 0
	for _, c := range r.Checks {
		if c.Status == s {
			n++
		}
	}
	return n
}

// Input is what doctor looks at.
type Input struct {
	// Store is the state; doctor only reads it. The checks of what only a
	// local directory has (file modes, the lock file, restore's staging
	// directories, leftovers) need it to be a state.Local, and say "not
	// applicable" otherwise.
	Store state.Store
	// Settings are the management settings as serve would get them (from
	// the environment or flags), validated or not: what Validate refuses is
	// reported by the checks, never returned as an error.
	Settings management.Settings
	// Network also connects to MANAGEMENT_PUBLIC_URL as an agent does
	// (with Check).
	Network bool
	// DNSResolvers (HOST:PORT) are where Network looks CAA records up;
	// empty means p2ptls.toml's acme.dns_resolvers, then the system's.
	DNSResolvers []string
	// Strict makes warnings count against Report.OK.
	Strict bool
	// Now is the clock; zero means time.Now().
	Now time.Time
	// Resolve looks a host name up; nil means net.DefaultResolver.
	Resolve func(ctx context.Context, host string) ([]net.IP, error)
	// Check connects to the management URL trusting only trust, as "agent
	// check" does; its error names the mistake. The CLI and the API pass
	// agent.Checker. Needed for Network.
	Check func(ctx context.Context, url string, trust agent.Trust) error
}

// resolveTimeout bounds the lookup of MANAGEMENT_PUBLIC_URL's host.
const resolveTimeout = 5 * time.Second

// maxListed caps the items one message names; the rest are counted.
const maxListed = 10

// Run runs every check and returns the report.
func Run(ctx context.Context, in Input) Report {
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	if in.Resolve == nil {
		in.Resolve = defaultResolve
	}
	e := newEnvWalking(ctx, in, true)
	checks := []func(context.Context, *env) Check{
		checkConfig,
		checkPermissions,
		checkLock,
		checkRestoreStaging,
		checkOrphans,
		checkMode,
		checkListen,
		checkProvidedFiles,
		checkPublicURL,
		checkPublicURLCovered,
		checkExtraHosts,
		checkCA,
		checkServerCertificate,
		checkChain,
		checkCABackup,
		checkNetwork,
		checkACMEAccount,
		checkCAA,
		checkWildcardChallenge,
		checkDNSCredential,
		checkChallengePorts,
		checkIPReachable,
		checkCoverage,
		checkExpiry,
		checkRenewalDue,
		checkLastRenewal,
		checkBackoff,
		checkServing,
		checkFallback,
		checkReplicas,
		checkStoreConnected,
	}
	r := Report{OK: true, Checks: make([]Check, 0, len(checks))}
	for _, f := range checks {
		c := f(ctx, e)
		if c.Status == Fail || (in.Strict && c.Status == Warn) {
			r.OK = false
		}
		r.Checks = append(r.Checks, c)
	}
	e.saveMemo()
	return r
}

func defaultResolve(ctx context.Context, host string) ([]net.IP, error) {
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, len(addrs))
	for i, a := range addrs {
		ips[i] = a.IP
	}
	return ips, nil
}

// Check ids. They are part of the JSON contract: scripts match on them.
const (
	IDConfig            = "state.config"
	IDPermissions       = "state.permissions"
	IDLock              = "state.lock"
	IDOrphans           = "state.orphans"
	IDMode              = "management.mode"
	IDListen            = "management.listen"
	IDProvidedFiles     = "management.provided_files"
	IDPublicURL         = "management.public_url"
	IDPublicURLCovered  = "management.public_url_covered"
	IDExtraHosts        = "management.extra_hosts"
	IDCA                = "management.ca"
	IDServerCertificate = "management.server_certificate"
	IDChain             = "management.chain"
	IDCABackup          = "management.ca_backup"
	IDNetwork           = "management.network"
	IDACMEAccount       = "acme.account"
	IDCAA               = "acme.caa"
	IDWildcardChallenge = "mappings.wildcard_challenge"
	IDDNSCredential     = "mappings.dns_credential"
	IDChallengePorts    = "mappings.challenge_ports"
	IDCoverage          = "mappings.coverage"
	IDExpiry            = "mappings.expiry"
	IDLastRenewal       = "mappings.last_renewal"
	IDListenersServing  = "listeners.serving"
	IDListenersFallback = "listeners.fallback"
	IDStoreReplicas     = "store.replicas"
	IDStoreConnected    = "store.connected"
)

func ok(id, format string, args ...any) Check {
	return Check{ID: id, Status: OK, Message: fmt.Sprintf(format, args...)}
}

func warn(id, hint, format string, args ...any) Check {
	return Check{ID: id, Status: Warn, Message: fmt.Sprintf(format, args...), Hint: hint}
}

func fail(id, hint, format string, args ...any) Check {
	return Check{ID: id, Status: Fail, Message: fmt.Sprintf(format, args...), Hint: hint}
}

// findings collects what one check found about many things (mappings,
// files), each a fail or a warning with its own hint, and turns them into
// one Check.
type findings struct {
	fails, warns []string
	hints        []string
	seenHint     map[string]bool
}

func (f *findings) fail(hint, format string, args ...any) {
	f.fails = append(f.fails, fmt.Sprintf(format, args...))
	f.hint(hint)
}

func (f *findings) warn(hint, format string, args ...any) {
	f.warns = append(f.warns, fmt.Sprintf(format, args...))
	f.hint(hint)
}

func (f *findings) hint(h string) {
	if h == "" {
		return
	}
	if f.seenHint == nil {
		f.seenHint = map[string]bool{}
	}
	if !f.seenHint[h] && len(f.hints) < 4 {
		f.seenHint[h] = true
		f.hints = append(f.hints, h)
	}
}

// check is the Check: fail when anything failed (warnings are then listed
// too), warn when anything warned, else ok with okMsg.
func (f *findings) check(id, okMsg string) Check {
	hint := strings.Join(f.hints, "; ")
	switch {
	case len(f.fails) > 0:
		return fail(id, hint, "%s", list(append(f.fails, f.warns...)))
	case len(f.warns) > 0:
		return warn(id, hint, "%s", list(f.warns))
	}
	return ok(id, "%s", okMsg)
}

// list joins items into one message, naming at most maxListed of them.
func list(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:maxListed], "; "), len(items)-maxListed)
}

// names joins names, at most maxListed of them.
func names(ns []string) string {
	if len(ns) <= maxListed {
		return strings.Join(ns, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ns[:maxListed], ", "), len(ns)-maxListed)
}

// plural writes "1 mapping" or "2 mappings".
func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
