package commands

import (
	"github.com/urfave/cli/v2"
)

// pendingSuffix marks, in help and the man page, a command whose capability
// is not built yet; running it says so and exits 1.
const pendingSuffix = " (not available yet)"

// pending is a registered command whose capability belongs to a later
// change. It takes any arguments and refuses to run, rather than pretend.
func pending(name, usage, argsUsage string) *cli.Command {
	return &cli.Command{
		Name:            name,
		Usage:           usage + pendingSuffix,
		ArgsUsage:       argsUsage,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return notAvailable(c.Command.HelpName)
		},
	}
}

func dnsCredentialCommand() *cli.Command {
	return &cli.Command{
		Name:  "dns-credential",
		Usage: "DNS provider credentials for DNS-01 validation",
		Subcommands: []*cli.Command{
			pending("add", "save a Cloudflare API token", "NAME --provider cloudflare (--api-token-file F | --api-token-env VAR) [--api-base-url URL]"),
			pending("list", "list DNS credentials", ""),
			pending("show", "show one DNS credential", "NAME"),
			pending("enable", "enable a DNS credential", "NAME"),
			pending("disable", "disable a DNS credential", "NAME"),
			pending("remove", "remove a DNS credential", "NAME"),
			pending("test", "check a DNS credential against the provider's API", "NAME"),
		},
	}
}

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

func backupCommand() *cli.Command {
	return pending("backup", "write the whole state, management CA included, to one archive", "[--out FILE|-] [--passphrase-file F]")
}

func restoreCommand() *cli.Command {
	return pending("restore", "restore the whole state from a backup archive", "FILE|- [--dry-run] [--force] [--allow-missing-management-ca] [--passphrase-file F]")
}

func doctorCommand() *cli.Command {
	return pending("doctor", "check for the common deployment mistakes; exit 1 on a failure", "")
}
