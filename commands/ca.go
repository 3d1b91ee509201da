package commands

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

// Management flags; each reads the environment variable of the seed.
const (
	flgPublicURL     = "public-url"
	flgExtraHosts    = "extra-hosts"
	flgListen        = "listen"
	flgTLSMode       = "tls-mode"
	flgTLSCertFile   = "tls-cert-file"
	flgTLSKeyFile    = "tls-key-file"
	flgAllowInsecure = "allow-insecure-http"
	flgFormat        = "format"
	flgOut           = "out"
	flgConfirmNewCA  = "confirm-new-ca" // with flgReplace (dnscredential.go)
)

func namesFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flgPublicURL, Usage: "URL agents use to reach management; its host goes into the server certificate", EnvVars: []string{"MANAGEMENT_PUBLIC_URL"}},
		&cli.StringFlag{Name: flgExtraHosts, Usage: "comma-separated extra DNS names and IPs for the server certificate", EnvVars: []string{"MANAGEMENT_TLS_EXTRA_HOSTS"}},
	}
}

func modeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flgTLSMode, Usage: "management TLS mode: auto, provided or off", Value: statemgmt.ModeAuto, EnvVars: []string{"MANAGEMENT_TLS_MODE"}},
		&cli.StringFlag{Name: flgTLSCertFile, Usage: "mode provided: certificate (chain) PEM file", EnvVars: []string{"MANAGEMENT_TLS_CERT_FILE"}},
		&cli.StringFlag{Name: flgTLSKeyFile, Usage: "mode provided: private key PEM file", EnvVars: []string{"MANAGEMENT_TLS_KEY_FILE"}},
		&cli.BoolFlag{Name: flgAllowInsecure, Usage: "mode off: allow plain HTTP for management", EnvVars: []string{"MANAGEMENT_ALLOW_INSECURE_HTTP"}},
	}
}

// managementSettings reads whichever management flags the command has.
func managementSettings(c *cli.Context) (statemgmt.Settings, error) {
	s := statemgmt.Settings{
		Mode:              c.String(flgTLSMode),
		CertFile:          c.String(flgTLSCertFile),
		KeyFile:           c.String(flgTLSKeyFile),
		AllowInsecureHTTP: c.Bool(flgAllowInsecure),
		PublicURL:         c.String(flgPublicURL),
		ExtraHosts:        statemgmt.SplitHosts(c.String(flgExtraHosts)),
		Listen:            c.String(flgListen),
	}
	if err := s.Validate(); err != nil {
		return s, err
	}
	// A command without --tls-mode (ca init, ca renew-server) works in
	// auto mode; the URL it writes into the certificate is still for the
	// serve that MANAGEMENT_TLS_MODE configures.
	mode := s.Mode
	if !slices.Contains(c.FlagNames(), flgTLSMode) && os.Getenv("MANAGEMENT_TLS_MODE") != "" {
		mode = os.Getenv("MANAGEMENT_TLS_MODE")
	}
	return s, refuseHTTPPublicURL(s.PublicURL, mode)
}

// refuseHTTPPublicURL refuses an http:// public URL while management serves
// TLS: agents given it would speak plain HTTP to a TLS port and fail, or
// trust whatever answers in clear.
func refuseHTTPPublicURL(publicURL, mode string) error {
	u, err := url.Parse(publicURL)
	if publicURL == "" || err != nil || !strings.EqualFold(u.Scheme, "http") || mode == statemgmt.ModeOff {
		return nil
	}
	return fault.Invalidf(fmt.Sprintf("write it with https:// (https://%s): agents reach management over TLS; plain HTTP needs MANAGEMENT_TLS_MODE=off and MANAGEMENT_ALLOW_INSECURE_HTTP=true", u.Host),
		"MANAGEMENT_PUBLIC_URL (--public-url) %q is plain HTTP, but management TLS is on (mode %s)", publicURL, mode)
}

func caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "management TLS: the local CA and the management server certificate",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:  "init",
				Usage: "create the management CA and server certificate (replaces one only with --replace --confirm-new-ca)",
				Description: "The CA (ECDSA P-256, 10 years) and the server certificate (ECDSA P-256, 397 days)\n" +
					"go to certs/management. The server certificate carries the host of\n" +
					"MANAGEMENT_PUBLIC_URL, every MANAGEMENT_TLS_EXTRA_HOSTS entry, localhost,\n" +
					"127.0.0.1, ::1 and this machine's host name. 'p2ptls serve' does the same on\n" +
					"its first start in auto mode.\n\n" +
					"management-ca.toml records the CA that was created or given to agents. While it\n" +
					"names one, a missing certs/management is a lost CA: serve refuses to start and\n" +
					"ca init refuses, until certs/management is restored from a backup or a new CA is\n" +
					"accepted with --replace --confirm-new-ca. That makes a new CA, keeps the old one\n" +
					"(if any) in certs/management/retired/<time>/, and prints the new fingerprint and\n" +
					"the commands every agent runs to trust it ('p2ptls agent bootstrap --fingerprint\n" +
					"NEW', or the lines of 'p2ptls agent env'). 'p2ptls doctor' warns\n" +
					"(management.ca_backup) until a backup holds the new CA." + examples(
					"p2ptls ca init --public-url https://mgmt.example.com:8443",
					"p2ptls ca init --public-url https://mgmt.example.com:8443 --extra-hosts 10.0.0.5,mgmt.internal",
					"p2ptls ca init --replace --confirm-new-ca --public-url https://mgmt.example.com:8443"),
				Flags: append(namesFlags(),
					&cli.BoolFlag{Name: flgReplace, Usage: "make a new CA even though this state has (or had) one; needs --confirm-new-ca"},
					&cli.BoolFlag{Name: flgConfirmNewCA, Usage: "with --replace: confirm that every agent must then be given the new CA"},
				),
			}, caInitAction),
			leaf(&cli.Command{
				Name:  "show",
				Usage: "show the mode, the CA and the server certificate",
				Flags: append(namesFlags(), modeFlags()...),
			}, caShowAction),
			leaf(&cli.Command{
				Name:  "export",
				Usage: "print the CA for agents (MANAGEMENT_CA_FILE / MANAGEMENT_CA_PEM_BASE64)",
				Description: examples(
					"p2ptls ca export --out /etc/p2pstream/management-ca.pem",
					"p2ptls ca export --format base64"),
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgFormat, Usage: "pem (for MANAGEMENT_CA_FILE) or base64 (for MANAGEMENT_CA_PEM_BASE64)", Value: "pem"},
					&cli.StringFlag{Name: flgOut, Usage: "write to this file (0644) instead of stdout"},
				},
			}, caExportAction),
			leaf(&cli.Command{
				Name:  "renew-server",
				Usage: "re-issue the management server certificate from the same CA",
				Description: "A running 'p2ptls serve' serves the new certificate within seconds." + examples(
					"p2ptls ca renew-server --public-url https://mgmt.example.com:8443",
					"p2ptls ca renew-server --extra-hosts 10.0.0.5,mgmt.internal --quiet"),
				Flags: namesFlags(),
			}, caRenewServerAction),
			caRotateCommand(),
			caTrustCommand(),
		},
	}
}

func caInitAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	replace, confirm := c.Bool(flgReplace), c.Bool(flgConfirmNewCA)
	switch {
	case replace && !confirm:
		return fault.Invalidf("pass --confirm-new-ca too, then give every agent the new CA ('p2ptls agent env'); to keep the CA agents trust, restore certs/management from a backup instead",
			"--replace makes a new management CA, and every agent that trusts the current one refuses management until it is given the new one")
	case confirm && !replace:
		return fault.Invalidf("use --replace --confirm-new-ca together", "--confirm-new-ca confirms --replace, which was not given")
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	if !replace {
		if err := statemgmt.Init(ctx, g.Store(), set.WantedNames(), time.Now()); err != nil {
			return err
		}
		return printCAInfo(ctx, g, set, "created the management CA")
	}
	r, err := statemgmt.Replace(ctx, g.Store(), set.WantedNames(), time.Now())
	if err != nil {
		return err
	}
	const agentCAFile = "/etc/p2pstream/management-ca.pem"
	bootstrap := agent.BootstrapCommand(set.PublicURL, r.New, agentCAFile)
	retrust := []string{bootstrap, "p2ptls agent env"}
	if g.JSON() {
		info, err := statemgmt.Show(ctx, g.Store(), set)
		if err != nil {
			return err
		}
		return printJSON(g.Stdout, struct {
			*statemgmt.Info
			OldCA         string   `json:"old_ca_fingerprint_sha256"`
			Kept          string   `json:"old_ca_kept_in"`
			AgentCommands []string `json:"agent_commands"`
		}{info, r.Old, keptIn(g, r.Kept), retrust})
	}
	headline := "created a new management CA " + r.New
	if r.Old != "" {
		headline += fmt.Sprintf("; the old CA %s is kept in %s", r.Old, keptIn(g, r.Kept))
	}
	if g.Quiet {
		g.Warnf("every agent refuses management until it trusts the new CA %s: on each one run '%s' (then MANAGEMENT_CA_FILE=%s), or set the lines of 'p2ptls agent env' from here", r.New, bootstrap, agentCAFile)
		return nil
	}
	headline += "\nevery agent refuses management until it trusts the new CA; on each agent either run\n  " + bootstrap +
		"\n  and set MANAGEMENT_CA_FILE=" + agentCAFile + ",\nor set in its environment the lines this prints here:\n  p2ptls agent env" +
		"\nthen take a backup that holds the new CA (doctor warns until one does): p2ptls backup --out FILE"
	return printCAInfo(ctx, g, set, headline)
}

// keptIn is where Replace kept the old CA, "" when there was none.
func keptIn(g *Globals, kept string) string {
	if kept == "" {
		return ""
	}
	return state.Locate(g.Store(), kept)
}

func caShowAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	return printCAInfo(ctx, g, set, "")
}

func caRenewServerAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	if _, err := statemgmt.RenewServer(ctx, g.Store(), set.WantedNames(), time.Now()); err != nil {
		return err
	}
	return printCAInfo(ctx, g, set, "re-issued the management server certificate")
}

// printCAInfo prints what "ca show" shows, after an optional headline.
func printCAInfo(ctx context.Context, g *Globals, set statemgmt.Settings, headline string) error {
	info, err := statemgmt.Show(ctx, g.Store(), set)
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, info)
	}
	if headline != "" && g.Quiet { // a change: quiet says nothing more
		warnMissing(g, info)
		return nil
	}
	if headline != "" {
		g.Infof("%s", headline)
	}
	fields := [][2]string{{"mode", info.Mode}}
	if ca := info.CA; ca != nil {
		fields = append(fields,
			[2]string{"CA subject", ca.Subject},
			[2]string{"CA SHA-256", ca.FingerprintSHA256},
			[2]string{"CA expires", ca.NotAfter.Format(time.RFC3339)},
			[2]string{"CA file", ca.File})
	}
	if srv := info.Server; srv != nil {
		fields = append(fields,
			[2]string{"server names", strings.Join(append(append([]string{}, srv.DNSNames...), srv.IPAddresses...), ", ")},
			[2]string{"server expires", srv.NotAfter.Format(time.RFC3339)},
			[2]string{"server file", srv.File})
	}
	if err := printFields(g.Stdout, fields); err != nil {
		return err
	}
	warnMissing(g, info)
	return nil
}

func warnMissing(g *Globals, info *statemgmt.Info) {
	if len(info.Missing) > 0 {
		g.Warnf("the server certificate lacks %s; run 'p2ptls ca renew-server' (or restart serve)", strings.Join(info.Missing, ", "))
	}
}

func caExportAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	format := c.String(flgFormat)
	if format != "pem" && format != "base64" {
		return fault.Invalidf("use --format pem or --format base64", "unknown export format %q", format)
	}
	caPEM, err := statemgmt.AgentBundle(ctx, g.Store())
	if err != nil {
		return err
	}
	// Handed out: from now on agents trust it, and its loss must not go
	// unnoticed (see statemgmt.CARecordFile).
	if err := statemgmt.RecordCA(ctx, g.Store(), statemgmt.RecordByExport, true, time.Now()); err != nil {
		g.Warnf("the management CA was not recorded in %s (%v): doctor and serve cannot tell if it is lost later", statemgmt.CARecordFile, err)
	}
	out := caPEM
	if format == "base64" {
		out = []byte(base64.StdEncoding.EncodeToString(caPEM) + "\n")
	}
	if path := c.String(flgOut); path != "" {
		if err := state.WriteFileAtomic(path, out, state.PublicMode); err != nil {
			return fault.Failf("check that the directory exists and is writable", "write %s: %v", filepath.Clean(path), err)
		}
		return g.Done(struct {
			File   string `json:"file"`
			Format string `json:"format"`
		}{path, format}, "wrote the management CA to %s", path)
	}
	_, err = fmt.Fprint(g.Stdout, string(out))
	return err
}
