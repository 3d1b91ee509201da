package commands

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/issuance"
	"github.com/p2pstream/p2ptls/state/mappings"
)

const (
	flgAll   = "all"
	flgForce = "force"
)

const (
	flgDryRun        = "dry-run"
	flgDeployHook    = "deploy-hook"
	flgHookTimeout   = "deploy-hook-timeout"
	flgNoRandomSleep = "no-random-sleep"
	flgDNSResolvers  = "dns-resolvers"
	flgConcurrency   = "concurrency"
)

// maxRandomSleep spreads cron renewals of many installations over time.
const maxRandomSleep = 5 * time.Minute

func resolversFlag() cli.Flag {
	return &cli.StringFlag{Name: flgDNSResolvers, Usage: "HOST:PORT,… resolvers that check DNS-01 propagation (default: acme.dns_resolvers, then the system's)", EnvVars: []string{"P2PTLS_DNS_RESOLVERS"}}
}

func concurrencyFlag() cli.Flag {
	return &cli.IntFlag{Name: flgConcurrency, Usage: fmt.Sprintf("ACME orders at once, 1 to %d (default: acme.concurrency, else %d)", acme.MaxConcurrency, acme.DefaultConcurrency)}
}

func certCommand() *cli.Command {
	return &cli.Command{
		Name:  "cert",
		Usage: "public certificates: issue, renew, list, inspect",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "issue",
				Usage:     "obtain (ACME) or generate (self-signed) certificates now",
				ArgsUsage: "ID... | --all",
				Description: "Named mappings are issued whether or not they are due, and while they back off\n" +
					"(with a warning when the ACME server rate-limited them or paused the account).\n" +
					"--all takes every ACME and self-signed mapping without a valid certificate that\n" +
					"is not backing off after a failed attempt, or every one with --force.\n" +
					"Challenges are published in acme/challenges/; a running serve answers them,\n" +
					"otherwise this command binds the listener's address itself for the validation.\n\n" +
					"ACME orders run --concurrency at a time (default: acme.concurrency, else 8),\n" +
					"each outside the state lock under its mapping's claim: a mapping that another\n" +
					"process (serve, cron) is issuing is skipped, not ordered twice." + examples(
					"p2ptls cert issue app-example-com",
					"p2ptls cert issue --all",
					"p2ptls cert issue --all --force --dns-resolvers 1.1.1.1:53,8.8.8.8:53"),
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: flgAll, Usage: "every ACME and self-signed mapping that needs a certificate"},
					&cli.BoolFlag{Name: flgForce, Usage: "with --all: every one, valid or backing off or not"},
					resolversFlag(),
					concurrencyFlag(),
				},
			}, certIssueAction),
			leaf(&cli.Command{
				Name:  "renew",
				Usage: "renew the ACME certificates that are due (the cron entry point)",
				Description: "Due means inside the ACME server's renewal window (ARI) when it offers one, else\n" +
					"less than a third of the lifetime left (half for lifetimes of 10 days or less),\n" +
					"or fewer than --days days left. Failed mappings back off (5 min, doubling, at\n" +
					"most a day) and keep their certificate serving. When stdin is not a terminal\n" +
					"(cron) and a certificate is due, it first sleeps a random time of up to 5\n" +
					"minutes; a run with nothing due, or --dry-run, ends at once. Monitoring\n" +
					"scripts that run it by hand pass --no-random-sleep.\n\n" +
					"The deploy hook (--deploy-hook, else acme.deploy_hook in p2ptls.toml) runs with\n" +
					"/bin/sh once per renewed mapping, after the state lock is released (it may run\n" +
					"p2ptls itself), with P2PTLS_MAPPING_ID, P2PTLS_LISTENER, P2PTLS_HOSTS (space-\n" +
					"separated), P2PTLS_CERT_FILE, P2PTLS_KEY_FILE and CONFIG_DIR set. It is stopped\n" +
					"(SIGTERM to its process group, SIGKILL 5 s later) after --deploy-hook-timeout\n" +
					"(else acme.deploy_hook_timeout, else 5m); its output goes to the log. A hook\n" +
					"that fails leaves the renewal done. Orders run --concurrency at a time (default:\n" +
					"acme.concurrency, else 8); hooks run one at a time.\n\n" +
					"Exit status 1 when any mapping failed, or its deploy hook did." + examples(
					"p2ptls cert renew --quiet --deploy-hook 'systemctl reload p2pstream'",
					"p2ptls cert renew --dry-run --no-random-sleep",
					"p2ptls cert renew --days 30 --no-random-sleep --output json"),
				Flags: []cli.Flag{
					&cli.IntFlag{Name: flgDays, Usage: "renew certificates with fewer days left (overrides ARI and the lifetime rule)"},
					&cli.BoolFlag{Name: flgDryRun, Usage: "say what is due without renewing"},
					&cli.BoolFlag{Name: flgForce, Usage: "renew every ACME certificate now, ignoring back-off"},
					&cli.StringFlag{Name: flgDeployHook, Usage: "shell command run after each successful renewal (default: acme.deploy_hook)"},
					&cli.DurationFlag{Name: flgHookTimeout, Usage: "stop the deploy hook after this long (default: acme.deploy_hook_timeout, else 5m)"},
					&cli.BoolFlag{Name: flgNoRandomSleep, Usage: "do not sleep a random time before the first renewal (for monitoring scripts)"},
					resolversFlag(),
					concurrencyFlag(),
				},
			}, certRenewAction),
			leaf(&cli.Command{Name: "list", Usage: "list certificates and their status"}, mappingListAction),
			leaf(&cli.Command{Name: "show", Usage: "show one mapping's certificate", ArgsUsage: "ID"}, certShowAction),
			leaf(&cli.Command{Name: "inspect", Usage: "describe a PEM certificate (chain) file", ArgsUsage: "FILE"}, certInspectAction),
		},
	}
}

// acmeOptions reads the options issuance shares.
func acmeOptions(c *cli.Context) (acme.Options, error) {
	var resolvers []string
	for _, r := range strings.Split(c.String(flgDNSResolvers), ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(r); err != nil {
			return acme.Options{}, fault.Invalidf("write resolvers as HOST:PORT, e.g. 1.1.1.1:53", "DNS resolver %q is not HOST:PORT", r)
		}
		resolvers = append(resolvers, r)
	}
	n := c.Int(flgConcurrency)
	if c.IsSet(flgConcurrency) && (n < 1 || n > acme.MaxConcurrency) {
		return acme.Options{}, fault.Invalidf(fmt.Sprintf("give a number of orders from 1 to %d, e.g. --concurrency %d", acme.MaxConcurrency, acme.DefaultConcurrency),
			"--concurrency %d is not between 1 and %d", n, acme.MaxConcurrency)
	}
	return acme.Options{Log: slog.Default(), DNSResolvers: resolvers, Concurrency: n}, nil
}

func certIssueAction(ctx context.Context, g *Globals, c *cli.Context) error {
	ids := c.Args().Slice()
	if c.Bool(flgAll) == (len(ids) > 0) {
		return fault.Invalidf(fmt.Sprintf("run '%s --help' for usage", c.Command.HelpName), "%s needs mapping ids or --all, not both", c.Command.HelpName)
	}
	if c.Bool(flgForce) && !c.Bool(flgAll) {
		return fault.Invalidf("named mappings are always issued; drop --force", "--force only applies to --all")
	}
	opts, err := acmeOptions(c)
	if err != nil {
		return err
	}
	store := g.Store()
	ids, skipped, err := issuance.Select(ctx, store, issuance.Selection{IDs: ids, All: c.Bool(flgAll), Force: c.Bool(flgForce)}, time.Now())
	if err != nil {
		return err
	}
	for _, skip := range skipped {
		slog.Debug("not issued", "mapping", skip.ID, "why", skip.Reason)
	}
	res, err := issuance.Run(ctx, store, ids, time.Now, issuance.Options{ACME: opts}, func(id string, err error) {
		switch {
		case g.JSON():
		case err == nil:
			g.Infof("issued a new certificate for mapping %s", id)
		case acme.Busy(err) && len(ids) > 1:
			g.Infof("skipped mapping %s: another process is issuing it", id)
		case len(ids) > 1: // one mapping's error is the command's
			report(g.Stderr, err)
		}
	})
	if err != nil {
		return err
	}
	if g.JSON() {
		if err := printJSON(g.Stdout, res); err != nil {
			return err
		}
	}
	return res.Err()
}

func certRenewAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	opts, err := acmeOptions(c)
	if err != nil {
		return err
	}
	if c.Int(flgDays) < 0 {
		return fault.Invalidf("give a number of days, e.g. --days 30", "--days must not be negative")
	}
	hookTimeout := c.Duration(flgHookTimeout)
	if c.IsSet(flgHookTimeout) && (hookTimeout < time.Second || hookTimeout > 24*time.Hour) {
		return fault.Invalidf("give a duration between 1s and 24h, e.g. --deploy-hook-timeout 5m", "--deploy-hook-timeout %s is not between 1s and 24h", hookTimeout)
	}
	report, err := acme.Renew(ctx, g.Store(), time.Now, acme.RenewOptions{
		Options: opts, Days: c.Int(flgDays), DryRun: c.Bool(flgDryRun), Force: c.Bool(flgForce), RunEvery: acme.TimerInterval,
		DeployHook: c.String(flgDeployHook), DeployHookTimeout: hookTimeout,
		BeforeRenewal: randomSleep(c.Bool(flgNoRandomSleep), isTerminal(os.Stdin), sleepRandom),
	})
	if err != nil {
		return err
	}
	if g.JSON() {
		if err := printJSON(g.Stdout, report); err != nil {
			return err
		}
	} else if !g.Quiet || report.DryRun { // a dry run's table is what was asked for
		rows := [][]string{}
		for _, group := range []struct {
			what string
			ids  []string
		}{{"renewed", report.Renewed}, {"failed", report.Failed}, {"skipped", report.Skipped}} {
			what := group.what
			if report.DryRun && what == "renewed" {
				what = "due"
			}
			for _, id := range group.ids {
				detail := report.Reasons[id]
				if e := report.Errors[id]; e != "" {
					detail = e
				}
				rows = append(rows, []string{id, what, detail})
			}
		}
		if err := printTable(g.Stdout, []string{"MAPPING", "RESULT", "DETAIL"}, rows); err != nil {
			return err
		}
	}
	if len(report.Failed) > 0 {
		return fault.Failf("'p2ptls cert list' shows each one's last error; the previous certificates keep serving",
			"%d mapping(s) failed to renew: %s", len(report.Failed), strings.Join(report.Failed, ", "))
	}
	if len(report.HookFailed) > 0 {
		return fault.Failf("the new certificates are in place and served; fix the hook (its output is in the log above) and run it by hand",
			"the deploy hook failed for %d renewed mapping(s): %s", len(report.HookFailed), strings.Join(report.HookFailed, ", "))
	}
	return nil
}

// randomSleep is cert renew's wait before its first renewal: cron's
// random delay, which spreads the renewals of many installations on the
// ACME server. Renew calls it only when something is due and it is not a
// dry run; --no-random-sleep or a terminal on stdin (a person waiting)
// leave it out.
func randomSleep(noRandomSleep, terminal bool, sleep func(context.Context, time.Duration) error) func(context.Context) error {
	if noRandomSleep || terminal {
		return nil
	}
	return func(ctx context.Context) error {
		return sleep(ctx, time.Duration(rand.Int64N(int64(maxRandomSleep))))
	}
}

// sleepRandom waits d, or until ctx ends.
func sleepRandom(ctx context.Context, d time.Duration) error {
	slog.Info("sleeping before renewal to spread load on the ACME server (--no-random-sleep skips this)", "for", d.Round(time.Second).String())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func certShowAction(ctx context.Context, g *Globals, c *cli.Context) error {
	id, err := oneArg(c, "ID")
	if err != nil {
		return err
	}
	cfg, err := state.LoadConfig(ctx, g.Store())
	if err != nil {
		return err
	}
	info, details, err := mappings.Show(ctx, g.Store(), cfg, id, time.Now())
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, struct {
			mappings.Info
			Certificate *mappings.Details `json:"certificate"`
		}{info, details})
	}
	fields := [][2]string{
		{"id", info.ID}, {"listener", info.Listener}, {"hosts", strings.Join(info.Hosts, ", ")},
		{"source", info.Source}, {"status", info.Status},
	}
	if info.Profile != "" {
		fields = append(fields, [2]string{"profile", info.Profile})
	}
	if info.Upstream != "" {
		fields = append(fields, [2]string{"upstream", info.Upstream})
	}
	if info.ServedBy != "" {
		fields = append(fields, [2]string{"served by", info.ServedBy + " (meanwhile, a wildcard mapping with a certificate)"})
	}
	if info.LastError != "" {
		fields = append(fields, [2]string{"last error", info.LastError})
	}
	if info.ARIWindowStart != nil && info.ARIWindowEnd != nil {
		fields = append(fields, [2]string{"ARI window", info.ARIWindowStart.Format(time.RFC3339) + " to " + info.ARIWindowEnd.Format(time.RFC3339)})
	}
	if info.ARIExplanationURL != "" {
		fields = append(fields, [2]string{"ARI explanation", info.ARIExplanationURL})
	}
	if info.BackoffReason != "" && info.RetryAt != nil {
		fields = append(fields, [2]string{"backing off", info.BackoffReason + " until " + info.RetryAt.Format(time.RFC3339)})
	}
	if info.LastErrorDetail != "" && info.LastErrorDetail != info.LastError {
		// The full text, one identifier's problem a line, indented.
		fields = append(fields, [2]string{"error detail", strings.ReplaceAll(info.LastErrorDetail, "\n", "\n  ")})
	}
	if err := printFields(g.Stdout, append(fields, detailFields(details)...)); err != nil {
		return err
	}
	return nil
}

func certInspectAction(ctx context.Context, g *Globals, c *cli.Context) error {
	file, err := oneArg(c, "FILE")
	if err != nil {
		return err
	}
	b, err := mappings.ReadPEM(file)
	if err != nil {
		return err
	}
	d, err := mappings.Inspect(b, time.Now())
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if g.JSON() {
		return printJSON(g.Stdout, d)
	}
	return printFields(g.Stdout, detailFields(d))
}

// detailFields lays out a certificate for people.
func detailFields(d *mappings.Details) [][2]string {
	if d == nil {
		return [][2]string{{"certificate", "none"}}
	}
	fields := [][2]string{
		{"subject", d.Subject},
		{"names", strings.Join(append(append([]string{}, d.DNSNames...), d.IPAddresses...), ", ")},
		{"issuer", d.Issuer},
		{"serial", d.Serial},
		{"key type", d.KeyType},
		{"SHA-256", d.FingerprintSHA256},
		{"valid", d.NotBefore.Format(time.RFC3339) + " to " + d.NotAfter.Format(time.RFC3339)},
		{"status", d.Status},
	}
	for i, c := range d.Chain[min(1, len(d.Chain)):] {
		fields = append(fields, [2]string{fmt.Sprintf("chain %d", i+1), c.Subject + " (issuer " + c.Issuer + ")"})
	}
	return fields
}
