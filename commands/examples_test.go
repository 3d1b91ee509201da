package commands

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// readOnly are the leaf commands that change nothing: the only ones an
// EXAMPLES section may be missing from. A new command is held to have one
// until it is listed here.
var readOnly = []string{
	"ca show", "listener list", "listener show", "mapping list", "mapping show", "mapping export",
	"cert list", "cert show", "cert inspect", "dns-credential list", "dns-credential show",
	"acme account list", "acme account show", "admin token list", "doctor", "status",
	"agent check", "agent env", "completion", "__complete", "version",
}

// leaves walks the command tree: every leaf with its path ("cert renew").
func leaves(cmds []*cli.Command, parent string, f func(path string, c *cli.Command)) {
	for _, c := range cmds {
		path := strings.TrimSpace(parent + " " + c.Name)
		if len(c.Subcommands) > 0 {
			leaves(c.Subcommands, path, f)
			continue
		}
		f(path, c)
	}
}

// exampleLines returns the lines of the EXAMPLES section of a description,
// and whether the section is laid out as the man page generator reads it:
// "EXAMPLES:" alone on a line, then lines indented exactly 3 spaces, then a
// blank line before EXIT STATUS.
func exampleLines(desc string) ([]string, bool) {
	_, after, ok := strings.Cut("\n\n"+desc, "\n\nEXAMPLES:\n")
	if !ok {
		return nil, false
	}
	section, rest, ok := strings.Cut(after, "\n\n")
	if !ok || !strings.HasPrefix(rest, "EXIT STATUS:") {
		return nil, false
	}
	var lines []string
	for _, l := range strings.Split(section, "\n") {
		if !strings.HasPrefix(l, "   ") || strings.HasPrefix(l, "    ") {
			return nil, false
		}
		lines = append(lines, l[3:])
	}
	return lines, true
}

// TestExamples: every leaf that changes something has 2-4 examples, and
// each example is a real command line: its command path exists and every
// flag it gives is a flag of that command.
func TestExamples(t *testing.T) {
	app := NewApp(io.Discard, io.Discard)
	seen := 0
	leaves(app.Commands, "", func(path string, c *cli.Command) {
		lines, ok := exampleLines(c.Description)
		if slices.Contains(readOnly, path) && !ok {
			return
		}
		seen++
		if !ok || len(lines) < 2 || len(lines) > 4 {
			t.Errorf("%s: want an EXAMPLES section of 2-4 lines indented 3 spaces before EXIT STATUS, got %d lines:\n%s", path, len(lines), c.Description)
			return
		}
		for _, l := range lines {
			checkExample(t, app, path, l)
		}
	})
	if seen < 20 {
		t.Errorf("only %d commands have examples", seen)
	}
}

// checkExample parses the p2ptls part of a shell line: after any
// "cmd |", up to any "|", "<", ">" or "||".
func checkExample(t *testing.T, app *cli.App, path, line string) {
	t.Helper()
	_, cmdline, ok := strings.Cut(" "+line, " p2ptls ")
	if !ok {
		t.Errorf("%s: example %q does not run p2ptls", path, line)
		return
	}
	for _, stop := range []string{" |", " <", " >"} {
		cmdline, _, _ = strings.Cut(cmdline, stop)
	}
	words := strings.Fields(cmdline)
	cmds := app.Commands
	var leaf *cli.Command
	i := 0
	for ; i < len(words) && leaf == nil; i++ {
		c := findCommand(cmds, words[i])
		if c == nil {
			t.Errorf("%s: example %q: no command %q", path, line, words[i])
			return
		}
		if len(c.Subcommands) == 0 {
			leaf = c
		}
		cmds = c.Subcommands
	}
	if got := strings.Join(words[:i], " "); got != path {
		t.Errorf("%s: example %q runs %q", path, line, got)
	}
	for _, w := range words[i:] {
		if !isFlagArg(w) {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
		found := false
		for _, f := range leaf.Flags {
			found = found || slices.Contains(f.Names(), name)
		}
		if !found {
			t.Errorf("%s: example %q: %s has no flag %s", path, line, path, w)
		}
	}
}
