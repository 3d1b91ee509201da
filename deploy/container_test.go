package deploy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	// The image's binary is built by build-image.sh in a subprocess, which
	// go test's cache cannot see: linking the command tree into this test
	// makes a change to p2ptls invalidate a cached pass.
	_ "github.com/p2pstream/p2ptls/commands"
	"github.com/p2pstream/p2ptls/state/pki"
)

// The image runs as this user and group (the "nonroot" of distroless).
const imageUID = 65532

// podman is the podman command line of /work/shared/notes/containers.md:
// on these machines crun cannot raise RLIMIT_NOFILE and refuses the hybrid
// cgroup setup, so every call goes through runc with cgroupfs, with a
// containers.conf that sets no default ulimits.
type podman struct {
	t    *testing.T
	conf string // CONTAINERS_CONF
}

// needContainerTool finds a tool, or skips; in CI (CI=true), which installs the
// tools, a missing one fails the test.
func needContainerTool(t *testing.T, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed: %s (CI installs podman, runc and podman-compose in .ci/run)", name, why)
		}
		t.Skipf("%s is not installed: %s", name, why)
	}
	return p
}

// newPodman skips unless podman, runc and root are there (root: rootless
// podman needs subuid ranges and a user session these machines lack).
func newPodman(t *testing.T) *podman {
	t.Helper()
	needContainerTool(t, "podman", "it builds and runs the image")
	if _, err := os.Stat("/usr/sbin/runc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("/usr/sbin/runc is missing (CI installs the Debian runc package)")
		}
		t.Skip("/usr/sbin/runc is missing")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the container test runs podman as root, and CI runs as root")
		}
		t.Skip("the container test runs podman as root")
	}
	conf := filepath.Join(t.TempDir(), "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &podman{t: t, conf: conf}
}

// cmd prepares one podman call, bounded by ctx.
func (p *podman) cmd(ctx context.Context, args ...string) *exec.Cmd {
	all := append([]string{"--runtime", "/usr/sbin/runc", "--cgroup-manager=cgroupfs"}, args...)
	c := exec.CommandContext(ctx, "podman", all...)
	c.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	return c
}

// run runs podman and returns its stdout; a failure ends the test.
func (p *podman) run(args ...string) string {
	p.t.Helper()
	out, errOut, err := p.try(2*time.Minute, args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// try runs podman within limit and returns stdout, stderr and its error.
func (p *podman) try(limit time.Duration, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c := p.cmd(ctx, args...)
	var out, errOut bytes.Buffer
	c.Stdout, c.Stderr = &out, &errOut
	err := c.Run()
	return out.String(), errOut.String(), err
}

// cleanup runs podman at the end of the test, ignoring "no such object".
func (p *podman) cleanup(args ...string) {
	p.t.Cleanup(func() {
		if _, errOut, err := p.try(time.Minute, args...); err != nil && !strings.Contains(errOut, "no such") {
			p.t.Logf("cleanup podman %s: %v: %s", strings.Join(args, " "), err, errOut)
		}
	})
}

// containerName is a name no other run (or helper) uses at the same time.
func containerName(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "p2ptls-test-" + hex.EncodeToString(b)
}

// containerFreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func containerFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// containerEventually retries f every 250 ms until it succeeds or within is over.
func containerEventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// buildImageContext assembles the image's build context with build-image.sh, as
// the README tells operators to, and checks that the binary is static.
func buildImageContext(t *testing.T) string {
	t.Helper()
	ctxDir := filepath.Join(t.TempDir(), "context")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute) // a cold CGO_ENABLED=0 build on 2 shared cores
	defer cancel()
	c := exec.CommandContext(ctx, "sh", "build-image.sh", "--context", ctxDir, "--context-only")
	c.Env = append(os.Environ(), "VERSION=container-test")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("build-image.sh --context-only: %v\n%s", err, out)
	}
	for _, f := range []string{"p2ptls", "ca-certificates.crt", "Containerfile", "rootfs/data"} {
		if _, err := os.Stat(filepath.Join(ctxDir, f)); err != nil {
			t.Fatalf("the context lacks %s: %v", f, err)
		}
	}
	bin, err := elf.Open(filepath.Join(ctxDir, "p2ptls"))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, prog := range bin.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Fatalf("the binary in the context is dynamically linked (%v): FROM scratch has no libc", prog.Type)
		}
	}
	return ctxDir
}

// imageConfig is the part of 'podman image inspect' the Containerfile sets.
type imageConfig struct {
	Config struct {
		User         string
		Env          []string
		Entrypoint   []string
		Cmd          []string
		ExposedPorts map[string]struct{}
		Volumes      map[string]struct{}
	}
	// Healthcheck is outside Config in podman's answer, and only in the
	// docker image format.
	Healthcheck *struct{ Test []string }
}

// TestContainerImage builds the image as the README says, runs serve in it
// against a fresh named volume, and checks what an operator relies on: it
// runs as 65532 and can write the volume, /healthz answers over the auto CA,
// the image's HEALTHCHECK passes, a p2ptls command run in the container
// changes the state and serve serves the result, and SIGTERM stops it
// cleanly within podman's timeout.
func TestContainerImage(t *testing.T) {
	p := newPodman(t)
	ctxDir := buildImageContext(t)
	name := containerName(t)
	image := "localhost/" + name + ":test"

	p.cleanup("rmi", "-f", image)
	// The docker format keeps HEALTHCHECK; podman's default OCI drops it.
	p.run("build", "--format", "docker", "-t", image, "-f", filepath.Join(ctxDir, "Containerfile"), ctxDir)

	var cfgs []imageConfig
	if err := json.Unmarshal([]byte(p.run("image", "inspect", image)), &cfgs); err != nil || len(cfgs) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	cfg := cfgs[0].Config
	for _, port := range []string{"443/tcp", "80/tcp", "8443/tcp"} {
		if _, ok := cfg.ExposedPorts[port]; !ok {
			t.Errorf("the image does not expose %s: %v", port, cfg.ExposedPorts)
		}
	}
	if _, ok := cfg.Volumes["/data"]; !ok {
		t.Errorf("the image declares no volume /data: %v", cfg.Volumes)
	}
	if cfg.User != fmt.Sprintf("%d:%d", imageUID, imageUID) || !slices.Contains(cfg.Env, "CONFIG_DIR=/data") ||
		!slices.Equal(cfg.Entrypoint, []string{"/p2ptls"}) || !slices.Equal(cfg.Cmd, []string{"serve"}) {
		t.Errorf("image config: user %q env %v entrypoint %v cmd %v", cfg.User, cfg.Env, cfg.Entrypoint, cfg.Cmd)
	}
	if hc := cfgs[0].Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "/p2ptls", "healthcheck", "--quiet"}) {
		t.Errorf("image healthcheck = %+v, want p2ptls healthcheck", hc)
	}

	volume, container := name+"-data", name
	p.cleanup("volume", "rm", "-f", volume)
	p.run("volume", "create", volume)
	p.cleanup("rm", "-f", "-t", "0", container)
	mgmt := containerFreeAddr(t)
	p.run("run", "-d", "--name", container, "--network", "host", "-v", volume+":/data",
		"-e", "MANAGEMENT_LISTEN="+mgmt, image)
	t.Cleanup(func() {
		if t.Failed() {
			logs, errLogs, _ := p.try(time.Minute, "logs", container)
			t.Logf("container logs:\n%s%s", logs, errLogs)
		}
	})

	// The fresh volume took /data's owner and mode: serve, not root,
	// created its state there.
	mount := strings.TrimSpace(p.run("volume", "inspect", "--format", "{{.Mountpoint}}", volume))

	// /healthz over the auto CA, which 'ca export' in the container hands out.
	var roots *x509.CertPool
	var caPEM string
	containerEventually(t, time.Minute, "serve answers /healthz over its auto CA", func() error {
		out, errOut, err := p.try(30*time.Second, "exec", container, "/p2ptls", "ca", "export")
		if err != nil {
			return fmt.Errorf("ca export: %v: %s", err, errOut)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM([]byte(out)) {
			return fmt.Errorf("ca export printed no certificate: %q", out)
		}
		caPEM = out
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
		resp, err := client.Get("https://" + mgmt + "/healthz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
			return fmt.Errorf("GET /healthz: %s %q", resp.Status, body)
		}
		return nil
	})
	if onDisk, err := os.ReadFile(filepath.Join(mount, "certs", "management", "ca.crt")); err != nil || string(onDisk) != caPEM {
		t.Errorf("the volume's certs/management/ca.crt is not the CA serve uses (%v)", err)
	}
	for _, rel := range []string{".", "certs/management", "certs/management/ca.key"} {
		st, err := os.Stat(filepath.Join(mount, rel))
		if err != nil {
			t.Fatal(err)
		}
		uid, mode := containerFileOwner(st), st.Mode().Perm()
		if uid != imageUID || mode&0o077 != 0 {
			t.Errorf("/data/%s in the volume: owner %d mode %o, want %d and closed to group and others", rel, uid, mode, imageUID)
		}
	}

	// The image's HEALTHCHECK, as podman runs it.
	if out, errOut, err := p.try(time.Minute, "healthcheck", "run", container); err != nil {
		t.Errorf("podman healthcheck run: %v\n%s%s", err, out, errOut)
	}

	// serve runs as 65532, not root.
	pid := strings.TrimSpace(p.run("inspect", "--format", "{{.State.Pid}}", container))
	status, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	if uids := containerProcField(string(status), "Uid:"); !slices.Equal(uids, []string{"65532", "65532", "65532", "65532"}) {
		t.Errorf("serve runs with Uid %v, want 65532 throughout", uids)
	}

	// A change made by p2ptls in the container is served: the new listener
	// presents the new mapping's certificate for its SNI.
	public := containerFreeAddr(t)
	p.run("exec", container, "/p2ptls", "listener", "add", "web", "--addr", public)
	p.run("exec", container, "/p2ptls", "mapping", "add", "--listener", "web", "--host", "app.example.test", "--id", "web-app", "--self-signed")
	var shown struct {
		Fingerprint string `json:"fingerprint_sha256"`
	}
	if err := json.Unmarshal([]byte(p.run("exec", container, "/p2ptls", "mapping", "show", "web-app", "--output", "json")), &shown); err != nil || shown.Fingerprint == "" {
		t.Fatalf("mapping show --output json: %v %+v", err, shown)
	}
	containerEventually(t, 30*time.Second, "serve presents the new mapping's certificate", func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", public,
			&tls.Config{ServerName: "app.example.test", InsecureSkipVerify: true}) // self-signed: compared by fingerprint below
		if err != nil {
			return err
		}
		defer conn.Close()
		leaf := conn.ConnectionState().PeerCertificates[0]
		if got := pki.Fingerprint(leaf); got != shown.Fingerprint {
			return fmt.Errorf("SNI app.example.test got certificate %s (%v), want the mapping's %s", got, leaf.DNSNames, shown.Fingerprint)
		}
		return nil
	})

	// SIGTERM (podman stop) ends serve gracefully: exit 0 well within the
	// timeout, after which podman would have sent SIGKILL (exit 137).
	const stopTimeout = 30
	start := time.Now()
	p.run("stop", "--time", fmt.Sprint(stopTimeout), container)
	took := time.Since(start)
	exit := strings.TrimSpace(p.run("inspect", "--format", "{{.State.ExitCode}}", container))
	if exit != "0" || took >= stopTimeout*time.Second {
		t.Errorf("podman stop: serve exited %s after %v, want 0 within %ds", exit, took.Round(time.Millisecond), stopTimeout)
	}
	t.Logf("podman stop took %v", took.Round(time.Millisecond))
}

// containerFileOwner is the uid owning a file.
func containerFileOwner(fi os.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }

// containerProcField returns the fields after key in a /proc/PID/status text.
func containerProcField(status, key string) []string {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// TestComposeFile checks deploy/compose.yaml with podman-compose itself.
// Debian's podman-compose 1.0.3 has no 'config' command, so the check is a
// dry run of 'up' with /bin/true as podman: podman-compose parses and
// interpolates the file and prints the 'podman run' it would start, and
// nothing is created. Where 'config' exists it must accept the file too.
func TestComposeFile(t *testing.T) {
	needContainerTool(t, "podman-compose", "it checks compose.yaml")
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	project := strings.ReplaceAll(containerName(t), "-", "")
	const publicURL = "https://mgmt.example.test:8443"
	compose := func(env []string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := exec.CommandContext(ctx, "podman-compose", append([]string{"-p", project, "-f", "compose.yaml"}, args...)...)
		c.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "MANAGEMENT_") || strings.HasPrefix(kv, "P2PTLS_") || strings.HasPrefix(kv, "COMPOSE_")
		}), env...)
		out, err := c.CombinedOutput()
		return string(out), err
	}
	dryRun := []string{"--dry-run", "--podman-path", truePath, "up", "-d"}

	out, err := compose([]string{"MANAGEMENT_PUBLIC_URL=" + publicURL, "P2PTLS_IMAGE=localhost/p2ptls:compose-test"}, dryRun...)
	if err != nil {
		t.Fatalf("podman-compose up --dry-run: %v\n%s", err, out)
	}
	var run []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && filepath.Base(f[0]) == "true" && f[1] == "run" {
			run = f[2:]
		}
	}
	if run == nil {
		t.Fatalf("podman-compose printed no podman run:\n%s", out)
	}
	joined := " " + strings.Join(run, " ") + " "
	for _, want := range []string{
		"--name=p2ptls",
		"--restart unless-stopped",
		"-v " + project + "_p2ptls-data:/data",
		"-p 443:443", "-p 80:80", "-p 8443:8443",
		"-e CONFIG_DIR=/data",
		"-e MANAGEMENT_TLS_MODE=auto",
		"-e MANAGEMENT_ALLOW_INSECURE_HTTP=false",
		"-e MANAGEMENT_PUBLIC_URL=" + publicURL,
		"-e MANAGEMENT_TLS_EXTRA_HOSTS=localhost",
		"-e MANAGEMENT_LISTEN=:8443",
		"--sysctl net.ipv4.ip_unprivileged_port_start=0",
		"--stop-signal SIGTERM",
		" localhost/p2ptls:compose-test serve ",
	} {
		if !strings.Contains(joined, " "+strings.TrimPrefix(want, " ")) {
			t.Errorf("podman run lacks %q:\n%s", want, joined)
		}
	}
	// An interpolation podman-compose did not understand stays as text
	// and would reach serve as a value.
	if strings.Contains(joined, "${") || strings.Contains(joined, "/bin/sh") {
		t.Errorf("podman run has an uninterpolated variable or a shell the image lacks:\n%s", joined)
	}

	// MANAGEMENT_PUBLIC_URL is required: without it nothing starts.
	out, err = compose(nil, dryRun...)
	if err == nil || !strings.Contains(out, "set MANAGEMENT_PUBLIC_URL") {
		t.Errorf("podman-compose without MANAGEMENT_PUBLIC_URL: %v, want a refusal naming it:\n%s", err, out)
	}

	out, err = compose([]string{"MANAGEMENT_PUBLIC_URL=" + publicURL}, "config")
	switch {
	case strings.Contains(out, "invalid choice: 'config'"):
		t.Logf("this podman-compose has no 'config' command; the dry run above checked the file")
	case err != nil || !strings.Contains(out, publicURL):
		t.Errorf("podman-compose config: %v\n%s", err, out)
	}
}
