package hosttrust

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/p2pstream/p2ptls/state/fault"
)

// nicknamePrefix starts the NSS nickname of every CA this package adds.
const nicknamePrefix = "p2ptls management CA "

// nssTrust marks a CA trusted to issue TLS server certificates (and
// nothing else: not mail, not code).
const nssTrust = "C,,"

// certutilInstall is the hint when certutil is missing.
const certutilInstall = "install it with 'apt-get install libnss3-tools' (Fedora: nss-tools)"

// DefaultNSSDB is the NSS database Chromium uses on Linux, the one install
// and uninstall change when given no store: $HOME/.pki/nssdb.
func DefaultNSSDB() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fault.Invalidf("set HOME, or name the database with --nss-db DIR",
			"the default NSS database is $HOME/.pki/nssdb, and HOME is not set")
	}
	return filepath.Join(home, ".pki", "nssdb"), nil
}

// Nickname is c's nickname in an NSS database.
func Nickname(c *x509.Certificate) string { return nicknamePrefix + hexFingerprint(c) }

// nssDB is one sql: NSS database: a directory with cert9.db.
type nssDB struct{ dir string }

// nssHint says which directories are NSS databases and how to make one.
const nssHint = "name a directory that holds an NSS database (cert9.db): Chromium's is ~/.pki/nssdb (it appears when Chromium first starts; or create it with 'certutil -N -d sql:$HOME/.pki/nssdb --empty-password'), Firefox's is its profile directory under ~/.mozilla/firefox"

// openNSS refuses what is not an NSS database, so that a mistyped --nss-db
// never makes a new database where no browser looks. A "sql:" prefix, as
// certutil writes it, is accepted.
func openNSS(dir string) (*nssDB, error) {
	if rest, ok := strings.CutPrefix(dir, "sql:"); ok {
		dir = rest
	}
	if dir == "" {
		return nil, fault.Invalidf(nssHint, "--nss-db is empty")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fault.Invalidf(nssHint, "NSS database %s: %v", dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fault.Invalidf(nssHint, "the NSS database directory %s does not exist", abs)
	case err != nil:
		return nil, fault.Invalidf(nssHint, "NSS database %s: %v", abs, err)
	case !fi.IsDir():
		return nil, fault.Invalidf(nssHint, "the NSS database %s is not a directory", abs)
	}
	if fi, err := os.Stat(filepath.Join(abs, "cert9.db")); err != nil || !fi.Mode().IsRegular() {
		return nil, fault.Invalidf(nssHint, "%s holds no NSS database (cert9.db)", abs)
	}
	return &nssDB{dir: abs}, nil
}

func (db *nssDB) kind() string  { return StoreNSS }
func (db *nssDB) where() string { return db.dir }

func (db *nssDB) check() error {
	_, err := lookTool("certutil", "edits NSS databases", certutilInstall)
	return err
}

// certutil runs certutil on this database. "-f /dev/null" gives the empty
// password: certutil never prompts, and a database protected by a password
// fails at once (see passwordProtected).
func (db *nssDB) certutil(ctx context.Context, stdin []byte, op string, args ...string) (string, error) {
	tool, err := lookTool("certutil", "edits NSS databases", certutilInstall)
	if err != nil {
		return "", err
	}
	args = append([]string{op, "-d", "sql:" + db.dir, "-f", os.DevNull}, args...)
	out, err := run(ctx, toolTimeout, stdin, tool, args...)
	if err != nil && passwordProtected(out) {
		return out, fault.Failf(fmt.Sprintf("remove the password with 'certutil -W -d sql:%s' (give an empty new one) and run this again", db.dir),
			"the NSS database %s is protected by a password, which p2ptls does not ask for", db.dir)
	}
	if err != nil {
		return out, fmt.Errorf("NSS database %s: %w", db.dir, err)
	}
	return out, nil
}

func passwordProtected(out string) bool {
	return strings.Contains(out, "SEC_ERROR_BAD_PASSWORD") || strings.Contains(out, "could not authenticate")
}

// listLine is one line of 'certutil -L' naming one of our entries:
// the nickname, then the trust attributes.
var listLine = regexp.MustCompile(`^` + regexp.QuoteMeta(nicknamePrefix) + `([0-9a-f]{64})\s+(\S+)\s*$`)

// entries returns our entries in the database: hex fingerprint → trust.
func (db *nssDB) entries(ctx context.Context) (map[string]string, error) {
	out, err := db.certutil(ctx, nil, "-L")
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		if m := listLine.FindStringSubmatch(line); m != nil {
			got[m[1]] = m[2]
		}
	}
	return got, nil
}

// present tells for each of our entries whether it is trusted for TLS
// servers: install trusts one again whose trust someone took away.
func (db *nssDB) present(ctx context.Context) (map[string]bool, error) {
	e, err := db.entries(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for fp, trust := range e {
		have[fp] = trustsServers(trust)
	}
	return have, nil
}

// trustsServers reports whether NSS trust attributes ("C,,", "CT,C,C")
// trust the CA for TLS servers: a C in the first field.
func trustsServers(trust string) bool {
	ssl, _, _ := strings.Cut(trust, ",")
	return strings.Contains(ssl, "C")
}

func (db *nssDB) change(ctx context.Context, add []*x509.Certificate, remove []string) error {
	before, err := db.entries(ctx)
	if err != nil {
		return err
	}
	for _, c := range add {
		nick := Nickname(c)
		if _, ok := before[hexFingerprint(c)]; ok {
			// There, without server trust: trust it again.
			if _, err := db.certutil(ctx, nil, "-M", "-n", nick, "-t", nssTrust); err != nil {
				return err
			}
			continue
		}
		if _, err := db.certutil(ctx, c.Raw, "-A", "-n", nick, "-t", nssTrust); err != nil {
			// certutil may have added the certificate before it failed
			// to set its trust: take out what is ours.
			_, _ = db.certutil(ctx, nil, "-D", "-n", nick)
			return err
		}
	}
	for _, fp := range remove {
		if _, err := db.certutil(ctx, nil, "-D", "-n", nicknamePrefix+fp); err != nil {
			return err
		}
	}
	after, err := db.entries(ctx)
	if err != nil {
		return err
	}
	for _, c := range add {
		trust, ok := after[hexFingerprint(c)]
		if ok && !trustsServers(trust) {
			return fmt.Errorf("NSS database %s: certutil left %s with trust %q, not %q", db.dir, Nickname(c), trust, nssTrust)
		}
		if !ok {
			// NSS keeps one nickname per certificate: one added before
			// under another name keeps it, and uninstall would not know it.
			return fault.Failf(fmt.Sprintf("'certutil -L -d sql:%s' lists it; delete that entry ('certutil -D -d sql:%s -n NAME') and run this again", db.dir, db.dir),
				"the NSS database %s holds the management CA %s under another nickname", db.dir, fingerprints([]*x509.Certificate{c})[0])
		}
	}
	for _, fp := range remove {
		if _, ok := after[fp]; ok {
			return fmt.Errorf("NSS database %s: certutil -D left %s%s in place", db.dir, nicknamePrefix, fp)
		}
	}
	return nil
}
