package commands

import (
	"github.com/urfave/cli/v2"
)

func acmeCommand() *cli.Command {
	return &cli.Command{
		Name:  "acme",
		Usage: "ACME accounts",
		Subcommands: []*cli.Command{{
			Name:  "account",
			Usage: "ACME account registration",
			Subcommands: []*cli.Command{
				pending("register", "register an ACME account", "--email E [--directory URL|letsencrypt|letsencrypt-staging] [--ca-file F] [--eab-kid K --eab-hmac-file F] --agree-tos"),
				pending("list", "list ACME accounts", ""),
				pending("show", "show the ACME account", ""),
			},
		}},
	}
}
