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
