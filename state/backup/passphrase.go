package backup

import (
	"io"
	"os"
	"strings"

	"github.com/p2pstream/p2ptls/state/fault"
)

// maxPassphraseFile bounds what is read from a passphrase file.
const maxPassphraseFile = 4096

// ReadPassphraseFile reads the passphrase from file, dropping one trailing
// newline as editors and "echo" add it. The passphrase is taken from a file
// only, never from argv, where other users could see it.
func ReadPassphraseFile(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fault.Invalidf("check the path, and that this user may read the file", "cannot read the passphrase file %s: %v", file, unwrapPath(err))
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile+1))
	if err != nil {
		return "", fault.Invalidf("check the path, and that this user may read the file", "cannot read the passphrase file %s: %v", file, unwrapPath(err))
	}
	if len(b) > maxPassphraseFile {
		return "", fault.Invalidf("give a file that holds only the passphrase", "the passphrase file %s is larger than %d bytes", file, maxPassphraseFile)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return "", fault.Invalidf("write the passphrase into the file", "the passphrase file %s is empty", file)
	}
	return p, nil
}
