package commands

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/admintoken"
	"github.com/p2pstream/p2ptls/state/text"
)

// completeCmdName is the hidden entry point the completion scripts call:
//
//	p2ptls __complete WORD... CURRENT
//
// WORDs are the words typed after the program name, CURRENT the word being
// completed ("" for a new one). It prints a directive line (":none",
// ":files" or ":dirs", then a tab and the part of CURRENT the file names
// go after) and one candidate per line, "VALUE<tab>DESCRIPTION". It
// walks the command tree itself, so that a partial command line never
// meets urfave's flag parser, and it never fails: a broken state directory
// completes nothing.
const completeCmdName = "__complete"

// liveTimeout bounds reading the state for names: an interactive shell
// must never hang on a completion (a FIFO in place of p2ptls.toml, a
// dead network mount).
const liveTimeout = 2 * time.Second

func completeCommand() *cli.Command {
	return &cli.Command{
		Name:            completeCmdName,
		Usage:           "print completion candidates for the completion scripts",
		Hidden:          true,
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(c *cli.Context) error {
			complete(c.Context, c.App, c.Args().Slice(), os.Getenv).write(c.App.Writer)
			return nil
		},
	}
}

// candidate is one completion and what it is.
type candidate struct{ value, desc string }

// Completion modes: what the shell completes besides the candidates.
const (
	modeNone  = "none"
	modeFiles = "files"
	modeDirs  = "dirs"
)

// completion is the answer to one request.
type completion struct {
	mode string
	// prefix is the part of the current word before a flag's value
	// ("--out="): file names are completed after it.
	prefix string
	cands  []candidate
}

func (r completion) write(w io.Writer) {
	fmt.Fprintf(w, ":%s\t%s\n", r.mode, r.prefix)
	for _, c := range r.cands {
		// A value never spans lines; a description is shown on one.
		if c.desc != "" {
			fmt.Fprintf(w, "%s\t%s\n", c.value, text.OneLine(c.desc))
		} else {
			fmt.Fprintln(w, c.value)
		}
	}
}

// liveKind names a set of names read from the state directory.
type liveKind int

const (
	liveNone liveKind = iota
	liveMappings
	liveListeners
	liveDNSCredentials
	liveAdminTokens
)

// flagChoices are the fixed values of flags, by flag name, or by command
// path and flag name ("ca export --format") where a name means different
// things to different commands.
var flagChoices = map[string][]string{
	flgChallenge:               {state.ChallengeHTTP01, state.ChallengeTLSALPN01, state.ChallengeDNS01},
	flgKeyType:                 {"ec256", "ec384", "rsa2048", "rsa4096"},
	flgOutput:                  {outputTable, outputJSON},
	flgFallback:                {state.FallbackSelfSigned, state.FallbackReject},
	flgLogLevel:                {"debug", "info", "warn", "error"},
	flgLogFormat:               {"text", "json"},
	flgTLSMode:                 {"auto", "provided", "off"},
	"ca export --" + flgFormat: {"pem", "base64"},
	flgProvider:                {state.ProviderCloudflare},
	flgDirectory:               {"letsencrypt", "letsencrypt-staging"},
}

// flagLive are the flags whose value names something in the state.
var flagLive = map[string]liveKind{
	flgListener:      liveListeners,
	flgDNSCredential: liveDNSCredentials,
}

// flagMode is how a flag's value is completed when it is not a choice or a
// name: files for every flag ending in -file and for --out, directories
// for --config-dir, nothing otherwise (addresses, URLs, durations).
func flagMode(name string) string {
	switch {
	case strings.HasSuffix(name, "-file") || name == flgOut:
		return modeFiles
	case name == flgConfigDir:
		return modeDirs
	}
	return modeNone
}

// positional says how a command's arguments complete.
type positional struct {
	live    liveKind
	choices []string
	mode    string
	many    bool // more than one argument (cert issue ID...)
}

// positionals lists, by command path, what the arguments of each leaf
// command name. A leaf that takes arguments and is missing here fails
// TestEveryArgumentCompletes. Names of things that do not exist yet
// (listener add NAME) complete nothing.
var positionals = map[string]positional{
	"mapping show":           {live: liveMappings},
	"mapping remove":         {live: liveMappings},
	"mapping set":            {live: liveMappings},
	"mapping import":         {mode: modeFiles},
	"cert issue":             {live: liveMappings, many: true},
	"cert show":              {live: liveMappings},
	"cert inspect":           {mode: modeFiles},
	"listener add":           {},
	"listener show":          {live: liveListeners},
	"listener remove":        {live: liveListeners},
	"dns-credential add":     {},
	"dns-credential show":    {live: liveDNSCredentials},
	"dns-credential enable":  {live: liveDNSCredentials},
	"dns-credential disable": {live: liveDNSCredentials},
	"dns-credential remove":  {live: liveDNSCredentials},
	"dns-credential test":    {live: liveDNSCredentials},
	"admin token create":     {},
	"admin token revoke":     {live: liveAdminTokens},
	"restore":                {mode: modeFiles},
	"completion":             {choices: completionShells},
}

// complete answers one request; args are the words after "__complete", the
// last one being the word completed.
func complete(ctx context.Context, app *cli.App, args []string, getenv func(string) string) completion {
	cur := ""
	if len(args) > 0 {
		args, cur = args[:len(args)-1], args[len(args)-1]
	}
	w := walker{flags: app.Flags, cmds: app.Commands, seen: map[string]bool{}}
	for _, a := range args {
		if !w.step(a) {
			return completion{mode: modeNone}
		}
	}
	live := func(k liveKind) []candidate { return liveNames(ctx, k, w.stateDir(getenv)) }
	switch {
	case w.pending != nil:
		return flagValue(w.path, w.pending, "", cur, live)
	case !w.dashdash && strings.HasPrefix(cur, "--") && strings.Contains(cur, "="):
		name, val, _ := strings.Cut(cur[2:], "=")
		if f := lookupFlag(w.flags, name); f != nil && takesValueFlag(f) {
			return flagValue(w.path, f, "--"+name+"=", val, live)
		}
		return completion{mode: modeNone}
	case !w.dashdash && strings.HasPrefix(cur, "-"):
		return completion{mode: modeNone, cands: w.flagNames(cur)}
	case w.isGroup():
		var cands []candidate
		for _, c := range w.cmds {
			if !c.Hidden && c.Name != "help" && strings.HasPrefix(c.Name, cur) {
				cands = append(cands, candidate{c.Name, c.Usage})
			}
		}
		return completion{mode: modeNone, cands: cands}
	}
	p, ok := positionals[strings.Join(w.path, " ")]
	if !ok || (!p.many && len(w.args) > 0) {
		return completion{mode: modeNone}
	}
	r := completion{mode: modeNone}
	if p.mode != "" {
		r.mode = p.mode
	}
	var cands []candidate
	for _, c := range p.choices {
		cands = append(cands, candidate{value: c})
	}
	if p.live != liveNone {
		cands = append(cands, live(p.live)...)
	}
	for _, c := range cands {
		if strings.HasPrefix(c.value, cur) && !slices.Contains(w.args, c.value) {
			r.cands = append(r.cands, c)
		}
	}
	return r
}

// walker follows the words typed so far through the command tree.
type walker struct {
	path     []string // command names, "mapping add"
	leaf     bool
	flags    []cli.Flag
	cmds     []*cli.Command
	seen     map[string]bool // flags given to the current command
	pending  cli.Flag        // the flag the next word is the value of
	dashdash bool
	args     []string // positional arguments of the leaf
	// configDir is --config-dir as typed, wherever it was given.
	configDir string
}

// step takes one word; false means the line cannot be completed (an
// unknown command, an argument to a group).
func (w *walker) step(a string) bool {
	if w.pending != nil {
		w.setValue(w.pending, a)
		w.pending = nil
		return true
	}
	if !w.dashdash && a == "--" {
		w.dashdash = true
		return true
	}
	if !w.dashdash && isFlagArg(a) {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookupFlag(w.flags, name)
		if f == nil {
			return true // an unknown flag: assume it takes no value
		}
		w.seen[f.Names()[0]] = true
		switch {
		case !takesValueFlag(f):
		case hasVal:
			w.setValue(f, val)
		default:
			w.pending = f
		}
		return true
	}
	if w.isGroup() && !w.dashdash {
		cmd := findCommand(w.cmds, a)
		if cmd == nil || cmd.Hidden {
			return false
		}
		w.path = append(w.path, cmd.Name)
		w.flags, w.cmds, w.seen = cmd.Flags, visibleSubcommands(cmd), map[string]bool{}
		w.leaf = len(w.cmds) == 0
		return true
	}
	if !w.leaf {
		return false
	}
	w.args = append(w.args, unquote(a))
	return true
}

func (w *walker) isGroup() bool { return !w.leaf }

func (w *walker) setValue(f cli.Flag, v string) {
	if f.Names()[0] == flgConfigDir {
		w.configDir = unquote(v)
	}
}

// stateDir is the directory the command line would use.
func (w *walker) stateDir(getenv func(string) string) string {
	dir := w.configDir
	if home := getenv("HOME"); home != "" && (dir == "~" || strings.HasPrefix(dir, "~/")) {
		dir = home + dir[1:]
	}
	d, err := state.ResolveDir(dir, getenv)
	if err != nil {
		return ""
	}
	return d
}

// flagNames offers the current command's long flags that start with cur,
// except those already given that cannot be repeated.
func (w *walker) flagNames(cur string) []candidate {
	var cands []candidate
	add := func(name, usage string) {
		if v := "--" + name; strings.HasPrefix(v, cur) && !slices.ContainsFunc(cands, func(c candidate) bool { return c.value == v }) {
			cands = append(cands, candidate{v, usage})
		}
	}
	for _, f := range w.flags {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		name := f.Names()[0]
		if w.seen[name] && !isSliceFlag(f) {
			continue
		}
		usage := ""
		if df, ok := f.(cli.DocGenerationFlag); ok {
			usage = df.GetUsage()
		}
		add(name, usage)
	}
	if !w.seen["help"] {
		add("help", "show help")
	}
	return cands
}

// flagValue completes the value of f; prefix is what comes before the
// value in the current word.
func flagValue(path []string, f cli.Flag, prefix, cur string, live func(liveKind) []candidate) completion {
	name := f.Names()[0]
	r := completion{mode: flagMode(name), prefix: prefix}
	choices, ok := flagChoices[strings.Join(path, " ")+" --"+name]
	if !ok {
		choices = flagChoices[name]
	}
	var cands []candidate
	for _, c := range choices {
		cands = append(cands, candidate{value: c})
	}
	if k, ok := flagLive[name]; ok {
		cands = append(cands, live(k)...)
	}
	if strings.HasSuffix(name, "-env") {
		cands = append(cands, envNames()...)
	}
	for _, c := range cands {
		if strings.HasPrefix(c.value, cur) {
			r.cands = append(r.cands, candidate{prefix + c.value, c.desc})
		}
	}
	return r
}

// envNames offers the names of the environment variables set, for flags
// that name one (--api-token-env).
func envNames() []candidate {
	var cands []candidate
	for _, kv := range os.Environ() {
		if name, _, ok := strings.Cut(kv, "="); ok && name != "" {
			cands = append(cands, candidate{value: name})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int { return strings.Compare(a.value, b.value) })
	return slices.CompactFunc(cands, func(a, b candidate) bool { return a.value == b.value })
}

// liveNames reads names from the state directory with the read-only
// loaders: no lock is taken, nothing is created, and any error (a missing
// or broken state) gives no names.
func liveNames(ctx context.Context, k liveKind, dir string) []candidate {
	if dir == "" {
		return nil
	}
	done := make(chan []candidate, 1)
	go func() { done <- readNames(ctx, k, state.OpenDir(dir, 0)) }()
	select {
	case c := <-done:
		return c
	case <-time.After(liveTimeout):
		return nil
	}
}

func readNames(ctx context.Context, k liveKind, s *state.Dir) []candidate {
	var cands []candidate
	if k == liveAdminTokens {
		list, err := admintoken.List(ctx, s)
		if err != nil {
			return nil
		}
		for _, t := range list {
			cands = append(cands, candidate{t.Name, "created " + t.CreatedAt.Format(time.DateOnly)})
		}
		return cands
	}
	if k == liveMappings {
		cfg, err := state.LoadConfig(ctx, s)
		if err != nil {
			return nil
		}
		for _, m := range cfg.Mappings {
			cands = append(cands, candidate{m.ID, strings.Join(m.Hosts, ",") + " on " + m.Listener})
		}
		return cands
	}
	// Listeners and credentials are p2ptls.toml's: a tab press does not
	// read 100k mapping records for them.
	top, err := state.LoadTopConfig(ctx, s)
	if err != nil {
		return nil
	}
	switch k {
	case liveListeners:
		for _, l := range top.Listeners {
			cands = append(cands, candidate{l.Name, l.Addr})
		}
	case liveDNSCredentials:
		for _, d := range top.DNSCredentials {
			desc := d.Provider
			if !d.Enabled {
				desc += ", disabled"
			}
			cands = append(cands, candidate{d.Name, desc})
		}
	}
	return cands
}

// visibleSubcommands leaves out urfave's "help" subcommand, which it adds
// to a command when it runs.
func visibleSubcommands(cmd *cli.Command) []*cli.Command {
	var out []*cli.Command
	for _, c := range cmd.Subcommands {
		if c.Name != "help" {
			out = append(out, c)
		}
	}
	return out
}

func lookupFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func takesValueFlag(f cli.Flag) bool {
	df, ok := f.(cli.DocGenerationFlag)
	return ok && df.TakesValue()
}

func isSliceFlag(f cli.Flag) bool {
	sf, ok := f.(cli.DocGenerationSliceFlag)
	return ok && sf.IsSliceFlag()
}

// unquote removes the quotes of a word bash or zsh passes as typed
// ('/tmp/a b'), so that --config-dir names the directory meant.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}
