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

func backupCommand() *cli.Command {
	return pending("backup", "write the whole state, management CA included, to one archive", "[--out FILE|-] [--passphrase-file F]")
}

func restoreCommand() *cli.Command {
	return pending("restore", "restore the whole state from a backup archive", "FILE|- [--dry-run] [--force] [--allow-missing-management-ca] [--passphrase-file F]")
}

func doctorCommand() *cli.Command {
	return pending("doctor", "check for the common deployment mistakes; exit 1 on a failure", "")
}
