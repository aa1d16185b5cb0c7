# bash completion for sockit-client                          -*- shell-script -*-
# Installed as share/bash-completion/completions/sockit-client. The option
# list is kept in step with `sockit-client --help` and
# `sockit-client --bench --help` by tests/e2e/test_completion.py.

_sockit_client() {
    local cur prev
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    # "--opt=value" typed as one word (or split at "=" by COMP_WORDBREAKS)
    if [[ $cur == --*=* ]]; then
        prev=${cur%%=*}
        cur=${cur#*=}
    elif [[ $cur == = && $prev == --* ]]; then
        cur=
    elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi

    case $prev in
        -f | --frame)
            COMPREPLY=($(compgen -W 'raw line len16 len32 ascii4' -- "$cur"))
            return
            ;;
        --bench-mode)
            COMPREPLY=($(compgen -W 'echo oneway connect idle' -- "$cur"))
            return
            ;;
        --file | --ca | --cert | --key)
            COMPREPLY=($(compgen -f -- "$cur"))
            compopt -o filenames 2>/dev/null
            return
            ;;
        --max-frame | -t | --timeout | --retries | --servername | --pin | \
            --conns | --size | --pipeline | --duration | --warmup | --interval)
            return # a value of the user's own
            ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '
            -u --udp -f --frame --max-frame -x --hex --hex-input --raw
            --file --progress --no-progress -t --timeout --retries
            --tls --ca --servername --pin --insecure --tls-strict-close
            --cert --key
            -q --quiet -v --verbose --check -h --help -V --version
            --bench --bench-mode --conns --size --pipeline --duration
            --warmup --interval --json --tls-resume --sockperf
            ' -- "$cur"))
    fi
} &&
    complete -F _sockit_client sockit-client
