package commands

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/fault"
)

// Shells that "completion" supports.
var completionShells = []string{"bash", "zsh", "fish"}

// bashCompletion is urfave/cli v2's autocomplete/bash_autocomplete with the
// program name fixed, so the file works wherever it is installed.
const bashCompletion = `#! /bin/bash
# bash completion for p2ptls (generated; do not edit)

_p2ptls_init_completion() {
  COMPREPLY=()
  _get_comp_words_by_ref "$@" cur prev words cword
}

_p2ptls_bash_autocomplete() {
  if [[ "${COMP_WORDS[0]}" != "source" ]]; then
    local cur opts base words
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    if declare -F _init_completion >/dev/null 2>&1; then
      _init_completion -n "=:" || return
    else
      _p2ptls_init_completion -n "=:" || return
    fi
    words=("${words[@]:0:$cword}")
    if [[ "$cur" == "-"* ]]; then
      requestComp="${words[*]} ${cur} --generate-bash-completion"
    else
      requestComp="${words[*]} --generate-bash-completion"
    fi
    opts=$(eval "${requestComp}" 2>/dev/null)
    COMPREPLY=($(compgen -W "${opts}" -- ${cur}))
    return 0
  fi
}

complete -o bashdefault -o default -o nospace -F _p2ptls_bash_autocomplete p2ptls
`

// zshCompletion is urfave/cli v2's autocomplete/zsh_autocomplete with the
// program name fixed.
const zshCompletion = `#compdef p2ptls
# zsh completion for p2ptls (generated; do not edit)

_p2ptls_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _p2ptls_zsh_autocomplete p2ptls
`

// Completion returns the completion script for shell.
func Completion(shell string) (string, error) {
	switch shell {
	case "bash":
		return bashCompletion, nil
	case "zsh":
		return zshCompletion, nil
	case "fish":
		return NewApp(io.Discard, io.Discard).ToFishCompletion()
	}
	return "", fault.Invalidf("use one of: "+strings.Join(completionShells, ", "), "no completion for shell %q", shell)
}

// ManPage returns man/p2ptls.1.
func ManPage() (string, error) {
	return NewApp(io.Discard, io.Discard).ToManWithSection(1)
}

func completionCommand() *cli.Command {
	return leaf(&cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script",
		ArgsUsage: "bash|zsh|fish",
		Description: "Load it for this shell:  source <(p2ptls completion bash)\n" +
			"or install the files under completions/ (see the README).",
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
