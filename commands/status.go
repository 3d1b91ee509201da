package commands

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/runstatus"
)

func statusCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "status",
		Usage: "show what the running serve reports: listeners, reloads, fallback hits",
		Description: "Reads run/status.json, which serve rewrites within a second of a change.\n" +
			"serve_running is false when no serve runs (its pid is gone); the rest is then\n" +
			"what the last serve reported. Any fallback hit is a public deployment failure.\n" +
			"SERVED BY WILDCARD (served_by_wildcard) names hosts whose mapping has no usable\n" +
			"certificate yet, and the wildcard mapping that serves them meanwhile. panics\n" +
			"counts the panics serve recovered from; each is logged at ERROR.\n" +
			"ADDR and HTTP ADDR (addr, http_addr) are the configured addresses; bound_addr and\n" +
			"bound_http_addr are where serve binds them. A serve run with --listen-host\n" +
			"(listen_host) rebinds them onto that host, and the table adds BOUND ADDR and\n" +
			"BOUND HTTP ADDR.\n" +
			"ACME BACK-OFF (acme_backoff) counts the ACME mappings waiting after a failed\n" +
			"attempt, by reason (rate_limited: the server's Retry-After; account_paused:\n" +
			"until the account is unpaused; failed: any other error), with the earliest retry\n" +
			"and counted_at: while serve runs, the count of its last renewal pass (null until\n" +
			"its first one ends); without serve, status counts them itself, reading every\n" +
			"ACME mapping's metadata.\n\n" +
			"On a shared store (--store) every serve replica reports under its own name\n" +
			"(serve --replica-name) and status lists each one it can see (replicas): its\n" +
			"host, listen host, state (running: a heartbeat within three of its\n" +
			"heartbeat_seconds; stale: none since, it was killed or cannot reach the store;\n" +
			"stopped: it shut down), started_at, updated_at (its last heartbeat), listeners\n" +
			"with their own fallback hits, and store (connected, snapshot_age_seconds).\n" +
			"A replica silent for a day is no longer shown. The top-level fields are then\n" +
			"those of the freshest running replica; serve_running is whether any runs.",
	}, statusAction)
}

func statusAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	st, replicas, err := readStatus(ctx, g)
	if err != nil {
		return err
	}
	backoff, err := statusBackoff(ctx, g, st)
	if err != nil {
		g.Warnf("ACME back-offs not counted: %v", err)
	}
	if g.JSON() {
		return printJSON(g.Stdout, runstatus.Reported{Status: st, ACMEBackoff: backoff, Replicas: replicas})
	}
	if len(replicas) > 0 {
		if err := printReplicas(g, replicas); err != nil {
			return err
		}
		fmt.Fprintf(g.Stdout, "replica %s:\n", st.Replica)
	}
	if backoff != nil {
		defer printBackoff(g, *backoff)
	} else if err == nil {
		defer fmt.Fprintln(g.Stdout, "acme back-off: not counted yet (serve's first renewal pass is running)")
	}
	// Every line is what status is run for: --quiet keeps them all.
	out := func(format string, args ...any) { fmt.Fprintf(g.Stdout, format+"\n", args...) }
	if !st.ServeRunning {
		out("serve is not running")
		if st.PID == 0 {
			return nil
		}
		out("last report of pid %d:", st.PID)
	} else {
		out("serve is running as pid %d since %s", st.PID, st.StartedAt.Format(time.RFC3339))
	}
	if st.LastReloadError != "" {
		g.Warnf("the last state change was not applied: %s", st.LastReloadError)
	}
	if st.Panics > 0 {
		g.Warnf("serve recovered from %d panic(s) and kept serving; its log has each one at ERROR with the stack (a bug to report)", st.Panics)
	}
	// The last reload is how an operator sees that a change was (or was
	// not) applied: a row of its own, with the error in full.
	if err := printTable(g.Stdout, []string{"LAST RELOAD", "RELOADS", "RESULT"},
		[][]string{{reloadTime(st.LastReloadAt), fmt.Sprint(st.Reloads), reloadResult(st.LastReloadError)}}); err != nil {
		return err
	}
	if st.ListenHost != "" {
		out("listeners rebound onto %s (--listen-host)", st.ListenHost)
	}
	header, rows := listenerTable(st)
	if err := printTable(g.Stdout, header, rows); err != nil {
		return err
	}
	out("panics recovered: %d", st.Panics)
	return nil
}

// readStatus is the status to show: on a shared store, every replica's
// and the freshest running one's at the top; else run/status.json.
func readStatus(ctx context.Context, g *Globals) (*runstatus.Status, []runstatus.Replica, error) {
	replicas, err := runstatus.ReadReplicas(ctx, g.Store(), time.Now())
	if err != nil {
		return nil, nil, err
	}
	if st := runstatus.Summary(replicas); st != nil {
		return st, replicas, nil
	}
	st, err := runstatus.Read(ctx, g.Store())
	return st, replicas, err
}

// printReplicas is the table of the replicas of a shared store, with a
// warning for each one that is stale or serves its snapshot.
func printReplicas(g *Globals, replicas []runstatus.Replica) error {
	rows := make([][]string, 0, len(replicas))
	for _, r := range replicas {
		listeners := make([]string, 0, len(r.Listeners))
		var hits int64
		for _, l := range r.Listeners {
			up := l.BoundAddr
			if !l.Listening {
				up += " (down)"
			}
			listeners = append(listeners, l.Name+"="+up)
			hits += l.FallbackTotal
		}
		rows = append(rows, []string{r.Replica, r.Host, orDash(r.ListenHost), r.State, r.StartedAt.Format(time.RFC3339),
			r.UpdatedAt.Format(time.RFC3339), strings.Join(listeners, " "), fmt.Sprint(hits), storeSummary(r.Store)})
		switch {
		case r.State == runstatus.ReplicaStale:
			g.Warnf("replica %s sent no heartbeat since %s: it was killed, its host is down or it cannot reach the store", r.Replica, r.UpdatedAt.Format(time.RFC3339))
		case r.State == runstatus.ReplicaRunning && r.Store != nil && !r.Store.Connected:
			g.Warnf("replica %s cannot reach the store and serves its snapshot, %ds old: changes made meanwhile do not reach it", r.Replica, r.Store.SnapshotAgeSeconds)
		}
	}
	return printTable(g.Stdout, []string{"REPLICA", "HOST", "LISTEN HOST", "STATE", "STARTED", "LAST HEARTBEAT", "LISTENERS", "FALLBACK HITS", "STORE"}, rows)
}

// storeSummary is a replica's view of the shared store.
func storeSummary(h *runstatus.StoreHealth) string {
	switch {
	case h == nil:
		return "-"
	case !h.Connected:
		return fmt.Sprintf("unreachable, serving a snapshot %ds old", h.SnapshotAgeSeconds)
	case !h.Current:
		return fmt.Sprintf("connected, snapshot %ds behind", h.SnapshotAgeSeconds)
	}
	return "connected"
}

// listenerTable is the header and rows of the listeners; the bound
// addresses are columns of their own when serve rebound them.
func listenerTable(st *runstatus.Status) ([]string, [][]string) {
	rebound := st.ListenHost != ""
	header := []string{"LISTENER", "ADDR", "HTTP ADDR"}
	if rebound {
		header = append(header, "BOUND ADDR", "BOUND HTTP ADDR")
	}
	header = append(header, "STATE", "MAPPINGS", "FALLBACK HITS", "SERVED BY WILDCARD")
	rows := make([][]string, 0, len(st.Listeners))
	for _, l := range st.Listeners {
		state := "listening"
		if !l.Listening {
			state = "down: " + l.Error
		}
		row := []string{l.Name, l.Addr, orDash(l.HTTPAddr)}
		if rebound {
			row = append(row, l.BoundAddr, orDash(l.BoundHTTPAddr))
		}
		rows = append(rows, append(row, state, fmt.Sprint(l.Mappings), fallbackSummary(l.FallbackHits), wildcardSummary(l.ServedByWildcard)))
	}
	return header, rows
}

// wildcardSummary lists "host=wildcard-mapping" for hosts whose mapping has
// no usable certificate and that a wildcard mapping served instead.
func wildcardSummary(by map[string]string) string {
	if len(by) == 0 {
		return "none"
	}
	hosts := make([]string, 0, len(by))
	for h := range by {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for i, h := range hosts {
		hosts[i] = h + "=" + by[h]
	}
	return strings.Join(hosts, " ")
}

// fallbackSummary lists SNI names by hits, most first.
func fallbackSummary(hits map[string]int64) string {
	if len(hits) == 0 {
		return "none"
	}
	return strings.Join(runstatus.FallbackList(hits), " ")
}

// reloadTime is when serve last applied a change of the state; "none
// since start" while it serves what it loaded at start.
func reloadTime(at time.Time) string {
	if at.IsZero() {
		return "none since start"
	}
	return at.Format(time.RFC3339)
}

// reloadResult is "ok", or why the last change was not applied.
func reloadResult(err string) string {
	if err == "" {
		return "ok"
	}
	return "failed: " + err
}

// statusBackoff is the ACME back-off count to show. While serve runs, it is
// the count of serve's last renewal pass (runstatus.BackoffFile), which
// read every ACME meta anyway: status reads one small file, at any number
// of mappings. Without serve (cron's "cert renew" records back-offs too),
// status counts them itself from every ACME mapping's meta: a second or so
// of CPU at 100k mappings, paid only then. nil while a running serve has
// not counted yet, or when the state does not load (err): the serve status
// is still wanted.
func statusBackoff(ctx context.Context, g *Globals, st *runstatus.Status) (*runstatus.Backoff, error) {
	if st.ServeRunning {
		return runstatus.ServeBackoff(ctx, g.Store(), st)
	}
	cfg, err := state.LoadConfig(ctx, g.Store())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	b, err := mappings.Backoffs(ctx, g.Store(), cfg, now)
	if err != nil {
		return nil, err
	}
	return &runstatus.Backoff{Backoff: b, CountedAt: now.UTC()}, nil
}

// printBackoff is the line of the ACME mappings backing off, by reason.
func printBackoff(g *Globals, b runstatus.Backoff) {
	if b.Total() == 0 {
		fmt.Fprintf(g.Stdout, "acme back-off: none (counted %s)\n", b.CountedAt.Format(time.RFC3339))
		return
	}
	fmt.Fprintf(g.Stdout, "acme back-off: %d rate limited, %d account paused, %d failed; earliest retry %s (counted %s)\n",
		b.RateLimited, b.AccountPaused, b.Failed, b.EarliestRetryAt.Format(time.RFC3339), b.CountedAt.Format(time.RFC3339))
	if b.AccountPaused > 0 {
		g.Warnf("%d mapping(s) wait for the ACME account to be unpaused: 'p2ptls doctor' lists them with the link", b.AccountPaused)
	}
}
