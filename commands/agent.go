package commands

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

const (
	flgURL         = "url"
	flgCAFile      = "ca-file"
	flgCAPEMBase64 = "ca-pem-base64"
	flgFingerprint = "fingerprint"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "agent side: verify management TLS and bootstrap trust",
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:  "check",
				Usage: "verify a TLS connection to management with the agent's CA, and /healthz",
				Description: "On failure it names the mistake, first things first: a MANAGEMENT_PUBLIC_URL\n" +
					"this machine cannot reach; a server certificate the given CA did not issue\n" +
					"(CAs are named by SHA-256 fingerprint: another service such as a public\n" +
					"listener, another installation, or a wrong, lost or replaced CA); an expired\n" +
					"certificate; a certificate from the right CA without the URL's host\n" +
					"(MANAGEMENT_TLS_EXTRA_HOSTS).\n\n" +
					"During a CA rotation (/ca.crt serves the current and the next CA) it says\n" +
					"whether the given CA survives 'p2ptls ca rotate finish' (it does when it holds\n" +
					"the next CA) and, on stderr, what to run when it does not.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgURL, Usage: "management URL", EnvVars: []string{"MANAGEMENT_PUBLIC_URL"}},
					&cli.StringFlag{Name: flgCAFile, Usage: "CA certificate file", EnvVars: []string{"MANAGEMENT_CA_FILE"}},
					&cli.StringFlag{Name: flgCAPEMBase64, Usage: "CA certificate as base64 of its PEM", EnvVars: []string{"MANAGEMENT_CA_PEM_BASE64"}},
				},
			}, agentCheckAction),
			leaf(&cli.Command{
				Name:        "env",
				Usage:       "print the environment lines for an agent install",
				Description: "Prints MANAGEMENT_PUBLIC_URL and MANAGEMENT_CA_PEM_BASE64 as KEY=value lines,\nready for an env file.",
				Flags:       append(namesFlags(), modeFlags()...),
			}, agentEnvAction),
			leaf(&cli.Command{
				Name:  "bootstrap",
				Usage: "fetch the management CA and keep it only if its fingerprint matches",
				Description: "Fetches URL/ca.crt without trusting the server, accepts the CA only when its\n" +
					"SHA-256 fingerprint (as 'p2ptls ca show' prints it on the management host)\n" +
					"matches and the server's certificate is issued by it, then writes it to\n" +
					"--out. Nothing is written otherwise. During a CA rotation /ca.crt is the\n" +
					"bundle of the current and the next CA: either fingerprint is accepted (the\n" +
					"next one once management switched to it) and the whole bundle is written,\n" +
					"so the agent keeps working after the rotation's finish." + examples(
					"p2ptls agent bootstrap --url https://mgmt.example.com:8443 --fingerprint \"$CA_SHA256\" --out /etc/p2pstream/ca.pem",
					"p2ptls agent bootstrap --url https://10.0.0.5:8443 --fingerprint \"$CA_SHA256\" --out ca.pem --output json"),
				Flags: []cli.Flag{
					&cli.StringFlag{Name: flgURL, Usage: "management URL (required)", EnvVars: []string{"MANAGEMENT_PUBLIC_URL"}},
					&cli.StringFlag{Name: flgFingerprint, Usage: "expected SHA-256 fingerprint of the CA (required)"},
					&cli.StringFlag{Name: flgOut, Usage: "file to write the CA to, for MANAGEMENT_CA_FILE (required)"},
				},
			}, agentBootstrapAction),
		},
	}
}

// agentTimeout bounds a check or bootstrap from dial to last byte.
const agentTimeout = 10 * time.Second

func agentCheckAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if c.String(flgURL) == "" {
		return fault.Invalidf("set MANAGEMENT_PUBLIC_URL or pass --url", "agent check needs the management URL")
	}
	_, cas, err := agent.LoadCA(c.String(flgCAFile), c.String(flgCAPEMBase64))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	res, err := agent.Check(ctx, c.String(flgURL), agent.Trust{CAs: cas, File: c.String(flgCAFile)})
	if err != nil {
		return err
	}
	// Works now, breaks at the rotation's finish: said even in JSON and
	// quiet mode, since the exit status cannot say it.
	if rot := res.Rotation; rot != nil && !rot.SurvivesFinish {
		g.Warnf("%s; %s", rot.Message, rot.Hint)
	}
	if g.JSON() {
		return printJSON(g.Stdout, res)
	}
	if g.Quiet { // a check: the exit status is the answer
		return nil
	}
	g.Infof("management TLS at %s verifies with the given CA", res.URL)
	fields := [][2]string{
		{"CA SHA-256", res.CAFingerprint},
		{"server names", strings.Join(res.ServerNames, ", ")},
		{"server expires", res.NotAfter.Format(time.RFC3339)},
		{"TLS version", res.TLSVersion},
	}
	if rot := res.Rotation; rot != nil {
		fields = append(fields, [2]string{"CA rotation", rot.Message})
	}
	return printFields(g.Stdout, fields)
}

func agentEnvAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	caPEM, err := statemgmt.AgentCA(ctx, g.Store(), set)
	if err != nil {
		return err
	}
	if set.Mode != statemgmt.ModeProvided {
		// The auto CA handed out: recorded, so that its loss is noticed.
		if err := statemgmt.RecordCA(ctx, g.Store(), statemgmt.RecordByEnv, true, time.Now()); err != nil {
			g.Warnf("the management CA was not recorded in %s (%v): doctor and serve cannot tell if it is lost later", statemgmt.CARecordFile, err)
		}
	}
	if set.PublicURL == "" {
		g.Warnf("MANAGEMENT_PUBLIC_URL is not set: agents also need the URL they reach management at (set it, or pass --public-url)")
	}
	if g.JSON() {
		return printJSON(g.Stdout, struct {
			PublicURL string `json:"management_public_url"`
			CA        string `json:"management_ca_pem_base64"`
		}{set.PublicURL, base64.StdEncoding.EncodeToString(caPEM)})
	}
	for _, line := range agent.EnvLines(set.PublicURL, caPEM) {
		if _, err := fmt.Fprintln(g.Stdout, line); err != nil {
			return err
		}
	}
	return nil
}

func agentBootstrapAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	for _, f := range []string{flgURL, flgFingerprint, flgOut} {
		if c.String(f) == "" {
			return missingFlag(c.Command.HelpName, flgURL, flgFingerprint, flgOut)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, agentTimeout)
	defer cancel()
	caPEM, fp, err := agent.Bootstrap(ctx, c.String(flgURL), c.String(flgFingerprint))
	if err != nil {
		return err
	}
	out := c.String(flgOut)
	if err := state.WriteFileAtomic(out, caPEM, state.PublicMode); err != nil {
		return fault.Failf("check that the directory exists and is writable", "write %s: %v", out, err)
	}
	if g.JSON() {
		return printJSON(g.Stdout, struct {
			File        string `json:"file"`
			Fingerprint string `json:"fingerprint_sha256"`
		}{out, fp})
	}
	g.Infof("wrote the management CA (SHA-256 %s) to %s; use it as MANAGEMENT_CA_FILE", fp, out)
	return nil
}
