package commands

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/agent"
	"github.com/p2pstream/p2ptls/state/fault"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

const flgTimeout = "timeout"

func healthcheckCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "healthcheck",
		Usage: "check that the serve on this machine answers /healthz over management TLS",
		Description: "GETs /healthz from the management listener of the serve on this machine\n" +
			"(MANAGEMENT_LISTEN; an address on every interface such as :8443 is checked on\n" +
			"loopback) over management TLS as serve runs it, read from the same environment:\n" +
			"mode auto verifies with the state's own CA (certs/management/ca.crt), mode\n" +
			"provided with MANAGEMENT_CA_FILE or MANAGEMENT_CA_PEM_BASE64, else the system\n" +
			"roots, and mode off speaks plain HTTP (it needs MANAGEMENT_ALLOW_INSECURE_HTTP=true,\n" +
			"as serve does). It only reads: it takes no lock and writes nothing, so a\n" +
			"container runtime can run it every 30 s (the image's HEALTHCHECK). Exit 0 when\n" +
			"serve answers 200 OK within --timeout, 1 otherwise, with one sentence naming\n" +
			"what failed." + examples(
			"p2ptls healthcheck",
			"MANAGEMENT_LISTEN=127.0.0.1:9443 p2ptls healthcheck --timeout 2s --quiet"),
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: flgListen, Usage: "management listen address HOST:PORT of the serve to check", Value: statemgmt.DefaultListen, EnvVars: []string{"MANAGEMENT_LISTEN"}},
			&cli.DurationFlag{Name: flgTimeout, Usage: "give up and report unhealthy after this long, dial to answer", Value: agent.DefaultHealthTimeout, EnvVars: []string{"P2PTLS_HEALTHCHECK_TIMEOUT"}},
			&cli.StringFlag{Name: flgCAFile, Usage: "mode provided: CA certificate file the management certificate is verified with (default: system roots)", EnvVars: []string{"MANAGEMENT_CA_FILE"}},
			&cli.StringFlag{Name: flgCAPEMBase64, Usage: "mode provided: that CA as base64 of its PEM", EnvVars: []string{"MANAGEMENT_CA_PEM_BASE64"}},
		}, modeFlags()...), namesFlags()...),
	}, healthcheckAction)
}

func healthcheckAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if c.Duration(flgTimeout) <= 0 {
		return fault.Invalidf("give a duration such as 5s", "--%s %v must be positive", flgTimeout, c.Duration(flgTimeout))
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	res, err := agent.Health(ctx, agent.HealthInput{
		Settings:    set,
		Store:       g.Store(),
		CAFile:      c.String(flgCAFile),
		CAPEMBase64: c.String(flgCAPEMBase64),
		Timeout:     c.Duration(flgTimeout),
	})
	if err != nil {
		return err
	}
	return g.Done(res, "%s", res)
}
