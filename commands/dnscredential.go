package commands

import (
	"github.com/urfave/cli/v2"
)

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
