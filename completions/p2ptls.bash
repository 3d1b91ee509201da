# bash completion for p2ptls (generated; do not edit)
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
