package backup

import (
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/acme"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/management"
	"github.com/p2pstream/p2ptls/state/mappings"
)

// IsCertificate reports whether a state path is one of the certificates
// p2ptls writes state.PublicMode (0644): the management CA and server
// certificates, a mapping's chain and an ACME directory's CA file. Every
// other file p2ptls writes — private keys, tokens, token hashes, ACME
// registrations and challenge material, mapping metadata, p2ptls.toml — is
// written state.SecretMode, and so is treated as a secret here; a file
// p2ptls never writes is treated as a secret too, so that the rule errs on
// the closed side.
func IsCertificate(rel string) bool {
	if rel == management.CACertFile || rel == management.ServerCertFile {
		return true
	}
	dir, base := path.Split(rel)
	parent := path.Dir(strings.TrimSuffix(dir, "/")) // of the mapping's or account's directory
	return base == mappings.CertFileName && parent == mappings.PublicDir ||
		base == "ca.pem" && parent == acme.AccountsDir
}

// restoredMode is the mode a restore gives a file, whatever the archive
// says: a secret is state.SecretMode, a certificate keeps its archived mode
// without write, execute or special bits for group and others (0644 at
// most). An archive that says ca.key is 0644 must not leave the key
// readable by everyone.
func restoredMode(rel string, archived fs.FileMode) fs.FileMode {
	if IsCertificate(rel) {
		return archived.Perm() & state.PublicMode
	}
	return state.SecretMode
}

// looseSecret reports whether a state file is a secret that group or
// others may read or change: a backup refuses to carry one, so that the
// operator learns of it now rather than in a restored state.
func looseSecret(rel string, mode fs.FileMode) bool {
	return !IsCertificate(rel) && mode.Perm()&0o077 != 0
}

// refuseLooseSecrets is the refusal of a backup of such files (paths).
func refuseLooseSecrets(paths, shown []string) error {
	hint := "chmod 600 each of them (p2ptls writes every key and secret 0600), then run the backup again"
	if len(paths) <= 5 {
		hint = "run: chmod 600 " + strings.Join(paths, " ") + "; then run the backup again"
	}
	if len(shown) > 10 {
		shown = append(shown[:10:10], fmt.Sprintf("and %d more", len(shown)-10))
	}
	return fault.Failf(hint, "the state holds keys or secrets that group or others may read, which a backup will not carry: %s", strings.Join(shown, ", "))
}
