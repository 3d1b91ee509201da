package dnscred

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"

	"github.com/p2pstream/p2ptls/state/fault"
)

// maxTokenFile bounds what is read of a token file or stdin: a token is one
// short line, and a large file given by mistake is refused, not read.
const maxTokenFile = 64 << 10

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
	var r io.Reader = stdin
	if path == "-" {
		what = "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is in the message already
			}
			return "", fault.Invalidf("check the path, and that this user may read the file", "cannot read the API token file %s: %v", path, err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxTokenFile+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return "", fault.Invalidf("check the path, and that this user may read the file", "cannot read the API token from %s: %v", what, err)
	}
	if len(b) > maxTokenFile {
		return "", fault.Invalidf("give a file that holds only the token", "%s is larger than %d bytes; it holds no API token", what, maxTokenFile)
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
