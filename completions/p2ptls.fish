# fish completion for p2ptls (generated; do not edit)
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
