package commands

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// version is set at build time: -ldflags "-X github.com/p2pstream/p2ptls/commands.version=v1.2.3".
var version = ""

// Version is this build's version: the linker's, else the module's, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func versionCommand() *cli.Command {
	return leaf(&cli.Command{Name: "version", Usage: "print the version"}, func(_ context.Context, g *Globals, c *cli.Context) error {
		if err := noArgs(c); err != nil {
			return err
		}
		v := struct {
			Version string `json:"version"`
			Go      string `json:"go"`
		}{Version(), runtime.Version()}
		if g.JSON() {
			return printJSON(g.Stdout, v)
		}
		_, err := fmt.Fprintf(g.Stdout, "p2ptls %s (%s)\n", v.Version, v.Go)
		return err
	})
}
