package commands

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/dnscred"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/text"
)

const (
	flgProvider     = "provider"
	flgAPITokenFile = "api-token-file"
	flgAPITokenEnv  = "api-token-env"
	flgAPIBaseURL   = "api-base-url"
	flgReplace      = "replace"
)

func dnsCredentialCommand() *cli.Command {
	return &cli.Command{
		Name:  "dns-credential",
		Usage: "DNS provider credentials for DNS-01 validation",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:      "add",
				Usage:     "save a Cloudflare API token",
				ArgsUsage: "NAME --provider cloudflare (--api-token-file F | --api-token-env VAR) [--api-base-url URL]",
				Description: "NAME is 1-63 lower-case letters, digits, '-' or '_'. The token is read from a\n" +
					"file ('-' for standard input) or from the environment variable named by\n" +
					"--api-token-env, never from the command line. It is stored in\n" +
					"secrets/dns/NAME.token (0600), never in p2ptls.toml, and never printed:\n" +
					"listings show its last 4 characters. It needs the permissions Zone:Read and\n" +
					"DNS:Edit; 'p2ptls dns-credential test NAME' checks them. --api-base-url points\n" +
					"at a Cloudflare-compatible API instead of " + dnscred.DefaultCloudflareBaseURL + ".\n" +
					"--replace gives an existing credential a new token, e.g. to rotate it while\n" +
					"mappings use it; it stays enabled or disabled, and keeps its API base URL\n" +
					"unless --api-base-url is given. A new credential is enabled." + examples(
					"p2ptls dns-credential add cf --provider cloudflare --api-token-file /run/secrets/cf-token",
					"p2ptls dns-credential add cf --api-token-env CF_DNS_API_TOKEN",
					"p2ptls dns-credential add cf --replace --api-token-file - < new-token.txt"),
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgProvider, Usage: "DNS provider: cloudflare", Value: state.ProviderCloudflare},
					&cli.StringFlag{Name: flgAPITokenFile, Usage: "read the API token from this file ('-': standard input)"},
					&cli.StringFlag{Name: flgAPITokenEnv, Usage: "read the API token from the environment variable with this name"},
					&cli.StringFlag{Name: flgAPIBaseURL, Usage: "Cloudflare-compatible API base URL (default " + dnscred.DefaultCloudflareBaseURL + ")"},
					&cli.BoolFlag{Name: flgReplace, Usage: "give an existing credential a new token"},
				},
			}, dnsCredentialAddAction),
			leaf(&cli.Command{Name: "list", Usage: "list DNS credentials (tokens show as their last 4 characters)"}, dnsCredentialListAction),
			leaf(&cli.Command{Name: "show", Usage: "show one DNS credential", ArgsUsage: "NAME"}, dnsCredentialShowAction),
			leaf(&cli.Command{Name: "enable", Usage: "enable a DNS credential for issuance", ArgsUsage: "NAME",
				Description: examples(
					"p2ptls dns-credential enable cf",
					"p2ptls dns-credential enable cf --output json")}, dnsCredentialEnableAction),
			leaf(&cli.Command{Name: "disable", Usage: "disable a DNS credential: issuance refuses to use it", ArgsUsage: "NAME",
				Description: examples(
					"p2ptls dns-credential disable cf",
					"p2ptls dns-credential disable cf --quiet")}, dnsCredentialDisableAction),
			leaf(&cli.Command{Name: "remove", Usage: "remove a DNS credential that no mapping uses, and its token", ArgsUsage: "NAME",
				Description: examples(
					"p2ptls dns-credential remove cf",
					"p2ptls dns-credential remove cf --output json")}, dnsCredentialRemoveAction),
			leaf(&cli.Command{
				Name:      "test",
				Usage:     "check a DNS credential against the provider's API; exit 1 on a failure",
				ArgsUsage: "NAME",
				Description: "Checks that the token is valid and active, that it can read zones (Zone:Read)\n" +
					"and, in each zone it reads (up to 50), that it can edit DNS (DNS:Edit) by\n" +
					"creating the TXT record _p2ptls-test.<zone> and deleting it again. A\n" +
					"disabled credential can be tested too." + examples(
					"p2ptls dns-credential test cf",
					"p2ptls dns-credential test cf --quiet || echo 'the cf token lacks a permission'"),
			}, dnsCredentialTestAction),
		},
	}
}

func dnsCredentialAddAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	full := c.Command.HelpName
	file, env := c.IsSet(flgAPITokenFile), c.IsSet(flgAPITokenEnv)
	switch {
	case !file && !env:
		return fault.Invalidf(fmt.Sprintf("run '%s --help' for usage; the token is never taken from the command line", full),
			"%s needs --%s or --%s", full, flgAPITokenFile, flgAPITokenEnv)
	case file && env:
		return fault.Invalidf("give only one of them", "%s takes --%s or --%s, not both", full, flgAPITokenFile, flgAPITokenEnv)
	}
	var token string
	if file {
		token, err = dnscred.TokenFromFile(c.String(flgAPITokenFile), os.Stdin)
	} else {
		token, err = dnscred.TokenFromEnv(c.String(flgAPITokenEnv), os.Getenv)
	}
	if err != nil {
		return err
	}
	cred := state.DNSCredential{Name: name, Provider: c.String(flgProvider), APIBaseURL: c.String(flgAPIBaseURL)}
	verb := "added"
	if c.Bool(flgReplace) {
		verb = "replaced the token of"
		err = dnscred.Replace(ctx, g.Store(), cred, token)
	} else {
		err = dnscred.Add(ctx, g.Store(), cred, token)
	}
	if err != nil {
		return err
	}
	return printDNSCredential(ctx, g, name, "%s DNS credential %s; check it with 'p2ptls dns-credential test %s'", verb, name, name)
}

// printDNSCredential prints one credential as "dns-credential list" does,
// after a message.
func printDNSCredential(ctx context.Context, g *Globals, name, format string, args ...any) error {
	cfg, err := state.LoadConfig(ctx, g.Store())
	if err != nil {
		return err
	}
	info, err := dnscred.Show(ctx, g.Store(), cfg, name)
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, info)
	}
	if g.Quiet {
		return nil
	}
	g.Infof(format, args...)
	return printDNSCredentialTable(g, []dnscred.Info{info})
}

func dnsCredentialListAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cfg, err := state.LoadConfig(ctx, g.Store())
	if err != nil {
		return err
	}
	list, err := dnscred.List(ctx, g.Store(), cfg)
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, text.NonNil(list))
	}
	return printDNSCredentialTable(g, list)
}

func printDNSCredentialTable(g *Globals, list []dnscred.Info) error {
	rows := make([][]string, 0, len(list))
	for _, d := range list {
		token := shownHint(d.TokenHint)
		if d.Problem != "" {
			token = "MISSING"
		}
		rows = append(rows, []string{d.Name, d.Provider, strconv.FormatBool(d.Enabled), token, orDash(strings.Join(d.UsedBy, ","))})
	}
	if err := printTable(g.Stdout, []string{"NAME", "PROVIDER", "ENABLED", "TOKEN", "USED BY"}, rows); err != nil {
		return err
	}
	for _, d := range list {
		if d.Problem != "" {
			g.Warnf("DNS credential %s cannot be used: %s", d.Name, d.Problem)
		}
	}
	return nil
}

// shownHint is how tables show a token_hint: "…" and the last 4
// characters, or "…" alone for a token too short to show any.
func shownHint(hint string) string { return "…" + hint }

func dnsCredentialShowAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	cfg, err := state.LoadConfig(ctx, g.Store())
	if err != nil {
		return err
	}
	d, err := dnscred.Show(ctx, g.Store(), cfg, name)
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, d)
	}
	base := d.APIBaseURL
	if base == "" {
		base = dnscred.DefaultCloudflareBaseURL + " (default)"
	}
	token := shownHint(d.TokenHint)
	if d.Problem != "" {
		token = d.Problem
	}
	return printFields(g.Stdout, [][2]string{
		{"name", d.Name}, {"provider", d.Provider}, {"enabled", strconv.FormatBool(d.Enabled)},
		{"token", token}, {"api base url", base}, {"used by", orDash(strings.Join(d.UsedBy, ", "))},
	})
}

func dnsCredentialEnableAction(ctx context.Context, g *Globals, c *cli.Context) error {
	return setDNSCredentialEnabled(ctx, g, c, true)
}

func dnsCredentialDisableAction(ctx context.Context, g *Globals, c *cli.Context) error {
	return setDNSCredentialEnabled(ctx, g, c, false)
}

func setDNSCredentialEnabled(ctx context.Context, g *Globals, c *cli.Context, enabled bool) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	changed, err := dnscred.SetEnabled(ctx, g.Store(), name, enabled)
	if err != nil {
		return err
	}
	word := "disabled"
	if enabled {
		word = "enabled"
	}
	if !changed {
		return printDNSCredential(ctx, g, name, "DNS credential %s is already %s", name, word)
	}
	return printDNSCredential(ctx, g, name, "%s DNS credential %s", word, name)
}

func dnsCredentialRemoveAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	removed, err := dnscred.Remove(ctx, g.Store(), name)
	if err != nil {
		return err
	}
	return g.Done(removed, "removed DNS credential %s and its token", removed.Name)
}

func dnsCredentialTestAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	cfg, err := state.LoadConfig(ctx, g.Store())
	if err != nil {
		return err
	}
	cred, err := dnscred.Get(ctx, g.Store(), cfg, name)
	if err != nil {
		return err
	}
	res, testErr := dnscred.Test(ctx, cred)
	if res == nil {
		return testErr
	}
	if g.JSON() {
		if err := printJSON(g.Stdout, res); err != nil {
			return err
		}
		return testErr
	}
	rows := make([][]string, 0, len(res.Checks))
	for _, ch := range res.Checks {
		if g.Quiet && ch.Status == dnscred.CheckOK { // as doctor: only what is not ok
			continue
		}
		check := ch.ID
		if ch.Zone != "" {
			check += " " + ch.Zone
		}
		rows = append(rows, []string{check, ch.Status, ch.Message})
	}
	if len(rows) > 0 {
		if err := printTable(g.Stdout, []string{"CHECK", "STATUS", "MESSAGE"}, rows); err != nil {
			return err
		}
	}
	if testErr == nil {
		g.Infof("DNS credential %s works against %s", name, res.APIBaseURL)
		if d, err := dnscred.Show(ctx, g.Store(), cfg, name); err == nil && !d.Enabled {
			g.Infof("it is disabled: enable it with 'p2ptls dns-credential enable %s'", name)
		}
	}
	return testErr
}
