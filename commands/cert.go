package commands

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
)

const (
	flgAll   = "all"
	flgForce = "force"
)

func certCommand() *cli.Command {
	return &cli.Command{
		Name:  "cert",
		Usage: "public certificates: issue, renew, list, inspect",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "issue",
				Usage:     "generate self-signed certificates again now (ACME issuance: not available yet)",
				ArgsUsage: "ID... | --all",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: flgAll, Usage: "every mapping"},
					&cli.BoolFlag{Name: flgForce, Usage: "also certificates that are not due"},
				},
			}, certIssueAction),
			pending("renew", "renew what is due (the cron entry point)", "[--days N] [--dry-run] [--deploy-hook CMD]"),
			leaf(&cli.Command{Name: "list", Usage: "list certificates and their status"}, mappingListAction),
			leaf(&cli.Command{Name: "show", Usage: "show one mapping's certificate", ArgsUsage: "ID"}, certShowAction),
			leaf(&cli.Command{Name: "inspect", Usage: "describe a PEM certificate (chain) file", ArgsUsage: "FILE"}, certInspectAction),
		},
	}
}

func certIssueAction(ctx context.Context, g *Globals, c *cli.Context) error {
	ids := c.Args().Slice()
	if c.Bool(flgAll) == (len(ids) > 0) {
		return fault.Invalidf(fmt.Sprintf("run '%s --help' for usage", c.Command.HelpName), "%s needs mapping ids or --all, not both", c.Command.HelpName)
	}
	if c.Bool(flgAll) {
		cfg, err := state.LoadConfig(g.Store())
		if err != nil {
			return err
		}
		for _, m := range cfg.Mappings {
			if m.Source == state.SourceSelfSigned {
				ids = append(ids, m.ID)
			}
		}
	}
	for _, id := range ids {
		if err := mappings.Regenerate(ctx, g.Store(), id, time.Now()); err != nil {
			return err
		}
		g.Infof("issued a new certificate for mapping %s", id)
	}
	return nil
}

func certShowAction(_ context.Context, g *Globals, c *cli.Context) error {
	id, err := oneArg(c, "ID")
	if err != nil {
		return err
	}
	cfg, err := state.LoadConfig(g.Store())
	if err != nil {
		return err
	}
	info, details, err := mappings.Show(g.Store(), cfg, id, time.Now())
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
	if info.Upstream != "" {
		fields = append(fields, [2]string{"upstream", info.Upstream})
	}
	if info.LastError != "" {
		fields = append(fields, [2]string{"last error", info.LastError})
	}
	if err := printFields(g.Stdout, append(fields, detailFields(details)...)); err != nil {
		return err
	}
	return nil
}

func certInspectAction(_ context.Context, g *Globals, c *cli.Context) error {
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
