// Package commands is the p2ptls command line: it parses flags, calls the
// state and serve packages, prints results and maps errors to exit codes.
// It holds no business logic.
package commands

import (
	"context"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
)

// appName is the program name everywhere: help, completions, man page.
const appName = "p2ptls"

// leafAction is the signature of every leaf command's work.
type leafAction func(ctx context.Context, g *Globals, c *cli.Context) error

// NewApp builds the whole command tree writing to stdout and stderr.
func NewApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:            appName,
		Usage:           "TLS for p2pstream: management CA, public HTTPS listeners, ACME, backups",
		Description:     appDescription,
		Version:         Version(),
		HideVersion:     true, // the version command prints more
		HideHelpCommand: true,
		Writer:          stdout,
		ErrWriter:       stderr,
		Flags:           globalFlags(true),
		Commands:        commandTree(),
		// Exit codes are decided in Main, never by urfave.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	app.Action = groupAction(appName)
	app.OnUsageError = usageError(appName, func() []cli.Flag { return app.Flags })
	for _, cmd := range app.Commands {
		prepare(cmd, appName)
	}
	return app
}

// commandTree lists every command group of DESIGN.md.
func commandTree() []*cli.Command {
	return []*cli.Command{
		caCommand(),
		listenerCommand(),
		mappingCommand(),
		certCommand(),
		dnsCredentialCommand(),
		acmeCommand(),
		backupCommand(),
		restoreCommand(),
		storeCommand(),
		doctorCommand(),
		statusCommand(),
		serveCommand(),
		healthcheckCommand(),
		agentCommand(),
		adminCommand(),
		completionCommand(),
		completeCommand(), // hidden: the completion scripts' entry point
		versionCommand(),
	}
}

// prepare wires what every command needs: usage errors that exit 2, groups
// that refuse unknown subcommands, and on leaves the global flags and the
// EXIT STATUS section of their help.
func prepare(cmd *cli.Command, parent string) {
	full := parent + " " + cmd.Name
	cmd.OnUsageError = usageError(full, func() []cli.Flag { return cmd.Flags })
	if len(cmd.Subcommands) > 0 {
		cmd.HideHelpCommand = true
		cmd.Action = groupAction(full)
		for _, sub := range cmd.Subcommands {
			prepare(sub, full)
		}
		return
	}
	if !cmd.SkipFlagParsing {
		cmd.Flags = append(cmd.Flags, globalFlags(false)...)
	}
	cmd.Description = strings.TrimSpace(cmd.Description+"\n\n"+exitStatusHelp) + "\n"
}

// leaf turns act into the command's action: it resolves the global options
// first, so every command sees the same Globals.
func leaf(cmd *cli.Command, act leafAction) *cli.Command {
	cmd.Action = func(c *cli.Context) error {
		g, err := resolveGlobals(c)
		if err != nil {
			return err
		}
		g.ctx = c.Context
		defer g.close()
		// A restore into a mount point cut short is finished (or waited
		// for) before any command reads the state; doctor, which never
		// takes the lock, reports it instead.
		ctx := c.Context
		if cmd.Name == "doctor" {
			ctx = state.WithoutSettle(ctx)
		} else if g.ConfigDir != "" && g.StoreURL == "" {
			if err := state.SettleSwap(ctx, g.Store()); err != nil {
				return err
			}
		}
		return act(ctx, g, c)
	}
	return cmd
}

// groupAction runs for a group given no subcommand (help) or an unknown one
// (usage error, exit 2; urfave would say "No help topic" and exit 3).
func groupAction(full string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			return unknownCommand(full, c.Args().First(), c.Command.Subcommands)
		}
		return cli.ShowSubcommandHelp(c)
	}
}
