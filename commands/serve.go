package commands

import (
	"context"
	"log/slog"

	"github.com/urfave/cli/v2"

	servemgmt "github.com/p2pstream/p2ptls/serve/management"
	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

func serveCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:  "serve",
		Usage: "run the management listener (public HTTPS listeners: not available yet)",
		Description: "Serves management on MANAGEMENT_LISTEN (default :8443) in MANAGEMENT_TLS_MODE:\n" +
			"auto (default) creates the management CA and server certificate on first start\n" +
			"and logs where the CA is and its fingerprint; provided serves\n" +
			"MANAGEMENT_TLS_CERT_FILE/MANAGEMENT_TLS_KEY_FILE and picks up rotated files;\n" +
			"off serves plain HTTP and needs MANAGEMENT_ALLOW_INSECURE_HTTP=true.\n" +
			"Endpoints: /healthz, /ca.crt, /api/v1/status (admin token). SIGINT or SIGTERM\n" +
			"shut it down gracefully.",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: flgListen, Usage: "management listen address HOST:PORT", Value: statemgmt.DefaultListen, EnvVars: []string{"MANAGEMENT_LISTEN"}},
		}, modeFlags()...), namesFlags()...),
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
	return servemgmt.Run(ctx, servemgmt.Options{Settings: set, Store: g.Store(), Log: slog.Default()})
}
