package commands

import (
	"context"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Main runs p2ptls with args (args[0] is the program name) and returns the
// exit code; it is the only place where errors become exit codes.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := NewApp(stdout, stderr)
	app.Metadata = map[string]any{argsKey: args}
	err := app.RunContext(ctx, reorderArgs(app, args))
	if in := interruptOf(ctx); in != nil {
		return in.exit(stderr) // whatever err says, it was the signal
	}
	if err != nil {
		report(stderr, err)
	}
	return exitCode(err)
}

// reorderArgs moves a leaf command's flags in front of its positional
// arguments: urfave/cli v2 stops parsing flags at the first argument, but
// DESIGN.md's commands read "listener add NAME --addr ADDR". Everything after
// "--" stays positional.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	out := []string{args[0]}
	flags, cmds, rest := app.Flags, app.Commands, args[1:]
	for {
		i := 0
		for i < len(rest) && isFlagArg(rest[i]) {
			if takesValue(flags, rest[i]) {
				i++
			}
			i++
		}
		i = min(i, len(rest))
		out, rest = append(out, rest[:i]...), rest[i:]
		if len(rest) == 0 {
			return out
		}
		cmd := findCommand(cmds, rest[0])
		if cmd == nil || cmd.SkipFlagParsing {
			return append(out, rest...)
		}
		out, rest = append(out, rest[0]), rest[1:]
		if len(cmd.Subcommands) > 0 {
			flags, cmds = cmd.Flags, cmd.Subcommands
			continue
		}
		var fl, pos []string
		for j := 0; j < len(rest); j++ {
			a := rest[j]
			switch {
			case a == "--":
				pos = append(pos, rest[j+1:]...)
				j = len(rest)
			case isFlagArg(a):
				fl = append(fl, a)
				if takesValue(cmd.Flags, a) {
					if j+1 == len(rest) {
						// No value: leave the flag last, so that parsing
						// says so rather than taking "--" as its value.
						return append(out, fl...)
					}
					fl = append(fl, rest[j+1])
					j++
				}
			default:
				pos = append(pos, a)
			}
		}
		out = append(out, fl...)
		if len(pos) > 0 {
			out = append(append(out, "--"), pos...)
		}
		return out
	}
}

// isFlagArg: "-" alone is an argument (stdin/stdout), not a flag.
func isFlagArg(a string) bool { return len(a) > 1 && a[0] == '-' }

// takesValue reports whether flag argument a consumes the next argument.
func takesValue(flags []cli.Flag, a string) bool {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if slices.Contains(c.Names(), name) {
			return c
		}
	}
	return nil
}
