// Package hosttrust puts this state's management CAs into the trust stores
// of the host it runs on, and takes them out again, as mkcert and 'caddy
// trust' do: NSS databases (Chromium and Firefox on Linux, edited with
// certutil from libnss3-tools) and Debian's system store (a file in
// /usr/local/share/ca-certificates, then update-ca-certificates).
//
// Every entry is named by its CA's SHA-256 fingerprint (NSS nickname
// "p2ptls management CA <hex>", file "p2ptls-management-ca-<hex>.crt"), so
// two installations, or the two CAs of a rotation, never overwrite each
// other, and uninstall removes the entries of this state's CAs — the
// current ones and those it retired — and nothing else.
package hosttrust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/p2pstream/p2ptls/state/fault"
	"github.com/p2pstream/p2ptls/state/pki"
	"github.com/p2pstream/p2ptls/state/text"
)

// Kinds of Result.Store.
const (
	StoreNSS    = "nss"
	StoreSystem = "system"
)

// Target names the stores to change; nothing else is touched.
type Target struct {
	System bool
	NSSDBs []string // directories of sql: NSS databases
}

// Result is what one store holds of this state's CAs after Install or
// Uninstall; fingerprints are written as 'ca show' writes them.
type Result struct {
	Store   string   `json:"store"` // StoreNSS or StoreSystem
	Path    string   `json:"path"`  // the NSS directory, or the system store's CA directory
	Added   []string `json:"added"`
	Present []string `json:"present"` // install: there already
	Removed []string `json:"removed"` // uninstall: everything of this state's; install: retired CAs
}

// store is one trust store of the host.
type store interface {
	kind() string
	where() string
	// check refuses, before anything changes anywhere, a store that cannot
	// be changed: a missing tool, a missing database, no permission.
	check() error
	// present returns the hex fingerprints of this naming's entries, each
	// true when the entry is in force (false: there, but not trusted).
	present(ctx context.Context) (map[string]bool, error)
	// change adds add and removes the entries of remove (hex fingerprints).
	change(ctx context.Context, add []*x509.Certificate, remove []string) error
}

// Install makes every store of t trust the CAs of cas.Current, and
// removes from them the entries of cas.Retired: a retired CA (replaced,
// perhaps because its key leaked) must stop being trusted too. What is
// there already is left as it is. Every store is checked before any is
// changed; the results of the stores done before an error are returned
// with it.
func Install(ctx context.Context, cas *CAs, t Target) ([]Result, error) {
	return apply(ctx, t, func(have map[string]bool) (add []*x509.Certificate, present []*x509.Certificate, remove []*x509.Certificate) {
		for _, c := range cas.Current {
			if have[hexFingerprint(c)] {
				present = append(present, c)
			} else {
				add = append(add, c)
			}
		}
		return add, present, installed(have, cas.Retired)
	})
}

// Uninstall removes from every store of t the entries of this state's CAs,
// current and retired. A store holding none of them is a success with
// nothing removed.
func Uninstall(ctx context.Context, cas *CAs, t Target) ([]Result, error) {
	return apply(ctx, t, func(have map[string]bool) (_, _, remove []*x509.Certificate) {
		return nil, nil, installed(have, append(append([]*x509.Certificate{}, cas.Current...), cas.Retired...))
	})
}

// installed returns the certificates of certs that have an entry, in
// force or not.
func installed(have map[string]bool, certs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if _, ok := have[hexFingerprint(c)]; ok {
			out = append(out, c)
		}
	}
	return out
}

type plan func(have map[string]bool) (add, present, remove []*x509.Certificate)

func apply(ctx context.Context, t Target, p plan) ([]Result, error) {
	stores, err := t.stores()
	if err != nil {
		return nil, err
	}
	for _, s := range stores {
		if err := s.check(); err != nil {
			return nil, err
		}
	}
	results := make([]Result, 0, len(stores))
	for _, s := range stores {
		have, err := s.present(ctx)
		if err != nil {
			return results, err
		}
		add, present, remove := p(have)
		hexes := make([]string, len(remove))
		for i, c := range remove {
			hexes[i] = hexFingerprint(c)
		}
		if len(add) > 0 || len(remove) > 0 {
			if err := s.change(ctx, add, hexes); err != nil {
				return results, err
			}
		}
		results = append(results, Result{Store: s.kind(), Path: s.where(),
			Added: fingerprints(add), Present: fingerprints(present), Removed: fingerprints(remove)})
	}
	return results, nil
}

// stores lists the stores of t, system first; the same NSS directory given
// twice is one store.
func (t Target) stores() ([]store, error) {
	var out []store
	if t.System {
		out = append(out, debian)
	}
	seen := map[string]bool{}
	for _, d := range t.NSSDBs {
		db, err := openNSS(d)
		if err != nil {
			return nil, err
		}
		if !seen[db.dir] {
			seen[db.dir] = true
			out = append(out, db)
		}
	}
	return out, nil
}

func fingerprints(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = pki.Fingerprint(c)
	}
	return out
}

// hexFingerprint names c's entries: lower-case hex without separators,
// since NSS reads a colon in a nickname as a token name.
func hexFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// toolTimeout bounds one run of certutil; update-ca-certificates runs the
// hooks of other packages (Java's keystore) and gets longer.
const (
	toolTimeout   = 30 * time.Second
	systemTimeout = 2 * time.Minute
)

// lookTool finds a tool in PATH, then in dirs (sbin is not in every
// user's PATH), or says which package brings it.
func lookTool(name, does, install string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fault.Failf(install, "%s, which %s, is not installed", name, does)
}

// run runs a tool without a shell, with stdin (none when nil), bounded by
// timeout, and returns its output (stdout and stderr together).
func run(ctx context.Context, timeout time.Duration, stdin []byte, tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A child that keeps the pipe open after the kill must not hold Wait.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out.String(), fmt.Errorf("%s did not finish within %s", filepath.Base(tool), timeout)
	case err != nil:
		return out.String(), fmt.Errorf("%s: %w: %s", filepath.Base(tool), err, text.OneLine(out.String()))
	}
	return out.String(), nil
}
