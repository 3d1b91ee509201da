package doctor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pelletier/go-toml/v2"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/backup"
	"github.com/p2pstream/p2ptls/state/fault"
)

// checkConfig: p2ptls.toml loads. One that does not is a failure with the
// loader's own message (file, line, field); the mapping checks then read it
// leniently or, when even that fails, are skipped.
func checkConfig(ctx context.Context, e *env) Check {
	if e.cfgErr != nil {
		then := "the listener and mapping checks are skipped"
		if e.lenient {
			then = "the mapping checks below read it without validation"
		}
		hint := fault.HintOf(e.cfgErr)
		if hint == "" {
			hint = "fix the file by hand"
		}
		return fail(IDConfig, hint+"; until then every p2ptls command that reads the mappings refuses to run, and a running serve keeps its last good state",
			"%v (%s)", e.cfgErr, then)
	}
	if e.noDir() {
		return ok(IDConfig, "there is no state directory %s yet: nothing is configured", e.local.Root())
	}
	if _, err := e.s.Stat(ctx, state.ConfigFile); errors.Is(err, fs.ErrNotExist) {
		return ok(IDConfig, "there is no %s yet: no listeners or mappings are configured", state.ConfigFile)
	}
	return ok(IDConfig, "%s loads: %s, %s, %s", state.ConfigFile,
		plural(len(e.cfg.Listeners), "listener"), plural(len(e.cfg.Mappings), "mapping"), plural(len(e.cfg.DNSCredentials), "DNS credential"))
}

// skipped is what a mapping check says when p2ptls.toml cannot be read at all.
func skipped(id string) Check {
	return warn(id, "fix p2ptls.toml first (see "+IDConfig+")", "not checked: %s does not load (see %s)", state.ConfigFile, IDConfig)
}

// isSecret reports whether a state file must be 0600: every file but the
// certificates, by the same rule backup refuses loose secrets with.
func isSecret(rel string) bool { return !backup.IsCertificate(rel) }

// checkPermissions: every directory 0700 and every secret 0600. A secret
// that group or others can read or change fails; a looser directory, or
// another file that group or others can change, warns.
func checkPermissions(ctx context.Context, e *env) Check {
	if e.local == nil {
		return notApplicable(IDPermissions, "file modes are those of a directory's files")
	}
	if e.root == "" {
		return ok(IDPermissions, "there is no state directory %s yet; p2ptls creates it 0700", e.local.Root())
	}
	scan, err := e.tree()
	secrets, dirs, files, secretPaths := scan.modes.secrets, scan.modes.dirs, scan.modes.files, scan.modes.secretPaths
	if err != nil {
		return warn(IDPermissions, "check that this user can read the whole state directory", "not all of %s could be read: %v", e.root, err)
	}
	var f findings
	if len(secrets) > 0 {
		hint := "chmod 600 each of them (p2ptls writes every key and secret 0600)"
		if len(secretPaths) <= 5 {
			hint = "run: chmod 600 " + strings.Join(secretPaths, " ")
		}
		f.fail(hint, "%s that group or others can read or change: %s", plural(len(secrets), "secret file"), names(secrets))
	}
	if len(files) > 0 {
		f.warn("chmod go-w them (certificates are 0644, everything else p2ptls writes 0600)", "%s that group or others can change: %s", plural(len(files), "file"), names(files))
	}
	if len(dirs) > 0 {
		f.warn(fmt.Sprintf("run: find %s -type d -exec chmod 700 {} +", e.root), "%s open to group or others (p2ptls keeps them 0700): %s", plural(len(dirs), "directory"), names(dirs))
	}
	return f.check(IDPermissions, fmt.Sprintf("%s: every directory is 0700 and every key and secret 0600", e.root))
}

// checkLock: a lock file whose holder is gone is stale. It never blocks
// anyone (the kernel dropped the flock with its holder, and the next
// process takes it over), but it names a process that no longer runs.
func checkLock(ctx context.Context, e *env) Check {
	if e.local == nil {
		return notApplicable(IDLock, "the lock file is a directory's")
	}
	if e.root == "" {
		return ok(IDLock, "there is no state directory yet: nothing is locked")
	}
	p := filepath.Join(e.root, state.LockFile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return ok(IDLock, "not locked: no p2ptls process is changing the state")
	}
	if err != nil {
		return warn(IDLock, "check the file's owner and mode", "cannot read the lock file %s: %v", p, err)
	}
	defer f.Close()
	var h state.Holder
	b, _ := io.ReadAll(io.LimitReader(f, 64<<10))
	_ = toml.Unmarshal(b, &h)
	holder := "an unknown process (the lock file holds no record)"
	if h.PID != 0 {
		holder = h.String()
	}
	// A shared flock succeeds exactly when nobody holds the exclusive one.
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ok(IDLock, "locked by %s: a change is in progress", holder)
	}
	if err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	}
	this, _ := os.Hostname()
	gone := "that process is gone"
	if h.Host != "" && h.Host != this {
		gone = "that is another machine, and no process here holds it"
	}
	return warn(IDLock, fmt.Sprintf("nothing to do: the next p2ptls command takes it over; or remove %s", p),
		"stale lock left by %s: %s (it is taken over automatically; remove it if it bothers you)", holder, gone)
}
