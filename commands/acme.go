package commands

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/text"
	"github.com/p2pstream/p2ptls/state/userfile"
)

const (
	flgEmail       = "email"
	flgDirectory   = "directory"
	flgEABKid      = "eab-kid"
	flgEABHMACFile = "eab-hmac-file"
	flgAgreeTOS    = "agree-tos"
)

func acmeCommand() *cli.Command {
	return &cli.Command{
		Name:  "acme",
		Usage: "ACME accounts",
		Subcommands: []*cli.Command{{
			Name:  "account",
			Usage: "ACME account registration",
			Subcommands: []*cli.Command{
				leaf(&cli.Command{
					Name:  "register",
					Usage: "register an ACME account; it becomes the account that issues",
					Description: "--directory takes a URL or letsencrypt (default) or letsencrypt-staging.\n" +
						"--ca-file trusts a private ACME server's certificate (copied into the state).\n" +
						"The EAB HMAC key is read from a file, never from the command line." + examples(
						"p2ptls acme account register --email ops@example.com --agree-tos",
						"p2ptls acme account register --email ops@example.com --directory letsencrypt-staging --agree-tos",
						"p2ptls acme account register --email ops@example.com --directory https://acme.example.com/directory --eab-kid KID --eab-hmac-file eab.key --agree-tos"),
					Flags: []cli.Flag{
						&cli.StringFlag{Name: flgEmail, Usage: "contact address (required)"},
						&cli.StringFlag{Name: flgDirectory, Usage: "ACME directory URL, letsencrypt or letsencrypt-staging", Value: "letsencrypt"},
						&cli.StringFlag{Name: flgCAFile, Usage: "PEM file to trust for the ACME server"},
						&cli.StringFlag{Name: flgEABKid, Usage: "external account binding key id"},
						&cli.StringFlag{Name: flgEABHMACFile, Usage: "file holding the external account binding HMAC key"},
						&cli.BoolFlag{Name: flgAgreeTOS, Usage: "agree to the ACME server's terms of service (required)"},
					},
				}, acmeRegisterAction),
				leaf(&cli.Command{Name: "list", Usage: "list registered ACME accounts"}, acmeListAction),
				leaf(&cli.Command{Name: "show", Usage: "show the account that issues and the profiles its ACME server offers"}, acmeShowAction),
			},
		}},
	}
}

func acmeRegisterAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if c.String(flgEmail) == "" {
		return missingFlag(c.Command.HelpName, flgEmail)
	}
	in := acme.RegisterInput{
		Email:     c.String(flgEmail),
		Directory: c.String(flgDirectory),
		CAFile:    c.String(flgCAFile),
		EABKid:    c.String(flgEABKid),
		AgreeTOS:  c.Bool(flgAgreeTOS),
	}
	if f := c.String(flgEABHMACFile); f != "" {
		// A secret, not a PEM file: the smaller bound applies.
		b, err := userfile.Read(f, userfile.MaxSecret)
		if err != nil {
			return fmt.Errorf("the EAB HMAC file (--eab-hmac-file): %w", err)
		}
		in.EABHMAC = string(b)
	}
	acct, err := acme.Register(ctx, g.Store(), in, time.Now())
	if err != nil {
		return err
	}
	acct.Current = true
	return g.Done(acct, "registered ACME account %s at %s", acct.Email, acct.Directory)
}

func acmeListAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	list, err := accounts(ctx, g)
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, list)
	}
	rows := make([][]string, len(list))
	for i, a := range list {
		cur := ""
		if a.Current {
			cur = "*"
		}
		rows[i] = []string{cur, a.Email, a.Directory, a.RegisteredAt.Format(time.RFC3339)}
	}
	return printTable(g.Stdout, []string{"", "EMAIL", "DIRECTORY", "REGISTERED"}, rows)
}

func acmeShowAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	list, err := accounts(ctx, g)
	if err != nil {
		return err
	}
	for _, a := range list {
		if !a.Current {
			continue
		}
		shown := accountShown{Account: a}
		profiles := "unknown (the ACME server was not reached)"
		if meta, err := accountDirectory(ctx, g, a.Directory); err != nil {
			g.Warnf("the profiles the ACME server offers are unknown: %v", err)
		} else {
			shown.Profiles = meta.Profiles
			if shown.Profiles == nil { // offers none: {}, not null (unknown)
				shown.Profiles = map[string]string{}
			}
			profiles = profileList(meta)
		}
		if g.JSON() {
			return printJSON(g.Stdout, shown)
		}
		return printFields(g.Stdout, [][2]string{{"email", a.Email}, {"directory", a.Directory}, {"account", a.URI},
			{"registered", a.RegisteredAt.Format(time.RFC3339)}, {"profiles", profiles}})
	}
	_, err = acme.LoadAccount(ctx, g.Store(), "")
	return err
}

func accounts(ctx context.Context, g *Globals) ([]acme.Account, error) {
	// Only p2ptls.toml: which account issues is an ACME setting, and the
	// mapping records are not what it prints.
	top, err := state.LoadTopConfig(ctx, g.Store())
	if err != nil {
		return nil, err
	}
	return acme.ListAccounts(ctx, g.Store(), top.Unmapped())
}

// accountShown is what "acme account show --output json" prints: the
// account and the profiles its ACME server advertises (null when the
// server could not be reached).
type accountShown struct {
	acme.Account
	Profiles map[string]string `json:"profiles"`
}

// accountDirectory reads the directory of the account at directory.
func accountDirectory(ctx context.Context, g *Globals, directory string) (*acme.DirectoryMeta, error) {
	acct, err := acme.LoadAccount(ctx, g.Store(), directory)
	if err != nil {
		return nil, err
	}
	return acme.FetchDirectory(ctx, acct)
}

// profileList is the profiles line of "acme account show".
func profileList(meta *acme.DirectoryMeta) string {
	names := meta.ProfileNames()
	if len(names) == 0 {
		return "none (the server does not offer profiles)"
	}
	for i, n := range names {
		if d := text.OneLine(meta.Profiles[n]); d != "" {
			names[i] = n + " (" + d + ")"
		}
	}
	return strings.Join(names, ", ")
}
