package hosttrust

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
)

// filePrefix and fileSuffix frame the file of each CA this package puts
// into the system store's local directory; update-ca-certificates reads
// only *.crt there.
const (
	filePrefix = "p2ptls-management-ca-"
	fileSuffix = ".crt"
)

// FileName is c's file in the system store's local CA directory.
func FileName(c *x509.Certificate) string { return filePrefix + hexFingerprint(c) + fileSuffix }

// systemStore is Debian's (and Ubuntu's) system trust store: local CAs are
// files in localDir, and update-ca-certificates builds bundle from them
// (with the distribution's CAs) and runs the hooks of other packages.
type systemStore struct {
	tool     string // update-ca-certificates
	localDir string
	bundle   string
	// args go to every run of the tool before its own; tests point each
	// of its directories (--certsconf, --certsdir, --localcertsdir,
	// --etccertsdir, --hooksdir) into a temporary directory.
	args []string
}

// debian is the system store --system changes; a package variable so that
// tests never change the machine's.
var debian = &systemStore{
	tool:     "update-ca-certificates",
	localDir: "/usr/local/share/ca-certificates",
	bundle:   "/etc/ssl/certs/ca-certificates.crt",
}

// geteuid tells whether this process is root; tests play another user.
var geteuid = os.Geteuid

const systemInstall = "install it with 'apt-get install ca-certificates' (Debian, Ubuntu); on other systems add the CA with their own tool ('p2ptls ca export' prints it)"

func (s *systemStore) kind() string  { return StoreSystem }
func (s *systemStore) where() string { return s.localDir }

func (s *systemStore) check() error {
	if geteuid() != 0 {
		return fault.Failf("run it as root, e.g. with sudo", "--system changes the system trust store, which only root may change")
	}
	_, err := s.lookTool()
	return err
}

func (s *systemStore) lookTool() (string, error) {
	return lookTool(s.tool, "builds the system trust store", systemInstall, "/usr/sbin", "/sbin")
}

// present counts a CA file as in force when it holds the CA and the
// bundle has it: a file that update-ca-certificates never took in (it
// failed, or was interrupted) is added again.
func (s *systemStore) present(ctx context.Context) (map[string]bool, error) {
	names, err := filepath.Glob(filepath.Join(s.localDir, filePrefix+"*"+fileSuffix))
	if err != nil {
		return nil, err
	}
	in, err := bundled(s.bundle)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, name := range names {
		fp := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), filePrefix), fileSuffix)
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("system trust store: %w", err)
		}
		certs, err := pki.ParseCertChain(b)
		have[fp] = err == nil && len(certs) == 1 && hexFingerprint(certs[0]) == fp && in[fp]
	}
	return have, nil
}

// bundled returns the hex fingerprints of the certificates of a PEM bundle.
func bundled(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("system trust store: %w", err)
	}
	got := map[string]bool{}
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return got, nil
		}
		sum := sha256.Sum256(block.Bytes)
		got[hex.EncodeToString(sum[:])] = true
	}
}

// change writes and deletes the CA files, then has update-ca-certificates
// rebuild the store: with --fresh after a removal, so that the links of a
// removed CA in /etc/ssl/certs go too (Debian's documented way).
func (s *systemStore) change(ctx context.Context, add []*x509.Certificate, remove []string) error {
	tool, err := s.lookTool()
	if err != nil {
		return err
	}
	if len(add) > 0 {
		// 0755, as the ca-certificates package makes it.
		if err := os.MkdirAll(s.localDir, 0o755); err != nil {
			return fmt.Errorf("system trust store: %w", err)
		}
	}
	for _, c := range add {
		if err := state.WriteFileAtomic(filepath.Join(s.localDir, FileName(c)), pki.EncodeCert(c.Raw), state.PublicMode); err != nil {
			return fmt.Errorf("system trust store: %w", err)
		}
	}
	for _, fp := range remove {
		if err := os.Remove(filepath.Join(s.localDir, filePrefix+fp+fileSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("system trust store: %w", err)
		}
	}
	args := append([]string{}, s.args...)
	if len(remove) > 0 {
		args = append(args, "--fresh")
	}
	if _, err := run(ctx, systemTimeout, nil, tool, args...); err != nil {
		return fmt.Errorf("system trust store: %w", err)
	}
	in, err := bundled(s.bundle)
	if err != nil {
		return err
	}
	for _, c := range add {
		if !in[hexFingerprint(c)] {
			return fault.Failf("run 'update-ca-certificates' and read what it says",
				"%s ran, but %s does not hold the management CA %s", filepath.Base(tool), s.bundle, pki.Fingerprint(c))
		}
	}
	for _, fp := range remove {
		if in[fp] {
			return fault.Failf("run 'update-ca-certificates --fresh' and read what it says",
				"%s ran, but %s still holds the management CA %s", filepath.Base(tool), s.bundle, fp)
		}
	}
	return nil
}
