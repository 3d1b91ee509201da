package commands

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/etcdstore"
	"github.com/p2pstream/p2ptls/state/fault"
)

// Global flag names; every leaf command carries them too, so they work on
// either side of the command name.
const (
	flgConfigDir   = "config-dir"
	flgOutput      = "output"
	flgQuiet       = "quiet"
	flgLogLevel    = "log-level"
	flgLogFormat   = "log-format"
	flgLockTimeout = "lock-timeout"
	flgStore       = "store"
)

// Environment variables bound to global flags.
const (
	envOutput      = "P2PTLS_OUTPUT"
	envLogLevel    = "P2PTLS_LOG_LEVEL"
	envLogFormat   = "P2PTLS_LOG_FORMAT"
	envLockTimeout = "P2PTLS_LOCK_TIMEOUT"
	envStore       = "P2PTLS_STORE"
)

// globalFlags returns fresh instances: urfave records "was set" on the flag
// value itself, so the app and each leaf need their own. Only the app's
// copies read the environment, so that a leaf copy is set exactly when the
// flag was given after the command, and then it wins (flag > env > default).
func globalFlags(withEnv bool) []cli.Flag {
	env := func(name string) []string {
		if withEnv {
			return []string{name}
		}
		return nil
	}
	return []cli.Flag{
		&cli.StringFlag{Name: flgConfigDir, Usage: "state directory (default $XDG_DATA_HOME/p2ptls or ~/.local/share/p2ptls)", EnvVars: env(state.EnvConfigDir)},
		&cli.StringFlag{Name: flgOutput, Usage: "output format: table or json", Value: outputTable, EnvVars: env(envOutput)},
		&cli.BoolFlag{Name: flgQuiet, Aliases: []string{"q"}, Usage: "print nothing on success but requested data (lists, shows, exports, JSON); log at warn unless --log-level is given"},
		&cli.StringFlag{Name: flgLogLevel, Usage: "log level: debug, info, warn or error", Value: "info", EnvVars: env(envLogLevel)},
		&cli.StringFlag{Name: flgLogFormat, Usage: "log format: text or json", Value: "text", EnvVars: env(envLogFormat)},
		&cli.StringFlag{Name: flgStore, Usage: "keep the state in etcd instead of the state directory: etcd://HOST:PORT[,HOST:PORT...]/PREFIX (TLS and credentials from the P2PTLS_ETCD_* variables; the directory then holds only this machine's runtime files)", EnvVars: env(envStore)},
		&cli.DurationFlag{Name: flgLockTimeout, Usage: "how long to wait for another p2ptls process that holds the state lock", Value: state.DefaultLockTimeout, EnvVars: env(envLockTimeout)},
	}
}

// Globals are the resolved global options handed to every run function.
type Globals struct {
	ConfigDir   string
	StoreURL    string // --store: a shared store instead of ConfigDir
	ctx         context.Context
	store       state.Store // the shared store, once opened
	closeStore  func() error
	Output      string
	Quiet       bool
	LockTimeout time.Duration
	Stdout      io.Writer
	Stderr      io.Writer
}

// JSON reports whether the user asked for JSON output.
func (g *Globals) JSON() bool { return g.Output == outputJSON }

// Infof prints a message for people: to stdout with table output, to stderr
// with JSON (stdout then holds only the document), nowhere with --quiet.
//
// --quiet: a command that changes or checks something prints nothing when
// it succeeds (its exit status says it); what a command is run to print —
// a list, a show, an export, a token, a dry run, the JSON document — is
// printed all the same. Warnings stay (Warnf).
func (g *Globals) Infof(format string, args ...any) {
	if g.Quiet {
		return
	}
	w := g.Stdout
	if g.JSON() {
		w = g.Stderr
	}
	fmt.Fprintf(w, format+"\n", args...)
}

// Done reports a finished change: v as the JSON document, or a sentence
// for people.
func (g *Globals) Done(v any, format string, args ...any) error {
	if g.JSON() {
		return printJSON(g.Stdout, v)
	}
	g.Infof(format, args...)
	return nil
}

// Warnf prints a warning to stderr, even with --quiet: what a warning says
// matters for safety (a certificate lacking a name, an archive without the
// CA). The one exception, backup's clear-text notice, is documented there.
func (g *Globals) Warnf(format string, args ...any) {
	fmt.Fprintf(g.Stderr, "p2ptls: warning: "+format+"\n", args...)
}

// Store is the state: the directory, or the shared store --store names,
// connected to on first use (a command that never reads the state, such
// as version, does not need etcd to answer) and closed when the command
// ends. A store that cannot be opened fails every call with why.
func (g *Globals) Store() state.Store {
	if g.StoreURL == "" {
		return state.OpenDir(g.ConfigDir, g.LockTimeout)
	}
	if g.store == nil {
		ctx := g.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		s, closeStore, err := openStore(ctx, g, g.StoreURL)
		if err != nil {
			g.store = state.Unavailable(err)
		} else {
			g.store, g.closeStore = s, closeStore
		}
	}
	return g.store
}

// close lets go of a shared store the command opened.
func (g *Globals) close() {
	if g.closeStore != nil {
		_ = g.closeStore()
		g.store, g.closeStore = nil, nil
	}
}

// globalValue returns the context that holds a global flag's value: the
// leaf when the flag was given after the command, else the app (flag given
// before the command, environment, or default). urfave's own lookup would
// stop at the leaf, whose copy holds its default.
func globalValue(c *cli.Context, name string) *cli.Context {
	if slices.Contains(c.LocalFlagNames(), name) {
		return c
	}
	root := c
	for _, cc := range c.Lineage() {
		if cc.Command != nil { // the outermost context urfave makes has none
			root = cc
		}
	}
	return root
}

// resolveGlobals reads the global flags and sets up logging.
func resolveGlobals(c *cli.Context) (*Globals, error) {
	g := &Globals{
		Output:      strings.ToLower(globalValue(c, flgOutput).String(flgOutput)),
		Quiet:       globalValue(c, flgQuiet).Bool(flgQuiet),
		LockTimeout: globalValue(c, flgLockTimeout).Duration(flgLockTimeout),
		Stdout:      c.App.Writer,
		Stderr:      c.App.ErrWriter,
	}
	if g.Output != outputTable && g.Output != outputJSON {
		return nil, fault.Invalidf("use --output table or --output json", "unknown output format %q", g.Output)
	}
	if g.LockTimeout < 0 {
		return nil, fault.Invalidf("give a duration such as 30s or 2m", "--lock-timeout must not be negative")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(globalValue(c, flgLogLevel).String(flgLogLevel))); err != nil {
		return nil, fault.Invalidf("use debug, info, warn or error", "unknown log level %q", globalValue(c, flgLogLevel).String(flgLogLevel))
	}
	// Quiet cron runs must not mail "certificate issued": info lines go
	// unless a level was asked for (flag or P2PTLS_LOG_LEVEL).
	if g.Quiet && !globalValue(c, flgLogLevel).IsSet(flgLogLevel) {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f := globalValue(c, flgLogFormat).String(flgLogFormat); f {
	case "text":
		slog.SetDefault(slog.New(slog.NewTextHandler(g.Stderr, opts)))
	case "json":
		slog.SetDefault(slog.New(slog.NewJSONHandler(g.Stderr, opts)))
	default:
		return nil, fault.Invalidf("use text or json", "unknown log format %q", f)
	}
	dir, err := state.ResolveDir(globalValue(c, flgConfigDir).String(flgConfigDir), os.Getenv)
	if err != nil {
		return nil, err
	}
	g.ConfigDir = dir
	g.StoreURL = strings.TrimSpace(globalValue(c, flgStore).String(flgStore))
	if g.StoreURL != "" {
		if scheme, _, _ := strings.Cut(g.StoreURL, "://"); !strings.EqualFold(scheme, schemeEtcd) {
			return nil, fault.Invalidf("give etcd://HOST:PORT[,HOST:PORT...]/PREFIX; a state directory is --config-dir", "--%s (%s) %q is no store URL", flgStore, envStore, redactURL(g.StoreURL))
		}
		if _, err := etcdstore.ParseURL(g.StoreURL); err != nil {
			return nil, fmt.Errorf("--%s (%s): %w", flgStore, envStore, err)
		}
	}
	return g, nil
}
