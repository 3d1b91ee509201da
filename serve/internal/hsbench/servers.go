package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/mappings"
	"github.com/p2pstream/p2ptls/state/pki"
)

// serveBaseline is the reference server: bare crypto/tls with one ECDSA
// P-256 certificate, TLS 1.3, no session tickets. It completes each
// handshake and closes, which is what p2ptls serve does for our client
// (the client sends no request). It runs until it is killed.
//
// With stateDir it is the second reference: the same bare server holding
// every certificate of that p2ptls state, parsed up front and chosen by
// SNI from two maps (exact, then wildcard). Any server that signs with N
// distinct keys pays what this one pays; the difference to p2ptls serve is
// p2ptls's own overhead.
//
// With viaHTTP it is the third: the one-certificate server behind
// net/http's http.Server, with serve's timeouts. Any HTTPS server built on
// net/http pays its per-connection work, which a bare handshake loop does
// not.
func serveBaseline(ctx context.Context, addr, stateDir string, viaHTTP bool) error {
	kp, err := pki.SelfSigned(pki.ParseNames([]string{"baseline.example.com"}), time.Now(), 30*24*time.Hour)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return err
	}
	cfg := &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	}
	if stateDir != "" {
		byName, err := loadAll(ctx, stateDir)
		if err != nil {
			return err
		}
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := byName[hello.ServerName]; ok {
				return c, nil
			}
			if i := strings.IndexByte(hello.ServerName, '.'); i > 0 {
				if c, ok := byName["*"+hello.ServerName[i:]]; ok {
					return c, nil
				}
			}
			return &cert, nil
		}
	}
	if viaHTTP {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		return srv.ServeTLS(ln, "", "")
	}
	ln, err := tls.Listen("tcp", addr, cfg)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			c.(*tls.Conn).Handshake()
		}()
	}
}

// p2ptlsBinary is -bin, or else a build of p2ptls in tmp.
func p2ptlsBinary(ctx context.Context, o options, tmp string) (string, error) {
	if o.bin != "" {
		logf("p2ptls: %s", o.bin)
		return o.bin, nil
	}
	bin := filepath.Join(tmp, "p2ptls")
	return bin, buildP2ptls(ctx, bin)
}

// buildP2ptls builds cmd/p2ptls of the module hsbench runs in.
func buildP2ptls(ctx context.Context, out string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("run hsbench inside the p2ptls module: go env GOMOD names no go.mod")
	}
	root := filepath.Dir(mod)
	logf("building p2ptls from %s", root)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/p2ptls")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/p2ptls: %w", err)
	}
	return nil
}

// proc is a server process with its output in logFile.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logFile string
	done    chan struct{}
	waitErr error
}

func startProc(bin string, args, env []string, logFile string) (*proc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{name: filepath.Base(bin) + " " + strings.Join(args, " "), cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// cleanEnv is hsbench's environment without what would change how the
// servers run: the state directory, management and p2ptls settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "CONFIG_DIR" || k == "GOMAXPROCS" || strings.HasPrefix(k, "MANAGEMENT_") || strings.HasPrefix(k, "P2PTLS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop ends the process and its group gracefully (SIGTERM: nginx's
// worker is in the group), or kills the group after a while.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.pid() // Setpgid: the server leads its own group
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// A worker that outlived its master: the group still exists.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// waitServed waits until a handshake on addr for name gets a certificate
// covering name: for p2ptls serve that is after it loaded the state and
// opened the listener, for nginx after it loaded every server block.
func (p *proc) waitServed(ctx context.Context, addr, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		matched, err := handshake(addr, name)
		if err == nil && matched {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("the certificate served for %s does not cover it", name)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not serve %s on %s after %v (last: %v):\n%s", p.name, name, addr, timeout, last, tail(p.logFile))
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v) before serving %s on %s:\n%s", p.name, p.waitErr, name, addr, tail(p.logFile))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tail is the end of a log file, for error messages: the file goes away
// with the temporary directory.
func tail(file string) string {
	b, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// freeAddr returns a 127.0.0.1 address whose port was free just now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// loadAll parses every mapping's certificate of a p2ptls state, by host.
func loadAll(ctx context.Context, dir string) (map[string]*tls.Certificate, error) {
	cfg, err := state.LoadConfig(ctx, state.OpenDir(dir, time.Second))
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*tls.Certificate, len(cfg.Mappings))
	for _, m := range cfg.Mappings {
		md := filepath.Join(dir, filepath.FromSlash(mappings.MappingDir(m.ID)))
		c, err := tls.LoadX509KeyPair(filepath.Join(md, mappings.CertFileName), filepath.Join(md, mappings.KeyFileName))
		if err != nil {
			return nil, err
		}
		c.Leaf = nil // as p2ptls serve keeps them
		for _, h := range m.Hosts {
			byName[h] = &c
		}
	}
	return byName, nil
}
