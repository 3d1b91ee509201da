package management

import (
	"regexp"
	"strings"
)

// The state code is shared with the command line, and its hints and
// warnings speak the command line's words (flags, commands). apiWords is
// the one place that rewrites them into the API's (JSON fields, routes):
// writeError applies it to every hint of the state code, and the mapping
// endpoints to their warnings (and issueMapping to its 502's hint).
// api_hints_test.go holds every hint that POST and PATCH /api/v1/mappings
// and the DNS credential routes can answer to it.

// apiCommands rewrite the commands that name a resource, whose id the
// route carries. Ids are [a-z0-9_-] (hostname.ValidateName).
var apiCommands = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`'p2ptls mapping remove ([a-z0-9_-]+)', then 'p2ptls mapping add --id [a-z0-9_-]+ … --manual --cert-file F --key-file F'`),
		`DELETE /api/v1/mappings/$1, then POST /api/v1/mappings with "id": "$1", "source": "manual", "cert_pem" and "key_pem"`},
	{regexp.MustCompile(`'p2ptls mapping remove ([a-z0-9_-]+)'`), "DELETE /api/v1/mappings/$1"},
	{regexp.MustCompile(`run 'p2ptls cert issue ([a-z0-9_-]+)' again`), "send POST /api/v1/mappings/$1/issue again"},
	{regexp.MustCompile(`'p2ptls dns-credential enable ([a-z0-9_-]+)'`), "POST /api/v1/dns-credentials/$1/enable"},
	{regexp.MustCompile(`'p2ptls dns-credential disable ([a-z0-9_-]+)'`), "POST /api/v1/dns-credentials/$1/disable"},
	{regexp.MustCompile(`choose another name, give it a new token with 'p2ptls dns-credential add ([a-z0-9_-]+) --replace …', or remove it first with 'p2ptls dns-credential remove [a-z0-9_-]+'`),
		`choose another "name", or remove it first with DELETE /api/v1/dns-credentials/$1 and add it again`},
	{regexp.MustCompile(`or give it again with 'p2ptls dns-credential add ([a-z0-9_-]+) --replace --api-token-file F'`),
		`or remove it with DELETE /api/v1/dns-credentials/$1 and add it again with its "api_token"`},
	{regexp.MustCompile(`register one with 'p2ptls acme account register --directory (\S+) …'`),
		"register an ACME account at $1 on the management host first; GET /api/v1/acme/accounts lists the accounts"},
}

// apiPhrases rewrite the rest: whole phrases first (at a position the
// first match in argument order wins), then single flags.
var apiPhrases = strings.NewReplacer(
	"add it first with 'p2ptls listener add', or see 'p2ptls listener list'", "use one of the listeners GET /api/v1/listeners lists",
	"add the listener first with 'p2ptls listener add'", "use one of the listeners GET /api/v1/listeners lists",
	"see 'p2ptls listener list' for the existing ones", "GET /api/v1/listeners lists the existing ones",
	"see 'p2ptls mapping list' for the existing ones", "GET /api/v1/mappings lists the existing ones",
	"add it with 'p2ptls dns-credential add', or see 'p2ptls dns-credential list'", "add it with POST /api/v1/dns-credentials, or see GET /api/v1/dns-credentials",
	"(see 'p2ptls dns-credential list')", "(GET /api/v1/dns-credentials lists them)",
	"add it with 'p2ptls dns-credential add'", "add it with POST /api/v1/dns-credentials",
	"'p2ptls dns-credential list'", "GET /api/v1/dns-credentials",
	"'p2ptls acme account show' lists them", "GET /api/v1/acme/profiles lists them",
	"see 'p2ptls dns-credential list' for the existing ones", "GET /api/v1/dns-credentials lists the existing ones",
	"remove those mappings first ('p2ptls mapping remove ID')", "remove those mappings first (DELETE /api/v1/mappings/{id})",
	"give the token in the file or the environment variable", `give the token in "api_token"`,
	"register one with 'p2ptls acme account register --email E --agree-tos'", "register an ACME account on the management host first; GET /api/v1/acme/accounts lists the accounts",
	"check the directory URL, --ca-file and the network", "check the ACME account's directory and CA file (GET /api/v1/acme/accounts) and the network",
	"then run 'p2ptls cert issue' for the mapping", "then send POST /api/v1/mappings/{id}/issue",
	"'p2ptls cert list' then shows its result", "GET /api/v1/mappings/{id} then shows its result",
	"'p2ptls cert list' shows each one's last error", "GET /api/v1/mappings shows each one's last_error",
	"see 'p2ptls mapping list'", "GET /api/v1/mappings lists the existing ones",
	"(--http-addr :80)", "(its http_addr, e.g. :80)",
	"--provider cloudflare", `"provider": "cloudflare"`,
	"pass --cert-file and --key-file", `send "cert_file" and "key_file"`,
	"pass --allow-expired", `send "allow_expired": true`,
	"give at least one --host", `give at least one host in "hosts"`,
	"--challenge http-01 or tls-alpn-01", `"challenge": "http-01" or "tls-alpn-01"`,
	"--challenge dns-01", `"challenge": "dns-01"`,
	"--allow-expired", `"allow_expired"`,
	"--cert-file", `"cert_file"`,
	"--challenge", `"challenge"`,
	"--days", `"days"`,
	"--dns-credential", `"dns_credential"`,
	"--host", `"hosts"`,
	"--id", `"id"`,
	"--key-file", `"key_file"`,
	"--key-type", `"key_type"`,
	"--listener", `"listener"`,
	"--profile", `"profile"`,
	"--upstream", `"upstream"`,
)

// apiWords is s, a hint or a warning of the state code, in the API's words.
func apiWords(s string) string {
	for _, c := range apiCommands {
		s = c.re.ReplaceAllString(s, c.repl)
	}
	return apiPhrases.Replace(s)
}

// apiWordsAll is apiWords of each of ss.
func apiWordsAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = apiWords(s)
	}
	return out
}
