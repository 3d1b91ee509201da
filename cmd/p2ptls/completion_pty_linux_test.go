//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// openPTY returns a pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skip("no pseudo-terminals:", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal("unlock pty:", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal("pty number:", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m, s
}

// TestBashReadlineCompletion types into an interactive bash on a pty and
// reads back the line readline made of a Tab: what a user sees, including
// how readline splits at "=" (the function-driving test cannot show that).
func TestBashReadlineCompletion(t *testing.T) {
	bash := shell(t, "bash")
	env, work := completionFixture(t)
	script, err := filepath.Abs(filepath.Join("..", "..", "completions", "p2ptls.bash"))
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, "PATH="+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"HOME="+t.TempDir(), "TERM=dumb", "PS1=$ ", "INPUTRC=/dev/null")
	// Ctrl-T prints the line being edited between brackets.
	setup := fmt.Sprintf("source %q; bind -x '\"\\C-t\": printf \"\\n[%%s]\\n\" \"$READLINE_LINE\"'\n", script)
	line := regexp.MustCompile(`\n\[([^\]\n]*)\]\r?\n`)
	for _, tc := range []struct{ typed, want string }{
		{"p2ptls mapping show app", "p2ptls mapping show app-example-com "},
		{"p2ptls mapping add --challenge=d", "p2ptls mapping add --challenge=dns-01 "},
		{"p2ptls mapping add --challenge=", "p2ptls mapping add --challenge="}, // three choices: nothing to insert
		{"p2ptls mapping add --challenge t", "p2ptls mapping add --challenge tls-alpn-01 "},
		{"p2ptls mapping add --key-t", "p2ptls mapping add --key-type "},
		{"p2ptls mapping add --cert-file=ch", "p2ptls mapping add --cert-file=chain.pem "},
		{"p2ptls mapping add --cert-file ch", "p2ptls mapping add --cert-file chain.pem "},
		{"p2ptls --config-dir ce", "p2ptls --config-dir certs/"},
		{"p2ptls admin token revoke o", "p2ptls admin token revoke ops "},
		{"p2ptls mapping add --listener w", "p2ptls mapping add --listener web "},
	} {
		t.Run(tc.typed, func(t *testing.T) {
			master, slave := openPTY(t)
			defer master.Close()
			ctx, cancel := context.WithTimeout(context.Background(), shellTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, bash, "--norc", "--noprofile", "-i")
			cmd.Env, cmd.Dir = env, work
			cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			slave.Close()
			defer func() { cancel(); cmd.Wait() }()
			out := make(chan []byte, 64)
			go func() {
				for {
					b := make([]byte, 4096)
					n, err := master.Read(b)
					if n > 0 {
						out <- b[:n]
					}
					if err != nil {
						close(out)
						return
					}
				}
			}()
			master.WriteString(setup)
			// The Tab, then Ctrl-T once the completion had time to run:
			// readline reads them in order, so the line printed is the
			// line after the Tab.
			master.WriteString(tc.typed + "\t\x14")
			var seen bytes.Buffer
			deadline := time.After(shellTimeout)
			for {
				select {
				case b, ok := <-out:
					if !ok {
						t.Fatalf("bash ended; output:\n%q", seen.String())
					}
					seen.Write(b)
					if m := line.FindSubmatch(seen.Bytes()); m != nil {
						if string(m[1]) != tc.want {
							t.Errorf("%q + Tab = %q, want %q", tc.typed, m[1], tc.want)
						}
						return
					}
				case <-deadline:
					t.Fatalf("no line from bash; output:\n%q", seen.String())
				}
			}
		})
	}
}
