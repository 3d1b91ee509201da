package commands

import (
	"github.com/urfave/cli/v2"

	"io"

	"github.com/p2pstream/p2ptls/commands/gendocs/roff"
)

// ManPage returns man/p2ptls.1, generated from the command tree by
// commands/gendocs/roff: each command once with its own options, the
// global options once.
func ManPage() (string, error) {
	return roff.Render(manPage(NewApp(io.Discard, io.Discard))), nil
}

func manPage(app *cli.App) roff.Page {
	return roff.Page{
		App:     app,
		Section: 1,
		Synopsis: []string{
			"[global options] command [subcommand] [options] [arguments]",
		},
		// The README's Environment table, for variables whose flag usage
		// says less.
		Environment: map[string]string{
			"CONFIG_DIR":                     "the state directory",
			"P2PTLS_OUTPUT":                  "output format: table (default) or json",
			"P2PTLS_LOG_LEVEL":               "log level: debug, info (default), warn or error; logs go to standard error",
			"P2PTLS_LOG_FORMAT":              "log format: text (default) or json",
			"P2PTLS_LOCK_TIMEOUT":            "how long to wait for the state lock, e.g. 2m (default 30s)",
			"MANAGEMENT_TLS_MODE":            "management TLS mode: auto (default), provided or off",
			"MANAGEMENT_TLS_CERT_FILE":       "mode provided: the certificate (chain) file",
			"MANAGEMENT_TLS_KEY_FILE":        "mode provided: the private key file",
			"MANAGEMENT_ALLOW_INSECURE_HTTP": "must be true for mode off",
			"MANAGEMENT_PUBLIC_URL":          "the URL agents use to reach management",
			"MANAGEMENT_TLS_EXTRA_HOSTS":     "extra DNS names and IPs for the auto server certificate, comma-separated",
			"MANAGEMENT_LISTEN":              "management listen address (default :8443)",
			"MANAGEMENT_CA_FILE":             "agent side: the CA file management TLS is verified with",
			"MANAGEMENT_CA_PEM_BASE64":       "agent side: the same CA as base64 of its PEM",
		},
		ExtraEnvironment: []roff.Entry{
			{Tag: "XDG_DATA_HOME", Text: "Without --config-dir and CONFIG_DIR the state directory is $XDG_DATA_HOME/p2ptls."},
			{Tag: "HOME", Text: "Without XDG_DATA_HOME too, the state directory is ~/.local/share/p2ptls."},
		},
		Files: []roff.Entry{
			{Tag: "$CONFIG_DIR/", Text: "The state directory (0700), resolved as --config-dir, $CONFIG_DIR, $XDG_DATA_HOME/p2ptls, ~/.local/share/p2ptls. Read-only commands never create it."},
			{Tag: "p2ptls.toml", Text: "The desired state: schema_version, listeners, DNS credential references, ACME settings (0600)."},
			{Tag: "mappings/ID.toml", Text: "One record per mapping (0600). Both may be edited by hand; they are validated on every read and never overwritten while the state has an error. A schema_version 1 p2ptls.toml is migrated by the first change, keeping p2ptls.toml.v1.bak."},
			{Tag: "p2ptls.lock", Text: "Exists while a process changes the state; holds the holder's pid, host, start time and command."},
			{Tag: "certs/management/", Text: "The management CA and server certificate: ca.crt, ca.key, server.crt, server.key."},
			{Tag: "certs/public/<mapping-id>/", Text: "Each mapping's certificate, key and metadata."},
			{Tag: "acme/accounts/", Text: "ACME account keys and registrations."},
			{Tag: "acme/challenges/", Text: "In-flight HTTP-01 and TLS-ALPN-01 challenges."},
			{Tag: "secrets/", Text: "DNS provider tokens (secrets/dns/NAME.token) and admin token hashes (secrets/admin-tokens.toml), 0600."},
			{Tag: "run/", Text: "Runtime status written by serve (run/status.json) and the record of the last backup; never backed up."},
		},
		ExitStatus: exitStatusHelp,
		Examples: `# A listener and two mappings, then serve them:
p2ptls listener add web --addr :443 --http-addr :80 --upstream http://127.0.0.1:8080
p2ptls mapping add --listener web --host app.example.com --self-signed
p2ptls mapping add --listener web --host '*.example.com' --manual --cert-file wild.crt --key-file wild.key
p2ptls serve

# An ACME certificate, renewed by cron:
p2ptls acme account register --email ops@example.com --agree-tos
p2ptls mapping add --listener web --host www.example.com --acme --challenge http-01
p2ptls cert issue www-example-com
p2ptls cert renew --deploy-hook 'systemctl reload nginx'

# An encrypted backup, and a restore checked first:
p2ptls backup --out state.tar.gz.age --passphrase-file pass.txt
p2ptls restore state.tar.gz.age --passphrase-file pass.txt --dry-run

# What is wrong with this deployment, as JSON:
p2ptls doctor --output json`,
		SeeAlso:         []string{"openssl(1)", "age(1)", "crontab(5)", "the README of p2ptls"},
		SectionHeadings: []string{"ENVIRONMENT", "EXIT STATUS", "STATE DIRECTORY"},
	}
}
