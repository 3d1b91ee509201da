package commands

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/text"
)

const (
	flgAddr     = "addr"
	flgHTTPAddr = "http-addr"
	flgFallback = "fallback"
	flgUpstream = "upstream"
)

func listenerCommand() *cli.Command {
	return &cli.Command{
		Name:  "listener",
		Usage: "public HTTPS listeners",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "add",
				Usage:     "add an HTTPS listener",
				ArgsUsage: "NAME --addr ADDR",
				Description: "NAME is 1-63 lower-case letters, digits, '-' or '_'. ADDR is HOST:PORT as for\n" +
					"a listen socket (':443', '127.0.0.1:8443', '[::1]:443'). --http-addr adds the\n" +
					"HTTP listener that answers ACME HTTP-01 and redirects to HTTPS." + examples(
					"p2ptls listener add web --addr :443 --http-addr :80",
					"p2ptls listener add internal --addr 127.0.0.1:8443 --fallback reject --upstream http://127.0.0.1:8080"),
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgAddr, Usage: "HTTPS listen address HOST:PORT (required)"},
					&cli.StringFlag{Name: flgHTTPAddr, Usage: "HTTP listen address HOST:PORT for ACME HTTP-01 and redirects"},
					&cli.StringFlag{Name: flgFallback, Usage: "when no mapping matches the SNI: self-signed or reject", Value: state.FallbackSelfSigned},
					&cli.StringFlag{Name: flgUpstream, Usage: "default reverse-proxy target URL for this listener's mappings"},
				},
			}, listenerAddAction),
			leaf(&cli.Command{Name: "list", Usage: "list HTTPS listeners"}, listenerListAction),
			leaf(&cli.Command{Name: "show", Usage: "show one HTTPS listener", ArgsUsage: "NAME"}, listenerShowAction),
			leaf(&cli.Command{Name: "remove", Usage: "remove an HTTPS listener that has no mappings", ArgsUsage: "NAME",
				Description: examples(
					"p2ptls listener remove internal",
					"p2ptls listener remove internal --output json")}, listenerRemoveAction),
		},
	}
}

func listenerAddAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	if !c.IsSet(flgAddr) {
		return missingFlag(c.Command.HelpName, flgAddr)
	}
	l := state.Listener{
		Name:     name,
		Addr:     c.String(flgAddr),
		HTTPAddr: c.String(flgHTTPAddr),
		Fallback: c.String(flgFallback),
		Upstream: c.String(flgUpstream),
	}
	return runListenerAdd(ctx, g, l)
}

func runListenerAdd(ctx context.Context, g *Globals, l state.Listener) error {
	added, err := state.AddListener(ctx, g.Store(), l)
	if err != nil {
		return err
	}
	return g.Done(added, "added listener %s on %s", added.Name, added.Addr)
}

func listenerListAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	// Only p2ptls.toml: the mapping records are not what it prints.
	ls, err := state.LoadListeners(ctx, g.Store())
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, text.NonNil(ls))
	}
	rows := make([][]string, 0, len(ls))
	for _, l := range ls {
		rows = append(rows, []string{l.Name, l.Addr, orDash(l.HTTPAddr), l.Fallback, orDash(l.Upstream)})
	}
	return printTable(g.Stdout, []string{"NAME", "ADDR", "HTTP ADDR", "FALLBACK", "UPSTREAM"}, rows)
}

func listenerShowAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	ls, err := state.LoadListeners(ctx, g.Store())
	if err != nil {
		return err
	}
	l, err := state.FindListenerIn(ls, name)
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, l)
	}
	return printFields(g.Stdout, [][2]string{
		{"name", l.Name}, {"addr", l.Addr}, {"http addr", orDash(l.HTTPAddr)},
		{"fallback", l.Fallback}, {"upstream", orDash(l.Upstream)},
	})
}

func listenerRemoveAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	removed, err := state.RemoveListener(ctx, g.Store(), name)
	if err != nil {
		return err
	}
	return g.Done(removed, "removed listener %s", removed.Name)
}
