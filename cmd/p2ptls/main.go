// Command p2ptls is the TLS toolchain of a p2pstream deployment.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/p2pstream/p2ptls/commands"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Main(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
