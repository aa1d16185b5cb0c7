# bash completion for sockit-server                          -*- shell-script -*-
# Installed as share/bash-completion/completions/sockit-server. The option
# list is kept in step with `sockit-server --help` by tests/e2e/test_completion.py.

_sockit_server() {
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
        -m | --mode)
            COMPREPLY=($(compgen -W 'echo discard chargen chat files sockperf forward' -- "$cur"))
            return
            ;;
        -f | --frame)
            COMPREPLY=($(compgen -W 'raw line len16 len32 ascii4' -- "$cur"))
            return
            ;;
        --log-format)
            COMPREPLY=($(compgen -W 'text json' -- "$cur"))
            return
            ;;
        --cert | --key | --client-ca | --log-file | --upstream-ca | \
            --upstream-cert | --upstream-key)
            COMPREPLY=($(compgen -f -- "$cur"))
            compopt -o filenames 2>/dev/null
            return
            ;;
        --root)
            COMPREPLY=($(compgen -d -- "$cur"))
            compopt -o filenames 2>/dev/null
            return
            ;;
        -l | --listen | -w | --workers | --max-frame | --max-conns | --max-queue | \
            --idle-timeout | --frame-timeout | --grace | --max-file | \
            --handshake-timeout | --udp-rate | --udp-burst | --metrics | \
            --to | --connect-timeout | --upstream-servername)
            return # a value of the user's own
            ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '
            -l --listen -u --udp -w --workers
            -m --mode -f --frame --root
            --to --connect-timeout --upstream-tls --upstream-ca
            --upstream-servername --upstream-insecure --upstream-cert
            --upstream-key --send-proxy --send-proxy-v2
            --tls --cert --key --client-ca --self-signed --handshake-timeout
            --proxy-protocol
            --max-frame --max-conns --max-queue --idle-timeout --frame-timeout
            --grace --max-file --udp-rate --udp-burst
            -q --quiet -v --verbose --log-format --log-file --metrics
            --check -h --help -V --version
            ' -- "$cur"))
    fi
} &&
    complete -F _sockit_server sockit-server
