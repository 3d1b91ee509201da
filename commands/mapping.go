package commands

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/mappings"
)

const (
	flgListener      = "listener"
	flgHost          = "host"
	flgID            = "id"
	flgManual        = "manual"
	flgFile          = "file"
	flgSelfSigned    = "self-signed"
	flgACME          = "acme"
	flgCertFile      = "cert-file"
	flgKeyFile       = "key-file"
	flgDays          = "days"
	flgChallenge     = "challenge"
	flgDNSCredential = "dns-credential"
	flgKeyType       = "key-type"
	flgProfile       = "profile"
	flgAllowExpired  = "allow-expired"
)

func mappingCommand() *cli.Command {
	return &cli.Command{
		Name:  "mapping",
		Usage: "certificate mappings of HTTPS listeners (hosts -> certificate source)",
		Subcommands: append([]*cli.Command{
			leaf(&cli.Command{
				Name:      "add",
				Usage:     "map hosts on a listener to a manual, file, self-signed or ACME certificate",
				ArgsUsage: "--listener NAME --host H [--host H ...] SOURCE",
				Description: "SOURCE is one of:\n" +
					"  --manual --cert-file F --key-file F   validated and copied into the state (\"uploaded\")\n" +
					"  --file --cert-file F --key-file F     referenced by path, re-read when the files change\n" +
					"  --self-signed [--days N]              generated now (ECDSA P-256, default 90 days)\n" +
					"  --acme --challenge http-01|tls-alpn-01|dns-01 [--dns-credential NAME]\n" +
					"         [--key-type ec256|ec384|rsa2048|rsa4096] [--profile NAME]\n\n" +
					"Hosts are exact names or a wildcard on the leftmost label (*.example.com); they\n" +
					"are lower-cased, a trailing dot is dropped and IDNs are stored as punycode. A\n" +
					"wildcard needs DNS-01. An uploaded or file certificate must cover every host and\n" +
					"be valid now; --allow-expired accepts an expired or not yet valid one with a\n" +
					"warning. The id defaults to one made from the first host. --profile must be one\n" +
					"the ACME server advertises ('p2ptls acme account show' lists them); when the\n" +
					"server cannot be reached it is stored with a warning." + examples(
					"p2ptls mapping add --listener web --host app.example.com --acme --challenge http-01",
					"p2ptls mapping add --listener web --host '*.example.com' --host example.com --acme --challenge dns-01 --dns-credential cf",
					"p2ptls mapping add --listener web --host app.example.com --manual --cert-file fullchain.pem --key-file privkey.pem",
					"p2ptls mapping add --listener web --host dev.example.test --id dev --self-signed --days 30"),
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgListener, Usage: "HTTPS listener the hosts are served on (required)"},
					&cli.StringSliceFlag{Name: flgHost, Usage: "host name, wildcard (*.example.com) or IP address (not with dns-01), repeatable (required)"},
					&cli.StringFlag{Name: flgID, Usage: "mapping id (default: made from the first host)"},
					&cli.StringFlag{Name: flgUpstream, Usage: "reverse-proxy target URL for these hosts (default: the listener's)"},
					&cli.BoolFlag{Name: flgManual, Usage: "source: upload --cert-file and --key-file into the state"},
					&cli.BoolFlag{Name: flgFile, Usage: "source: serve --cert-file and --key-file from where they are"},
					&cli.BoolFlag{Name: flgSelfSigned, Usage: "source: generate a self-signed certificate"},
					&cli.BoolFlag{Name: flgACME, Usage: "source: obtain the certificate with ACME"},
					&cli.StringFlag{Name: flgCertFile, Usage: "certificate chain PEM, leaf first"},
					&cli.StringFlag{Name: flgKeyFile, Usage: "private key PEM"},
					&cli.IntFlag{Name: flgDays, Usage: "self-signed validity in days (1-397)", Value: mappings.DefaultDays},
					&cli.StringFlag{Name: flgChallenge, Usage: "ACME challenge: http-01, tls-alpn-01 or dns-01"},
					&cli.StringFlag{Name: flgDNSCredential, Usage: "DNS credential for dns-01"},
					&cli.StringFlag{Name: flgKeyType, Usage: "ACME key type: ec256, ec384, rsa2048 or rsa4096", Value: "ec256"},
					&cli.StringFlag{Name: flgProfile, Usage: "ACME profile (e.g. shortlived), checked against the ones the ACME server offers"},
					&cli.BoolFlag{Name: flgAllowExpired, Usage: "accept an expired or not yet valid manual/file certificate"},
				},
			}, mappingAddAction),
			leaf(&cli.Command{
				Name:  "list",
				Usage: "list mappings and the state of their certificates",
				Flags: []cli.Flag{&cli.StringFlag{Name: flgListener, Usage: "only this listener's mappings"}},
			}, mappingListAction),
			leaf(&cli.Command{
				Name:      "set",
				Usage:     "change a mapping in place: upstream, hosts, ACME challenge, DNS credential, profile, key type",
				ArgsUsage: "ID [--upstream URL] [--host H ...] [--challenge C] [--dns-credential NAME] [--profile P] [--key-type T]",
				Description: "Only the settings given change; --host replaces the hosts as a whole, and an\n" +
					"empty value (--upstream '') clears a setting. The rules are those of 'mapping add'.\n" +
					"A self-signed mapping with new hosts gets a new certificate at once. An ACME\n" +
					"mapping with new hosts or ACME settings is due for a new order: serve's renewal\n" +
					"loop makes it, 'p2ptls cert issue ID' makes it now; its current certificate keeps\n" +
					"serving until then unless it covers none of the new hosts. An uploaded or file\n" +
					"certificate must cover the new hosts. The upstream alone changes nothing else." + examples(
					"p2ptls mapping set app-example-com --upstream http://127.0.0.1:9000",
					"p2ptls mapping set app-example-com --host app.example.com --host www.example.com",
					"p2ptls mapping set wildcard-example-com --challenge dns-01 --dns-credential cf"),
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgUpstream, Usage: "reverse-proxy target URL ('' for the listener's)"},
					&cli.StringSliceFlag{Name: flgHost, Usage: "the new hosts, repeatable: replaces them all"},
					&cli.StringFlag{Name: flgChallenge, Usage: "ACME challenge: http-01, tls-alpn-01 or dns-01"},
					&cli.StringFlag{Name: flgDNSCredential, Usage: "DNS credential for dns-01 ('' to clear)"},
					&cli.StringFlag{Name: flgProfile, Usage: "ACME profile ('' for the CA's default)"},
					&cli.StringFlag{Name: flgKeyType, Usage: "ACME key type: ec256, ec384, rsa2048 or rsa4096"},
				},
			}, mappingSetAction),
			leaf(&cli.Command{Name: "show", Usage: "show one mapping and its certificate", ArgsUsage: "ID"}, certShowAction),
			leaf(&cli.Command{Name: "remove", Usage: "remove a mapping and its certificate files", ArgsUsage: "ID",
				Description: examples(
					"p2ptls mapping remove app-example-com",
					"p2ptls mapping remove dev --quiet")}, mappingRemoveAction),
		}, mappingBulkCommands()...),
	}
}

func mappingAddAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	full := c.Command.HelpName
	if c.String(flgListener) == "" || len(c.StringSlice(flgHost)) == 0 {
		return missingFlag(full, flgListener, flgHost)
	}
	var sources []string
	for _, f := range []string{flgManual, flgFile, flgSelfSigned, flgACME} {
		if c.Bool(f) {
			sources = append(sources, f)
		}
	}
	if len(sources) != 1 {
		return fault.Invalidf(fmt.Sprintf("run '%s --help' for the sources", full),
			"%s needs exactly one source: --manual, --file, --self-signed or --acme", full)
	}
	m := state.Mapping{
		ID:       c.String(flgID),
		Listener: c.String(flgListener),
		Hosts:    c.StringSlice(flgHost),
		Upstream: c.String(flgUpstream),
	}
	in := mappings.Input{AllowExpired: c.Bool(flgAllowExpired)}
	switch sources[0] {
	case flgManual, flgFile:
		if c.String(flgCertFile) == "" || c.String(flgKeyFile) == "" {
			return missingFlag(full+" --"+sources[0], flgCertFile, flgKeyFile)
		}
		m.Source = state.SourceManual
		if sources[0] == flgFile {
			m.Source = state.SourceFile
			m.CertFile, m.KeyFile = c.String(flgCertFile), c.String(flgKeyFile)
			break
		}
		var err error
		if in.CertPEM, err = mappings.ReadPEM(c.String(flgCertFile)); err != nil {
			return err
		}
		if in.KeyPEM, err = mappings.ReadPEM(c.String(flgKeyFile)); err != nil {
			return err
		}
	case flgSelfSigned:
		m.Source, m.Days = state.SourceSelfSigned, c.Int(flgDays)
	case flgACME:
		if c.String(flgChallenge) == "" {
			return missingFlag(full+" --acme", flgChallenge)
		}
		m.Source, m.Challenge, m.DNSCredential = state.SourceACME, c.String(flgChallenge), c.String(flgDNSCredential)
		m.KeyType, m.Profile = c.String(flgKeyType), c.String(flgProfile)
	}
	if err := onlyWithSource(c, sources[0]); err != nil {
		return err
	}
	in.Mapping = m
	added, warnings, err := mappings.AddChecked(ctx, g.Store(), in, time.Now(), acme.ProfileSource(g.Store()))
	if err != nil {
		return err
	}
	// Warnings go to stderr even with --quiet, as every warning does, and
	// into the JSON document as "warnings", as the API answers.
	for _, w := range warnings {
		g.Warnf("%s", w)
	}
	return printMapping(ctx, g, added, warnings, "added mapping %s on listener %s for %s", added.ID, added.Listener, strings.Join(added.Hosts, ", "))
}

// onlyWithSource refuses flags that belong to another source, so a typo
// never silently does something else.
func onlyWithSource(c *cli.Context, source string) error {
	allowed := map[string][]string{
		flgManual:     {flgCertFile, flgKeyFile, flgAllowExpired},
		flgFile:       {flgCertFile, flgKeyFile, flgAllowExpired},
		flgSelfSigned: {flgDays},
		flgACME:       {flgChallenge, flgDNSCredential, flgKeyType, flgProfile},
	}
	for _, f := range []string{flgCertFile, flgKeyFile, flgAllowExpired, flgDays, flgChallenge, flgDNSCredential, flgKeyType, flgProfile} {
		if c.IsSet(f) && !contains(allowed[source], f) {
			return fault.Invalidf(fmt.Sprintf("drop --%s, or choose the source it belongs to", f), "--%s does not apply to --%s", f, source)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// mappingAdded is what "mapping add --output json" prints: the mapping as
// "mapping list" shows it, plus the warnings (the body of the API's 201).
type mappingAdded struct {
	mappings.Info
	Warnings []string `json:"warnings,omitempty"`
}

// printMapping prints mapping m, as saved, as "mapping list" does, after a
// message.
func printMapping(ctx context.Context, g *Globals, m state.Mapping, warnings []string, format string, args ...any) error {
	info, _, err := mappings.Describe(ctx, g.Store(), m, time.Now(), func() (*state.Config, error) {
		return state.LoadConfig(ctx, g.Store())
	})
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, mappingAdded{Info: info, Warnings: warnings})
	}
	if g.Quiet {
		return nil
	}
	g.Infof(format, args...)
	return printMappingTable(g, []mappings.Info{info})
}

func mappingSetAction(ctx context.Context, g *Globals, c *cli.Context) error {
	id, err := oneArg(c, "ID")
	if err != nil {
		return err
	}
	var ch mappings.Changes
	for _, f := range []struct {
		name string
		to   **string
	}{{flgUpstream, &ch.Upstream}, {flgChallenge, &ch.Challenge}, {flgDNSCredential, &ch.DNSCredential}, {flgProfile, &ch.Profile}, {flgKeyType, &ch.KeyType}} {
		if c.IsSet(f.name) {
			v := c.String(f.name)
			*f.to = &v
		}
	}
	if c.IsSet(flgHost) {
		ch.Hosts = append([]string{}, c.StringSlice(flgHost)...)
	}
	saved, warnings, err := mappings.Set(ctx, g.Store(), id, ch, time.Now(), acme.ProfileSource(g.Store()), mappings.CLIFields)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		g.Warnf("%s", w)
	}
	return printMapping(ctx, g, saved, warnings, "changed mapping %s on listener %s for %s", saved.ID, saved.Listener, strings.Join(saved.Hosts, ", "))
}

func mappingListAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cfg, err := state.LoadConfig(ctx, g.Store())
	if err != nil {
		return err
	}
	if g.JSON() { // streamed: 100k mappings are never held as one list
		return printJSONList(g.Stdout, func(yield func(mappings.Info) error) error {
			return mappings.Each(ctx, g.Store(), cfg, c.String(flgListener), time.Now(), yield)
		})
	}
	list, err := mappings.List(ctx, g.Store(), cfg, c.String(flgListener), time.Now())
	if err != nil {
		return err
	}
	return printMappingTable(g, list)
}

func printMappingTable(g *Globals, list []mappings.Info) error {
	rows := make([][]string, 0, len(list))
	for _, m := range list {
		source := m.Source
		if m.Challenge != "" {
			source += " " + m.Challenge
		}
		expires := "-"
		if m.NotAfter != nil {
			expires = fmt.Sprintf("%s (%dd)", m.NotAfter.Format("2006-01-02"), int(time.Until(*m.NotAfter).Hours()/24))
		}
		status := m.Status
		if m.ServedBy != "" {
			status += " (served by " + m.ServedBy + ")"
		}
		rows = append(rows, []string{m.ID, m.Listener, strings.Join(m.Hosts, ","), source, status, expires, orDash(m.LastError)})
	}
	return printTable(g.Stdout, []string{"ID", "LISTENER", "HOSTS", "SOURCE", "STATUS", "EXPIRES", "LAST ERROR"}, rows)
}

func mappingRemoveAction(ctx context.Context, g *Globals, c *cli.Context) error {
	id, err := oneArg(c, "ID")
	if err != nil {
		return err
	}
	removed, err := mappings.Remove(ctx, g.Store(), id)
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, struct {
			ID       string `json:"id"`
			Listener string `json:"listener"`
		}{removed.ID, removed.Listener})
	}
	g.Infof("removed mapping %s", removed.ID)
	return nil
}
