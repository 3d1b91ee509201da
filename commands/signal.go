package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state"
)

// interruptGrace is how long a command may take to return after SIGINT or
// SIGTERM cancelled its context. Waits (the lock, DNS propagation, the
// random renewal sleep) and network calls honour the context and return at
// once; a command blocked elsewhere (a read of standard input) is not waited
// for longer, so that every command ends within a second.
const interruptGrace = 800 * time.Millisecond

// Run is main: it runs args and ends within about a second of SIGINT or
// SIGTERM, with exit code 130 or 143 and one line saying whether the state
// is unchanged or the change was saved. Only a commit in progress (local
// writes under the lock, milliseconds) is waited for, so an interrupted
// command never leaves half a change (see state.Freeze).
//
// serve keeps its own graceful shutdown: the first signal cancels its
// context, it drains its listeners and exits 0.
func Run(args []string, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	app := NewApp(io.Discard, io.Discard)
	serve := firstCommand(app, args) == "serve"
	applyGCPolicy(commandPath(app, args))
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, stdout, stderr) }()

	var sig os.Signal
	select {
	case code := <-done:
		return code
	case sig = <-sigs:
	}
	if serve {
		cancel(nil) // no interrupt: serve's shutdown is its own, and so is its exit code
		return <-done
	}
	in := &interrupt{sig: sig.(syscall.Signal)}
	cancel(in)
	grace := time.NewTimer(interruptGrace)
	defer grace.Stop()
	select {
	case code := <-done:
		return code
	case <-grace.C:
	case <-sigs: // asked twice: do not wait any longer
	}
	return in.exit(stderr)
}

// interrupt is the cause of the context of a command stopped by a signal.
type interrupt struct {
	sig  syscall.Signal
	once sync.Once
	code int
}

func (in *interrupt) Error() string {
	name := "SIGTERM"
	if in.sig == syscall.SIGINT {
		name = "SIGINT"
	}
	return "interrupted by " + name
}

// exit ends an interrupted command, once, whether the command returned or
// Run stopped waiting for it: it waits for a commit in progress, reports
// what became of the state and returns 128 + the signal's number.
func (in *interrupt) exit(stderr io.Writer) int {
	in.once.Do(func() {
		outcome := "the state is unchanged"
		switch saved := state.Freeze(); {
		case saved == 1:
			outcome = "the change it made was saved"
		case saved > 1:
			outcome = fmt.Sprintf("the %d changes it made were saved", saved)
		}
		fmt.Fprintf(stderr, "%s: error: %v; %s\n", appName, in, outcome)
		in.code = 128 + int(in.sig)
	})
	return in.code
}

// interruptOf returns the interrupt that cancelled ctx, if a signal did.
func interruptOf(ctx context.Context) *interrupt {
	var in *interrupt
	if errors.As(context.Cause(ctx), &in) {
		return in
	}
	return nil
}

// firstCommand is the name of the top-level command args run ("serve"),
// skipping the global flags before it; "" when there is none.
func firstCommand(app *cli.App, args []string) string {
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return ""
		case isFlagArg(a):
			if takesValue(app.Flags, a) {
				i++
			}
		default:
			if cmd := findCommand(app.Commands, a); cmd != nil {
				return cmd.Name
			}
			return a
		}
	}
	return ""
}
