package acme

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/text"
)

// DefaultDeployHookTimeout bounds a deploy hook when neither
// --deploy-hook-timeout nor acme.deploy_hook_timeout says otherwise.
const DefaultDeployHookTimeout = 5 * time.Minute

// hookGrace is how long a hook has between SIGTERM and SIGKILL, once its
// timeout passed or its context ended. A variable for tests.
var hookGrace = 5 * time.Second

// hookLogMax bounds the hook's output kept for the log and the error: a
// chatty hook must not grow serve's memory or its log without end.
const hookLogMax = 4 << 10

// Hook is a deploy hook: a /bin/sh command and how long it may run.
type Hook struct {
	Command string
	Timeout time.Duration // 0: DefaultDeployHookTimeout
}

// hook is the hook a run uses: the one given (--deploy-hook) wins over
// p2ptls.toml's acme.deploy_hook, with its timeout unless one was given.
func (o *RenewOptions) hook(cfg *state.Config) Hook {
	h := Hook{Command: o.DeployHook, Timeout: o.DeployHookTimeout}
	if h.Command == "" {
		h.Command = cfg.ACME.DeployHook
	}
	if h.Timeout <= 0 {
		h.Timeout = cfg.ACME.HookTimeout()
	}
	return h
}

// deploy runs the deploy hook for a renewed mapping with its files in the
// environment, once the change that wrote them is saved and the lock
// released: a hook may run p2ptls, even a command that changes the state.
// It runs in a process group of its own, so that what it started goes
// with it: when its timeout passes (or ctx ends: a signal, serve stopping)
// the group gets SIGTERM, and SIGKILL hookGrace later. Its output, bounded,
// goes to the log; a failure or a timeout is the hook's error, never the
// renewal's, which is saved by then.
func deploy(ctx context.Context, h Hook, log *slog.Logger, s state.Store, m state.Mapping) error {
	if h.Command == "" {
		return nil
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultDeployHookTimeout
	}
	certFile, keyFile, cleanup, err := hookFiles(ctx, s, m.ID)
	if err != nil {
		return fmt.Errorf("renewed, but the deploy hook cannot be given the files: %w", err)
	}
	defer cleanup()
	env := append(os.Environ(),
		"P2PTLS_MAPPING_ID="+m.ID,
		"P2PTLS_LISTENER="+m.Listener,
		"P2PTLS_HOSTS="+strings.Join(m.Hosts, " "),
		"P2PTLS_CERT_FILE="+certFile,
		"P2PTLS_KEY_FILE="+keyFile,
	)
	if l, ok := s.(state.Local); ok {
		// A p2ptls the hook runs finds the same state, whether this
		// process was given it by --config-dir or by the environment.
		env = append(env, "CONFIG_DIR="+l.Root())
	}
	out, err := runHook(ctx, h, env)
	log = log.With("mapping", m.ID)
	if err != nil {
		log.Warn("deploy hook failed", "err", err, "output", out)
		if out != "" {
			return fmt.Errorf("renewed, but the deploy hook failed: %w: %s", err, text.OneLine(out))
		}
		return fmt.Errorf("renewed, but the deploy hook failed: %w", err)
	}
	log.Info("deploy hook ran", "output", out)
	return nil
}

// errHookTimeout is a hook that ran past its timeout.
var errHookTimeout = errors.New("timed out")

// runHook runs h.Command with /bin/sh in env and returns the tail of its
// output (stdout and stderr together, at most hookLogMax bytes).
func runHook(ctx context.Context, h Hook, env []string) (string, error) {
	var out tailWriter
	cmd := exec.Command("/bin/sh", "-c", h.Command)
	cmd.Env = env
	cmd.Stdin = nil // /dev/null: a hook never waits on serve's or cron's stdin
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child that keeps the output pipe open after the group was killed
	// (it left the group) must not hold Wait forever.
	cmd.WaitDelay = hookGrace
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start /bin/sh: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(h.Timeout)
	defer timer.Stop()
	var stopped error
	select {
	case err := <-done:
		return out.String(), exitError(err)
	case <-timer.C:
		stopped = fmt.Errorf("%w after %s", errHookTimeout, h.Timeout)
	case <-ctx.Done():
		stopped = fmt.Errorf("stopped: %w", context.Cause(ctx))
	}
	pgid := cmd.Process.Pid // Setpgid: the group's id is the shell's pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	kill := time.NewTimer(hookGrace)
	defer kill.Stop()
	select {
	case <-done:
	case <-kill.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	return out.String(), stopped
}

// exitError says how a hook that ended by itself failed.
func exitError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("ended by signal %d (%s)", int(ws.Signal()), ws.Signal())
		}
		return fmt.Errorf("exit status %d", ee.ExitCode())
	}
	return err
}

// tailWriter keeps the last hookLogMax bytes written to it.
type tailWriter struct {
	mu      sync.Mutex
	b       []byte
	dropped bool
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	if len(p) >= hookLogMax {
		w.b, w.dropped = append(w.b[:0], p[len(p)-hookLogMax:]...), true
		return n, nil
	}
	if over := len(w.b) + len(p) - hookLogMax; over > 0 {
		w.b, w.dropped = append(w.b[:0], w.b[over:]...), true
	}
	w.b = append(w.b, p...)
	return n, nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := string(bytes.TrimSpace(w.b))
	if w.dropped {
		s = "… " + s
	}
	return s
}

// hookFiles names the deploy hook's certificate and key files. In a local
// state directory they are the mapping's own files. A store that is no
// directory (a remote backend, or a change not yet committed) has no such
// paths: the files are read through it into a private temporary directory
// that cleanup removes once the hook has run.
func hookFiles(ctx context.Context, s state.Store, id string) (certFile, keyFile string, cleanup func(), err error) {
	dir := mappings.MappingDir(id)
	if l, ok := s.(state.Local); ok {
		root := filepath.Join(l.Root(), filepath.FromSlash(dir))
		return filepath.Join(root, mappings.CertFileName), filepath.Join(root, mappings.KeyFileName), func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "p2ptls-deploy-")
	if err != nil {
		return "", "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(tmp) }
	for _, f := range []struct {
		name string
		mode os.FileMode
		path *string
	}{{mappings.CertFileName, state.PublicMode, &certFile}, {mappings.KeyFileName, state.SecretMode, &keyFile}} {
		b, err := s.Read(ctx, dir+"/"+f.name)
		if err == nil {
			*f.path = filepath.Join(tmp, f.name)
			err = state.WriteFileAtomic(*f.path, b, f.mode)
		}
		if err != nil {
			cleanup()
			return "", "", nil, err
		}
	}
	return certFile, keyFile, cleanup, nil
}
