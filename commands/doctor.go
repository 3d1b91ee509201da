package commands

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/olekukonko/tablewriter/pkg/twwidth"
	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/doctor"
	"github.com/p2pstream/p2ptls/state/fault"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

const (
	flgStrict  = "strict"
	flgNetwork = "network"
)

func doctorCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "doctor",
		Usage:     "check for the common deployment mistakes; exit 1 on a failure",
		ArgsUsage: "[--strict] [--network [--dns-resolvers HOST:PORT,…]]",
		Description: "Checks the state directory and the management settings (read from the same\n" +
			"environment as serve: MANAGEMENT_TLS_MODE, MANAGEMENT_PUBLIC_URL,\n" +
			"MANAGEMENT_TLS_EXTRA_HOSTS, …) for the mistakes that break a deployment: a\n" +
			"public URL agents cannot reach or the certificate does not cover, extra hosts\n" +
			"missing from the certificate, mode off, provided files that do not load, a\n" +
			"management CA the last backup does not hold, wildcards without DNS-01, missing\n" +
			"or disabled DNS credentials, challenge ports, hosts no certificate covers,\n" +
			"expired or unrenewed certificates, failed renewals, fallback handshakes of a\n" +
			"running serve, loose file modes and a stale lock. Every check prints its id,\n" +
			"status (ok, warn, fail), a message and, unless ok, a hint that names the fix.\n" +
			"It only reads. --network also connects to MANAGEMENT_PUBLIC_URL as an agent\n" +
			"does ('p2ptls agent check'), trusting only the management CA, and looks up the\n" +
			"CAA records of every ACME host (at most 32 at once, 60 s in all) with the\n" +
			"DNS-01 resolvers (--dns-resolvers, acme.dns_resolvers, else the system's): the\n" +
			"CA of the account must be allowed, with its accounturi and the mapping's\n" +
			"challenge in validationmethods where those are given. With --quiet only\n" +
			"the checks that are not ok are printed. Exit 1 when a check fails, or with\n" +
			"--strict when one warns.",
		Flags: append(append([]cli.Flag{
			&cli.BoolFlag{Name: flgStrict, Usage: "exit 1 on warnings too"},
			&cli.BoolFlag{Name: flgNetwork, Usage: "also connect to MANAGEMENT_PUBLIC_URL as an agent does, and look up the ACME hosts' CAA records"},
			resolversFlag(),
			&cli.StringFlag{Name: flgListen, Usage: "management listen address HOST:PORT", Value: statemgmt.DefaultListen, EnvVars: []string{"MANAGEMENT_LISTEN"}},
		}, modeFlags()...), namesFlags()...),
	}, doctorAction)
}

func doctorAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	// Settings serve would refuse are what doctor reports, as failing
	// checks: the validation error is not returned here.
	set, _ := managementSettings(c)
	strict := c.Bool(flgStrict)
	opts, err := acmeOptions(c)
	if err != nil {
		return err
	}
	rep := doctor.Run(ctx, doctor.Input{
		Store:    g.Store(),
		Settings: set,
		Network:  c.Bool(flgNetwork),
		Strict:   strict,
		// Where CAA is looked up: the resolvers DNS-01 uses.
		DNSResolvers: opts.DNSResolvers,
		Now:          time.Now(),
		Check:        agent.Checker(agentTimeout),
	})
	if g.JSON() {
		if err := printJSON(g.Stdout, rep); err != nil {
			return err
		}
	} else if err := printDoctor(g, rep); err != nil {
		return err
	}
	problems := rep.Problems(strict)
	if len(problems) == 0 {
		return nil
	}
	ids := make([]string, len(problems))
	for i, p := range problems {
		ids[i] = p.ID
	}
	what := "failed"
	if strict && rep.Count(doctor.Warn) > 0 {
		what = "failed or warned (--strict)"
	}
	n := fmt.Sprintf("%d checks", len(problems))
	if len(problems) == 1 {
		n = "1 check"
	}
	return fault.Failf("each check's hint names the fix; run 'p2ptls doctor' again afterwards",
		"%s %s: %s", n, what, strings.Join(ids, ", "))
}

// doctorWidth is the widest line doctor's table prints: it must read in an
// 100-column terminal and in a mail from cron.
const doctorWidth = 100

// printDoctor writes the report as a table for people: one row per check,
// its message wrapped to fit doctorWidth, and under each one that is not
// ok its hint, on lines of its own.
func printDoctor(g *Globals, rep doctor.Report) error {
	var shown []doctor.Check
	statusW, checkW := len("STATUS"), len("CHECK")
	for _, ch := range rep.Checks {
		if g.Quiet && ch.Status == doctor.OK {
			continue
		}
		shown = append(shown, ch)
		statusW, checkW = max(statusW, len(ch.Status)), max(checkW, twwidth.Width(ch.ID))
	}
	// Each column is padded by a space on either side.
	msgW := max(doctorWidth-statusW-checkW-3*2, 30)
	rows := make([][]string, 0, 2*len(shown))
	for _, ch := range shown {
		status := string(ch.Status)
		if ch.Status != doctor.OK {
			status = strings.ToUpper(status)
		}
		for i, line := range wrap(ch.Message, msgW) {
			if i == 0 {
				rows = append(rows, []string{status, ch.ID, line})
			} else {
				rows = append(rows, []string{"", "", line})
			}
		}
		if ch.Status != doctor.OK && ch.Hint != "" {
			for _, line := range wrap("hint: "+ch.Hint, msgW) {
				rows = append(rows, []string{"", "", line})
			}
		}
	}
	if len(rows) > 0 {
		if err := printTable(g.Stdout, []string{"STATUS", "CHECK", "MESSAGE"}, rows); err != nil {
			return err
		}
	}
	g.Infof("%d ok, %d warnings, %d failures", rep.Count(doctor.OK), rep.Count(doctor.Warn), rep.Count(doctor.Fail))
	return nil
}

// wrap breaks s into lines of at most width display columns at spaces; a
// word longer than a line (a path, a URL) is cut where the line ends.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		for twwidth.Width(word) > width {
			if line != "" {
				lines, line = append(lines, line), ""
			}
			head := cutWidth(word, width)
			lines, word = append(lines, head), word[len(head):]
		}
		switch {
		case line == "":
			line = word
		case twwidth.Width(line)+1+twwidth.Width(word) <= width:
			line += " " + word
		default:
			lines, line = append(lines, line), word
		}
	}
	if line != "" || len(lines) == 0 {
		lines = append(lines, line)
	}
	return lines
}

// cutWidth returns the longest prefix of s, whole runes, at most width
// display columns wide.
func cutWidth(s string, width int) string {
	w := 0
	for i, r := range s {
		if w += twwidth.Width(string(r)); w > width {
			return s[:i]
		}
	}
	return s
}
