package commands

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/fault"
)

// oneArg returns the command's single positional argument.
func oneArg(c *cli.Context, what string) (string, error) {
	hint := fmt.Sprintf("run '%s --help' for usage", c.Command.HelpName)
	switch c.NArg() {
	case 0:
		return "", fault.Invalidf(hint, "%s needs %s", c.Command.HelpName, what)
	case 1:
		return c.Args().First(), nil
	}
	return "", fault.Invalidf(hint, "%s takes one %s, got %d arguments", c.Command.HelpName, what, c.NArg())
}

// noArgs refuses positional arguments for commands that take none.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return fault.Invalidf(fmt.Sprintf("run '%s --help' for usage", c.Command.HelpName),
			"%s takes no arguments, got %q", c.Command.HelpName, c.Args().First())
	}
	return nil
}
