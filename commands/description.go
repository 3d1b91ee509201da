package commands

import "strings"

// appDescription is the long help and the man page's DESCRIPTION. urfave's
// man output leaves out environment variables, so they are listed here.
const appDescription = `p2ptls keeps one state directory (TOML and PEM files) with the management CA,
the public HTTPS listeners and their certificate mappings, ACME accounts and
DNS credentials. Commands change that directory under an exclusive lock; "p2ptls
serve" serves it and picks up changes live.

Global flags work before and after the command name:
"p2ptls --output json listener list" and "p2ptls listener list --output json".

STATE DIRECTORY:
   --config-dir, else $CONFIG_DIR, else $XDG_DATA_HOME/p2ptls, else
   ~/.local/share/p2ptls. Created 0700; keys and secrets are 0600.

ENVIRONMENT:
   CONFIG_DIR                       state directory
   P2PTLS_OUTPUT                    output format: table or json
   P2PTLS_LOG_LEVEL                 debug, info, warn or error
   P2PTLS_LOG_FORMAT                text or json
   P2PTLS_LOCK_TIMEOUT              how long to wait for the state lock (default 30s)
   MANAGEMENT_TLS_MODE              auto (default), provided or off
   MANAGEMENT_TLS_CERT_FILE         mode provided: certificate (chain)
   MANAGEMENT_TLS_KEY_FILE          mode provided: private key
   MANAGEMENT_ALLOW_INSECURE_HTTP   must be true for mode off
   MANAGEMENT_PUBLIC_URL            URL agents use to reach management
   MANAGEMENT_TLS_EXTRA_HOSTS       extra names and IPs for the auto server certificate
   MANAGEMENT_LISTEN                management listen address (default :8443)
   METRICS_LISTEN                   serve: plain-HTTP /metrics address, no token (off by default)
   MANAGEMENT_CA_FILE               agent side: CA file that verifies management TLS
   MANAGEMENT_CA_PEM_BASE64         agent side: the same CA as base64 PEM

` + exitStatusHelp

// examples is a leaf command's EXAMPLES section, appended to its
// Description (before the EXIT STATUS section prepare adds): the heading
// and each line indented 3 spaces, the layout the man page generator reads.
// Every command that changes something has one (TestExamples).
func examples(lines ...string) string {
	return "\n\nEXAMPLES:\n   " + strings.Join(lines, "\n   ")
}
