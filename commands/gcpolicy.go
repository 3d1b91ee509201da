package commands

import (
	"os"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// A change of one thing (`mapping add`) runs for a fraction of a second and
// keeps nearly everything it loads until it exits (100k mappings decoded
// for a change of one), so the collector's work at the default GOGC=100 is
// wasted: 25-40 ms of a 0.2 s `mapping add` at 100k mappings. These
// commands collect at five times the live heap instead, the heap kept
// under cliMemoryLimit where the collector can help it. "mapping import"
// too: it also holds what it makes until it exits (10k certificates and
// their files), and at 10k self-signed lines it spent 0.3-0.5 s of its
// 2.5-3.2 s of CPU less in the collector for 60-80 MiB more peak RSS
// (175 -> 235-260 MiB), inside the same soft limit. Every other command
// keeps the runtime's defaults: serve is long-lived, and a list or doctor
// would only trade memory for nothing (their CPU is not in the collector).
const (
	cliGCPercent   = 400
	cliMemoryLimit = 1 << 30
)

// changeCommands are the commands gcPolicy applies to.
var changeCommands = map[string]bool{
	"mapping add": true, "mapping remove": true, "mapping import": true,
	"listener add": true, "listener remove": true,
	"dns-credential add": true, "dns-credential remove": true,
	"dns-credential enable": true, "dns-credential disable": true,
}

// gcPolicy is what command (its path, "mapping add") sets: ok is false when
// the runtime's settings stay (see changeCommands; an operator's own GOGC
// or GOMEMLIMIT always wins).
func gcPolicy(command string, getenv func(string) string) (percent int, limit int64, ok bool) {
	if !changeCommands[command] || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return 0, 0, false
	}
	return cliGCPercent, cliMemoryLimit, true
}

// applyGCPolicy sets the collector for command (see gcPolicy).
func applyGCPolicy(command string) {
	if percent, limit, ok := gcPolicy(command, os.Getenv); ok {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	}
}

// commandPath is the path of the command args run ("mapping add"),
// skipping the flags before each name; as far as it gets when a name is
// not a command.
func commandPath(app *cli.App, args []string) string {
	flags, cmds := app.Flags, app.Commands
	var path []string
	for i := 1; i < len(args) && len(cmds) > 0; i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if isFlagArg(a) {
			if takesValue(flags, a) {
				i++
			}
			continue
		}
		cmd := findCommand(cmds, a)
		if cmd == nil {
			break
		}
		path = append(path, cmd.Name)
		flags, cmds = cmd.Flags, cmd.Subcommands
	}
	return strings.Join(path, " ")
}
