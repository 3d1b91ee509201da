package commands

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/backup"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/storecopy"
)

const (
	flgFrom = "from"
	flgTo   = "to"
)

func storeCommand() *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "the store that holds the state: a directory or etcd",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "copy",
				Usage:     "copy the whole state, management CA included, from one store to another",
				ArgsUsage: "--from DIR|URL --to DIR|URL [--dry-run] [--force] [--allow-missing-management-ca]",
				Description: "Each side is a state directory (relative paths are taken from the working\n" +
					"directory, as for --config-dir) or a store URL (etcd://HOST:PORT[,HOST:PORT…]/PREFIX).\n" +
					"The copy is a backup of the source, taken under its lock, streamed into a restore\n" +
					"of the destination: the same checks and refusals as 'p2ptls restore', and the\n" +
					"destination's whole content replaced in one step. It leaves out what a backup\n" +
					"leaves out (run/, the lock, the journal). Every file of the destination is then\n" +
					"read back and its SHA-256 and mode compared with the source's; a difference fails\n" +
					"the copy and names the file. The destination must hold no state unless --force,\n" +
					"which keeps its old state aside and says where. --dry-run reads and checks\n" +
					"everything and writes nothing. The source is only read." + examples(
					"p2ptls store copy --from /var/lib/p2ptls --to /srv/p2ptls-new",
					"p2ptls store copy --from /var/lib/p2ptls --to /srv/p2ptls --dry-run",
					"p2ptls store copy --from ./state --to /var/lib/p2ptls --force --output json"),
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgFrom, Usage: "the store to copy from: a state directory or a store URL"},
					&cli.StringFlag{Name: flgTo, Usage: "the store to copy to: a state directory or a store URL"},
					&cli.BoolFlag{Name: flgDryRun, Usage: "read and check the whole copy and say what it would do, writing nothing"},
					&cli.BoolFlag{Name: flgForce, Usage: "replace a destination that holds a state (its old state is kept aside)"},
					&cli.BoolFlag{Name: flgAllowMissingCA, Usage: "copy a state without a management CA; every agent must then be given the new CA"},
				},
			}, storeCopyAction),
		},
	}
}

func storeCopyAction(ctx context.Context, g *Globals, c *cli.Context) (err error) {
	if err := noArgs(c); err != nil {
		return err
	}
	sides := [2]storecopy.Side{}
	for i, name := range []string{flgFrom, flgTo} {
		spec := c.String(name)
		if spec == "" {
			return fault.Invalidf(fmt.Sprintf("give --%s DIR|URL, e.g. p2ptls store copy --from /var/lib/p2ptls --to /srv/p2ptls", name), "store copy needs --%s", name)
		}
		s, closeStore, err := openStore(ctx, g, spec)
		if err != nil {
			return fmt.Errorf("--%s: %w", name, err)
		}
		defer func() { err = errors.Join(err, closeStore()) }()
		sides[i] = storecopy.Side{Name: storeName(s, spec), Store: s}
	}
	res, err := storecopy.Copy(ctx, sides[0], sides[1], storecopy.Options{
		DryRun: c.Bool(flgDryRun), Force: c.Bool(flgForce), AllowMissingCA: c.Bool(flgAllowMissingCA),
		Version: Version(), Now: time.Now(),
	})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		g.Warnf("%s", w)
	}
	if res.CA == backup.CADifferent {
		g.Warnf("the copied management CA is not the one the destination had: every agent of the destination must be given it ('p2ptls agent env')")
	}
	if res.DryRun && res.ReplacesState && !c.Bool(flgForce) {
		g.Warnf("%s holds a state: a copy needs --force (its state is then kept aside)", res.To)
	}
	if g.JSON() {
		return printJSON(g.Stdout, res)
	}
	if g.Quiet && !res.DryRun {
		return nil
	}
	if res.DryRun {
		g.Infof("dry run: the copy from %s to %s would carry %d files; nothing was written", res.From, res.To, res.Files)
	} else {
		g.Infof("copied %d files from %s to %s and read every one back: SHA-256 and mode match", res.Files, res.From, res.To)
	}
	ca := res.CAFingerprintSHA256
	if ca == "" {
		ca = "none"
	}
	if err := printTable(g.Stdout, []string{"FROM", "TO", "FILES", "BYTES", "MANAGEMENT CA"},
		[][]string{{res.From, res.To, fmt.Sprint(res.Files), fmt.Sprint(res.Bytes), ca}}); err != nil {
		return err
	}
	if res.PreviousState != "" {
		g.Infof("the destination's previous state is kept in %s; remove it when you no longer need it", res.PreviousState)
	}
	return nil
}

// storeName names a store in messages: a directory by its absolute path,
// any other store by its URL, without a password.
func storeName(s state.Store, spec string) string {
	if l, ok := s.(state.Local); ok {
		return l.Root()
	}
	if u, err := url.Parse(spec); err == nil {
		return u.Redacted()
	}
	return spec
}
