// Command p2ptls is the TLS toolchain of a p2pstream deployment.
package main

import (
	"os"

	"github.com/p2pstream/p2ptls/commands"
)

func main() {
	// commands.Run handles SIGINT and SIGTERM: see there.
	os.Exit(commands.Run(os.Args, os.Stdout, os.Stderr))
}
