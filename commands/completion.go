package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/fault"
)

// Shells that "completion" supports.
var completionShells = []string{"bash", "zsh", "fish"}

// Completion returns the completion script for shell. Every script asks the
// hidden "p2ptls __complete" (completion_engine.go) for the candidates, so
// the three shells offer the same flags, values and names.
func Completion(shell string) (string, error) {
	switch shell {
	case "bash":
		return bashCompletion, nil
	case "zsh":
		return zshCompletion, nil
	case "fish":
		return fishCompletion, nil
	}
	return "", fault.Invalidf("use one of: "+strings.Join(completionShells, ", "), "no completion for shell %q", shell)
}

func completionCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script",
		ArgsUsage: "bash|zsh|fish",
		Description: "The script completes commands, flags, flag values (--challenge, --output, ...),\n" +
			"file and directory names where a flag wants one, and the names the state\n" +
			"directory holds: mapping ids, listeners, DNS credentials and admin tokens. They\n" +
			"are read without taking the lock; a state that does not load completes none.\n" +
			"For the current shell only: source <(p2ptls completion bash).\n\n" +
			"EXAMPLES:\n" +
			"   p2ptls completion bash > ~/.local/share/bash-completion/completions/p2ptls\n" +
			"   p2ptls completion zsh | sudo tee /usr/local/share/zsh/site-functions/_p2ptls >/dev/null\n" +
			"   p2ptls completion fish > ~/.config/fish/completions/p2ptls.fish",
	}, func(_ context.Context, g *Globals, c *cli.Context) error {
		shell, err := oneArg(c, "SHELL (bash, zsh or fish)")
		if err != nil {
			return err
		}
		script, err := Completion(shell)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(g.Stdout, script)
		return err
	})
}
