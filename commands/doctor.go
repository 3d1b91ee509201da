package commands

import (
	"github.com/urfave/cli/v2"
)

func doctorCommand() *cli.Command {
	return pending("doctor", "check for the common deployment mistakes; exit 1 on a failure", "")
}
