# Drives the real zsh completion system: starts an interactive zsh on a
# pty (zsh/zpty), loads compinit with the completion file from $1 on
# $fpath, types $2 and a Tab, and prints every match compadd receives, one
# per line. A wrapped compadd records the matches (after zsh's own prefix
# matching); the display is never parsed.
# Usage: zsh -f complete.zsh FPATH_DIR 'p2ptls mapping show '
zmodload zsh/zpty || exit 3
zpty z zsh -f -i
zpty -w z "PROMPT= RPROMPT= PS2=; unsetopt zle_bracketed_paste 2>/dev/null; fpath=(${(q)1} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z 'zstyle ":completion:*" list-grouped false; zstyle ":completion:*" insert-tab false; bindkey "^I" complete-word'
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a __hits; builtin compadd -A __hits "$@"; local h; for h in $__hits; do print -r -- "MATCH:$IPREFIX$h"; done; builtin compadd "$@"; }'
zpty -w z 'm1() { print -r -- BEGIN-MATCHES; }; m2() { print -r -- END-MATCHES; exit }; compprefuncs=(m1); comppostfuncs=(m2)'
zpty -w z 'print -r -- READY'
local line
while zpty -r z line; do [[ $line == READY* ]] && break; done
zpty -w -n z "$2"$'\t'
integer on=0
while zpty -r z line; do
  line=${line%$'\r'}
  line=${line%$'\n'}
  line=${line%$'\r'}
  [[ $line == *BEGIN-MATCHES* ]] && on=1 && continue
  [[ $line == *END-MATCHES* ]] && exit 0
  (( on )) && [[ $line == *MATCH:* ]] && print -r -- "${line#*MATCH:}"
done
exit 2
