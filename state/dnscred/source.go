package dnscred

import (
	"fmt"
	"io"
	"regexp"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// envName is the shape of an environment variable name.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// maxQuotedEnvName is the longest variable name an error quotes. A longer
// "name" is more likely the token itself given by mistake, and a message
// must not print it (Cloudflare tokens have 40 characters).
const maxQuotedEnvName = 32

// TokenFromFile reads a token from the file at path, or from stdin when
// path is "-", and normalises it (NormalizeToken). Errors are bad input and
// name the file, never the token.
func TokenFromFile(path string, stdin io.Reader) (string, error) {
	what := path
	var (
		b   []byte
		err error
	)
	// Bounded and regular-only: a FIFO or a device named by mistake is
	// refused at once instead of blocking or growing without end.
	if path == "-" {
		what = "standard input"
		b, err = userfile.ReadAll(stdin, what, userfile.MaxSecret)
	} else {
		b, err = userfile.Read(path, userfile.MaxSecret)
	}
	if err != nil {
		return "", fault.AsInvalid(fmt.Errorf("the API token file (--api-token-file): %w", err), "")
	}
	token, err := NormalizeToken(string(b))
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return token, nil
}

// TokenFromEnv reads a token from the environment variable called name
// (its name, not its value) through getenv, and normalises it. A name that
// looks like a token rather than a variable name is never quoted back.
func TokenFromEnv(name string, getenv func(string) string) (string, error) {
	const hint = "give the name of an environment variable that holds the token, e.g. --api-token-env CF_DNS_API_TOKEN"
	if !envName.MatchString(name) {
		return "", fault.Invalidf(hint, "--api-token-env takes the name of an environment variable, not the token; the name given is not one")
	}
	quoted := fmt.Sprintf("environment variable %s", name)
	if len(name) > maxQuotedEnvName {
		quoted = "the environment variable named by --api-token-env"
	}
	value := getenv(name)
	if value == "" {
		return "", fault.Invalidf(hint+", and export it", "%s is not set or empty", quoted)
	}
	token, err := NormalizeToken(value)
	if err != nil {
		return "", fmt.Errorf("%s: %w", quoted, err)
	}
	return token, nil
}
