package commands

import (
	"context"
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/serve"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

func serveCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "serve",
		Usage: "run the management listener and the public HTTPS listeners",
		Description: "Serves management on MANAGEMENT_LISTEN (default :8443) in MANAGEMENT_TLS_MODE:\n" +
			"auto (default) creates the management CA and server certificate on first start\n" +
			"and logs where the CA is and its fingerprint; provided serves\n" +
			"MANAGEMENT_TLS_CERT_FILE/MANAGEMENT_TLS_KEY_FILE and picks up rotated files;\n" +
			"off serves plain HTTP and needs MANAGEMENT_ALLOW_INSECURE_HTTP=true.\n" +
			"Endpoints: /healthz, /ca.crt, and the JSON API under /api/v1 (admin token):\n" +
			"status, listeners, mappings, certificates, dns-credentials, acme/accounts, doctor.\n\n" +
			"Every HTTPS listener of the state picks certificates by SNI from its mappings\n" +
			"(exact host, then wildcard, then the fallback, which is counted and logged as a\n" +
			"deployment failure) and proxies to the mapping's or listener's upstream. Changes\n" +
			"to the state directory are served within 2 s without a restart. SIGINT or\n" +
			"SIGTERM shut everything down gracefully.",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: flgListen, Usage: "management listen address HOST:PORT", Value: statemgmt.DefaultListen, EnvVars: []string{"MANAGEMENT_LISTEN"}},
		}, modeFlags()...), append(namesFlags(), resolversFlag())...),
	}, serveAction)
}

func serveAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	opts, err := acmeOptions(c)
	if err != nil {
		return err
	}
	return serve.Run(ctx, serve.Options{Store: g.Store(), Log: slog.Default(), Management: set, DNSResolvers: opts.DNSResolvers})
}
