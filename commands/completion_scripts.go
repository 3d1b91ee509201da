package commands

// The completion scripts are thin: each passes the words typed so far to
// "p2ptls __complete" and hands its candidates to the shell, completing
// file or directory names itself when the directive says so. The program
// they run is the one typed (words[0]), so a p2ptls outside $PATH
// completes too.

// bashCompletion needs bash 4 (compopt); it works without bash-completion.
const bashCompletion = `# bash completion for p2ptls (generated; do not edit)
# Candidates come from "p2ptls __complete WORD... CURRENT".

_p2ptls() {
  local cur=${COMP_WORDS[COMP_CWORD]} prog=${COMP_WORDS[0]} w i n
  local -a args=()
  # bash splits "--flag=value" at "=": join the pieces again.
  for (( i = 1; i <= COMP_CWORD; i++ )); do
    w=${COMP_WORDS[i]}
    n=${#args[@]}
    if (( n > 0 )) && [[ ( $w == "=" && ${args[n-1]} == --* && ${args[n-1]} != *=* ) || ${args[n-1]} == --*= ]]; then
      args[n-1]+=$w
    else
      args+=("$w")
    fi
  done
  local word=${args[${#args[@]}-1]}
  # keep is the part of word before what readline replaces: all of it
  # after a lone "=", which readline never replaces.
  [[ $cur == "=" ]] && cur=
  local keep=${word:0:${#word}-${#cur}}
  [[ $prog == "~/"* ]] && prog=$HOME/${prog#"~/"}
  local out
  out=$("$prog" __complete "${args[@]}" 2>/dev/null) || return 0
  COMPREPLY=()
  local directive= line
  while IFS= read -r line; do
    if [[ -z $directive ]]; then
      directive=$line
    elif [[ -n $line ]]; then
      COMPREPLY+=("${line%%$'\t'*}")
    fi
  done <<<"$out"
  local mode=${directive%%$'\t'*} prefix=${directive#*$'\t'}
  if [[ $mode == :files || $mode == :dirs ]]; then
    local kind=-f f
    [[ $mode == :dirs ]] && kind=-d
    while IFS= read -r f; do
      [[ -n $f ]] && COMPREPLY+=("$prefix$f")
    done < <(compgen $kind -- "${word#"$prefix"}")
    compopt -o filenames 2>/dev/null
  fi
  if [[ -n $keep ]]; then
    for i in "${!COMPREPLY[@]}"; do
      COMPREPLY[i]=${COMPREPLY[i]#"$keep"}
    done
  fi
  return 0
}

complete -F _p2ptls p2ptls
`

// zshCompletion works installed on $fpath (autoloaded by compinit) and
// sourced.
const zshCompletion = `#compdef p2ptls
# zsh completion for p2ptls (generated; do not edit)
# Candidates come from "p2ptls __complete WORD... CURRENT".

_p2ptls() {
  local prog=${words[1]} out mode prefix line
  local -a lines cands
  [[ $prog == '~/'* ]] && prog=$HOME/${prog#'~/'}
  out=$("$prog" __complete "${(@Q)words[2,CURRENT-1]}" "${(Q)PREFIX}" 2>/dev/null) || return 1
  lines=("${(@f)out}")
  mode=${lines[1]%%$'\t'*}
  prefix=${lines[1]#*$'\t'}
  for line in "${(@)lines[2,-1]}"; do
    [[ -n $line ]] || continue
    if [[ $line == *$'\t'* ]]; then
      cands+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
    else
      cands+=("${line//:/\\:}")
    fi
  done
  local ret=1
  (( ${#cands} )) && _describe -t values p2ptls cands && ret=0
  if [[ $mode == :files || $mode == :dirs ]]; then
    [[ -n $prefix ]] && compset -P "${(b)prefix}"
    if [[ $mode == :dirs ]]; then
      _files -/ && ret=0
    else
      _files && ret=0
    fi
  fi
  return ret
}

if [[ $funcstack[1] == _p2ptls ]]; then
  _p2ptls "$@"
else
  compdef _p2ptls p2ptls
fi
`

// fishCompletion replaces any other p2ptls completion fish has loaded.
const fishCompletion = `# fish completion for p2ptls (generated; do not edit)
# Candidates come from "p2ptls __complete WORD... CURRENT".

function __p2ptls_complete
    set -l args (commandline -opc)
    set -l cur (commandline -ct)
    set -l out ($args[1] __complete $args[2..-1] "$cur" 2>/dev/null)
    or return
    set -l mode (string replace -r '\t.*' '' -- $out[1])
    set -l prefix (string replace -r '^[^\t]*\t' '' -- $out[1])
    for line in $out[2..-1]
        echo $line
    end
    set -l path "$cur"
    if test -n "$prefix"
        set path (string replace -- "$prefix" '' "$cur")
    end
    switch "$mode"
        case :files
            for f in (__fish_complete_path "$path")
                echo "$prefix$f"
            end
        case :dirs
            for f in (__fish_complete_directories "$path")
                echo "$prefix$f"
            end
    end
end

complete -c p2ptls -e
complete -c p2ptls -f -a '(__p2ptls_complete)'
`
