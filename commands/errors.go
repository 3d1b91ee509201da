package commands

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/fault"
)

// Exit codes of DESIGN.md, applied only in Main.
const (
	exitOK      = 0
	exitFailure = 1
	exitInvalid = 2
	exitLocked  = 3
)

// exitStatusHelp ends every leaf command's help, as restic's do.
const exitStatusHelp = `EXIT STATUS:
   0  success
   1  failure (a check or a renewal failed, a named thing does not exist or is in use)
   2  usage or invalid input (unknown flag, bad name, address, hostname or PEM)
   3  the state directory stayed locked by another process past --lock-timeout
 130  interrupted by SIGINT (Ctrl-C): the state is as before, or fully changed
 143  interrupted by SIGTERM: the same`

// exitCode maps any error to the exit code of DESIGN.md.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	switch fault.KindOf(err) {
	case fault.Invalid:
		return exitInvalid
	case fault.Locked:
		return exitLocked
	}
	return exitFailure
}

// report prints err as "p2ptls: error: …" and its hint, one line each.
func report(w io.Writer, err error) {
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintf(w, "%s: error: %s\n", appName, oneLine(msg))
	if hint := fault.HintOf(err); hint != "" {
		fmt.Fprintf(w, "%s: hint: %s\n", appName, oneLine(hint))
	}
}

// oneLine keeps a message on one line whatever a wrapped error contained.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// usageError turns urfave's flag errors into bad input with a usage hint.
func usageError(full string) cli.OnUsageErrorFunc {
	return func(_ *cli.Context, err error, _ bool) error {
		return &fault.Error{Kind: fault.Invalid, Msg: full, Err: err, Hint: fmt.Sprintf("run '%s --help' for usage", full)}
	}
}

// missingFlag is the error for a required flag that was not given. Flags are
// checked here rather than with urfave's Required, which prints the whole
// help on stdout and returns an error that cannot be classified.
func missingFlag(full string, names ...string) error {
	return fault.Invalidf(fmt.Sprintf("run '%s --help' for usage", full), "%s needs --%s", full, strings.Join(names, " and --"))
}

// unknownCommand names the nearest command when one is close enough to be
// a typo.
func unknownCommand(full, name string, cmds []*cli.Command) error {
	hint := fmt.Sprintf("run '%s --help' for the list of commands", full)
	best := 3 // suggest only within two edits
	for _, c := range cmds {
		if d := editDistance(c.Name, name); !c.Hidden && d < best {
			best, hint = d, fmt.Sprintf("did you mean '%s %s'?", full, c.Name)
		}
	}
	return fault.Invalidf(hint, "%s: unknown command %q", full, name)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
