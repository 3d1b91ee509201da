package backup

import (
	"strings"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/userfile"
)

// ReadPassphraseFile reads the passphrase from file, dropping one trailing
// newline as editors and "echo" add it. The passphrase is taken from a file
// only, never from argv, where other users could see it. The file must be
// a regular file of at most userfile.MaxSecret bytes: a FIFO or a device
// would block or never end.
func ReadPassphraseFile(file string) (string, error) {
	b, err := userfile.Read(file, userfile.MaxSecret)
	if err != nil {
		return "", err
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return "", fault.Invalidf("write the passphrase into the file", "the passphrase file %s is empty", file)
	}
	return p, nil
}
