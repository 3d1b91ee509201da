package commands

import (
	"github.com/urfave/cli/v2"
)

func backupCommand() *cli.Command {
	return pending("backup", "write the whole state, management CA included, to one archive", "[--out FILE|-] [--passphrase-file F]")
}

func restoreCommand() *cli.Command {
	return pending("restore", "restore the whole state from a backup archive", "FILE|- [--dry-run] [--force] [--allow-missing-management-ca] [--passphrase-file F]")
}
