package commands

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/hosttrust"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// Flags of 'ca trust'.
const (
	flgSystem = "system"
	flgNSSDB  = "nss-db"
)

func caTrustCommand() *cli.Command {
	flags := func() []cli.Flag {
		return []cli.Flag{
			&cli.BoolFlag{Name: flgSystem, Usage: "the system trust store (Debian, Ubuntu: update-ca-certificates; needs root)"},
			&cli.StringSliceFlag{Name: flgNSSDB, Usage: "an NSS database directory (Chromium: ~/.pki/nssdb; Firefox: its profile directory), repeatable"},
		}
	}
	const stores = "Without --system or --nss-db it changes the NSS database of Chromium (and\n" +
		"Chrome) on Linux, ~/.pki/nssdb, and nothing else; with either, exactly the stores\n" +
		"named. NSS databases are changed with certutil (apt-get install libnss3-tools),\n" +
		"the system store by a file in /usr/local/share/ca-certificates and\n" +
		"update-ca-certificates. Entries are named by the CA's SHA-256 fingerprint\n" +
		"(nickname 'p2ptls management CA <hex>', file p2ptls-management-ca-<hex>.crt), so\n" +
		"the CAs of other installations are never touched. A running browser may need a\n" +
		"restart to see the change."
	return &cli.Command{
		Name:  "trust",
		Usage: "make this machine's browsers and system trust the management CA, or stop",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:  "install",
				Usage: "add the management CA (during a rotation both CAs) to this machine's trust stores",
				Description: "Adds the CA that agents trust ('p2ptls ca export'): during a rotation both CAs of\n" +
					"the bundle, so the browser keeps trusting management through switch and\n" +
					"finish. CAs this state retired (replaced, or rotated out) are removed from the\n" +
					"same stores. What is there already is left alone: running it twice is running\n" +
					"it once. Only auto mode has a management CA; provided and off are refused.\n\n" +
					stores + examples(
					"p2ptls ca trust install",
					"sudo p2ptls ca trust install --system",
					"p2ptls ca trust install --nss-db ~/.mozilla/firefox/abcd1234.default-release"),
				Flags: append(flags(),
					// The mode alone: what the other modes would serve is not
					// this command's business, only that they have no CA.
					&cli.StringFlag{Name: flgTLSMode, Usage: "management TLS mode: auto, provided or off", Value: statemgmt.ModeAuto, EnvVars: []string{"MANAGEMENT_TLS_MODE"}}),
			}, caTrustInstallAction),
			leaf(&cli.Command{
				Name:  "uninstall",
				Usage: "remove this state's management CAs, current and retired, from this machine's trust stores",
				Description: "Removes the entries of every CA of this state: the current one (both during a\n" +
					"rotation) and every one it retired. A store that holds none of them is told\n" +
					"and left alone (exit 0). It works in every management TLS mode.\n\n" +
					stores + examples(
					"p2ptls ca trust uninstall",
					"sudo p2ptls ca trust uninstall --system --nss-db /root/.pki/nssdb"),
				Flags: flags(),
			}, caTrustUninstallAction),
		},
	}
}

// trustTarget reads the stores the flags name; no flag is Chromium's.
func trustTarget(c *cli.Context) (hosttrust.Target, error) {
	t := hosttrust.Target{System: c.Bool(flgSystem), NSSDBs: c.StringSlice(flgNSSDB)}
	if !t.System && len(t.NSSDBs) == 0 {
		def, err := hosttrust.DefaultNSSDB()
		if err != nil {
			return t, err
		}
		t.NSSDBs = []string{def}
	}
	return t, nil
}

func caTrustInstallAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	t, err := trustTarget(c)
	if err != nil {
		return err
	}
	cas, err := hosttrust.ForInstall(ctx, g.Store(), statemgmt.Settings{Mode: c.String(flgTLSMode)})
	if err != nil {
		return err
	}
	res, err := hosttrust.Install(ctx, cas, t)
	return printTrust(g, res, err, true)
}

func caTrustUninstallAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	t, err := trustTarget(c)
	if err != nil {
		return err
	}
	cas, err := hosttrust.ForUninstall(ctx, g.Store())
	if err != nil {
		return err
	}
	res, err := hosttrust.Uninstall(ctx, cas, t)
	return printTrust(g, res, err, false)
}

// printTrust tells what each store holds now; after an error, the stores
// done before it are told (for people) and the error follows.
func printTrust(g *Globals, res []hosttrust.Result, err error, install bool) error {
	if err == nil && g.JSON() {
		return printJSON(g.Stdout, struct {
			Stores []hosttrust.Result `json:"stores"`
		}{res})
	}
	if g.JSON() {
		return err
	}
	for _, r := range res {
		where := "NSS database " + r.Path
		if r.Store == hosttrust.StoreSystem {
			where = "system trust store " + r.Path
		}
		for _, fp := range r.Added {
			g.Infof("%s: added the management CA %s", where, fp)
		}
		for _, fp := range r.Present {
			g.Infof("%s: trusts the management CA %s already", where, fp)
		}
		removed := "removed the management CA %s"
		if install {
			removed = "removed the management CA %s, which this state retired"
		}
		for _, fp := range r.Removed {
			g.Infof("%s: "+removed, where, fp)
		}
		if len(r.Added)+len(r.Present)+len(r.Removed) == 0 {
			g.Infof("%s: holds no management CA of this state; nothing to remove", where)
		}
	}
	if err != nil && len(res) > 0 {
		return fmt.Errorf("after the stores above: %w", err)
	}
	return err
}
