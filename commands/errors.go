package commands

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/text"
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
	fmt.Fprintf(w, "%s: error: %s\n", appName, text.OneLine(msg))
	if hint := fault.HintOf(err); hint != "" {
		fmt.Fprintf(w, "%s: hint: %s\n", appName, text.OneLine(hint))
	}
}

// usageError turns urfave's flag errors into bad input with a usage hint.
// Go's flag package names a flag "-adr" whatever was typed: the error names
// it as typed ("--adr") and suggests the closest flag of the command.
// flags is read when the error happens, after prepare added the globals.
func usageError(full string, flags func() []cli.Flag) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		hint := fmt.Sprintf("run '%s --help' for usage", full)
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			return unknownFlag(full, typedFlag(c, name), name, flags())
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
			return fault.Invalidf(hint, "%s: %s needs a value", full, dashed(name))
		}
		// "invalid value "x" for flag -days: …", "invalid boolean value … for -q: …"
		for _, sep := range []string{" for flag -", " for -"} {
			if before, after, ok := strings.Cut(msg, sep); ok {
				name, rest, _ := strings.Cut(after, ":")
				return fault.Invalidf(hint, "%s: %s for %s:%s", full, before, dashed(name), rest)
			}
		}
		return &fault.Error{Kind: fault.Invalid, Msg: full, Err: err, Hint: hint}
	}
}

// dashed writes a flag name the way it is typed: -q, --addr.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// argsKey is where Main keeps the command line in the app's Metadata, so
// that a usage error can name a flag as it was typed.
const argsKey = "args"

// typedFlag finds flag name as the user typed it: with one or two dashes,
// and without any "=value" (which may be a secret: it is never echoed).
func typedFlag(c *cli.Context, name string) string {
	args, _ := c.App.Metadata[argsKey].([]string)
	for _, a := range args {
		if a == "--" {
			break
		}
		flag, _, _ := strings.Cut(a, "=")
		if isFlagArg(flag) && strings.TrimLeft(flag, "-") == name {
			return flag
		}
	}
	return dashed(name)
}

// secretFlags are flags people reach for that would put a secret in argv,
// where ps and the shell history show it: each command refuses them by
// name and says which flags read the secret safely.
var secretFlags = map[string]struct {
	names     []string
	what, use string
}{
	"dns-credential add":    {[]string{"api-token", "token", "api-key", "cf-token"}, "tokens", "--api-token-file or --api-token-env"},
	"acme account register": {[]string{"eab-hmac", "eab-hmac-key", "hmac", "hmac-key"}, "EAB HMAC keys", "--eab-hmac-file"},
	"backup":                {[]string{"passphrase", "password"}, "passphrases", "--passphrase-file"},
	"restore":               {[]string{"passphrase", "password"}, "passphrases", "--passphrase-file"},
}

// unknownFlag is the error for a flag the command does not have: named as
// typed, with the closest flag of the command when one is close enough.
func unknownFlag(full, typed, name string, flags []cli.Flag) error {
	if s, ok := secretFlags[strings.TrimPrefix(full, appName+" ")]; ok && slices.Contains(s.names, name) {
		return fault.Invalidf(fmt.Sprintf("the value would show in ps and the shell history; run '%s --help'", full),
			"%s %s: %s are never taken from the command line: use %s", full, typed, s.what, s.use)
	}
	hint := fmt.Sprintf("run '%s --help' for usage", full)
	if s := suggestFlag(flags, name); s != "" {
		hint = fmt.Sprintf("did you mean %s? (run '%s --help' for usage)", s, full)
	}
	return fault.Invalidf(hint, "%s: unknown flag %s", full, typed)
}

// suggestFlag is urfave's suggestion (Jaro-Winkler over the visible flags
// and --help), kept only when it is plausibly what was meant: urfave
// suggests its best match however far it is.
func suggestFlag(flags []cli.Flag, name string) string {
	if cli.SuggestFlag == nil { // built with urfave_cli_no_suggest
		return ""
	}
	visible := make([]cli.Flag, 0, len(flags))
	for _, f := range flags {
		if vf, ok := f.(cli.VisibleFlag); !ok || vf.IsVisible() {
			visible = append(visible, f)
		}
	}
	s := cli.SuggestFlag(visible, name, false)
	if !closeEnough(name, strings.TrimLeft(s, "-")) {
		return ""
	}
	return s
}

// closeEnough reports whether candidate is plausibly what typed meant: one
// edit away, two in a longer name, or typed is the start of it.
func closeEnough(typed, candidate string) bool {
	if candidate == "" {
		return false
	}
	d := editDistance(typed, candidate)
	return d == 1 || (d == 2 && len(candidate) >= 5) || (len(typed) >= 3 && strings.HasPrefix(candidate, typed))
}

// missingFlag is the error for a required flag that was not given. Flags are
// checked here rather than with urfave's Required, which prints the whole
// help on stdout and returns an error that cannot be classified.
func missingFlag(full string, names ...string) error {
	return fault.Invalidf(fmt.Sprintf("run '%s --help' for usage", full), "%s needs --%s", full, strings.Join(names, " and --"))
}

// unknownCommand names the nearest command when one is close enough to be
// a typo. urfave's own suggestion does not fit here: it offers "help" and
// its best match however far it is.
func unknownCommand(full, name string, cmds []*cli.Command) error {
	hint := fmt.Sprintf("run '%s --help' for the list of commands", full)
	best, bestName := 0, ""
	for _, c := range cmds {
		for _, n := range c.Names() {
			if d := editDistance(n, name); !c.Hidden && closeEnough(name, n) && (bestName == "" || d < best) {
				best, bestName = d, c.Name
			}
		}
	}
	if bestName != "" {
		hint = fmt.Sprintf("did you mean '%s %s'?", full, bestName)
	}
	return fault.Invalidf(hint, "%s: unknown command %q", full, name)
}

// editDistance is the optimal string alignment distance between a and b:
// Levenshtein's, with a swap of two neighbours ("dasy" for "days") as one
// edit, the commonest typo.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
