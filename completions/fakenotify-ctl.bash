# bash completion for fakenotify-ctl and fakenotifyd (installed as
# share/bash-completion/completions/fakenotify-ctl, with fakenotifyd a link to it).

_fakenotify_events="access modify attrib close_write close_nowrite close open moved_from moved_to move move_self create delete delete_self unmount all"

_fakenotify() {
    local cur prev verb i
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    verb=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --socket | --config | -o | --outfile | --fromfile) ((i++)) ;;
        -*) ;;
        *)
            verb=${COMP_WORDS[i]}
            break
            ;;
        esac
    done

    case $prev in
    --socket | --config)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    --mode)
        mapfile -t COMPREPLY < <(compgen -W "auto poll inotify" -- "$cur")
        return
        ;;
    --log-level)
        mapfile -t COMPREPLY < <(compgen -W "error warn info debug" -- "$cur")
        return
        ;;
    -e | --event | --events)
        # A comma list: complete the last name, keep those before it.
        local before=${cur%"${cur##*,}"}
        mapfile -t COMPREPLY < <(compgen -P "$before" -W "$_fakenotify_events" -- "${cur##*,}")
        return
        ;;
    --poll-interval | --heartbeat | --coalesce | -t | --timeout | --format | --timefmt | --exclude | --excludei | --include | --includei)
        return
        ;;
    esac

    if [ -z "$verb" ]; then
        local verbs="status list add remove reload stop watch"
        if [ "$1" = fakenotifyd ]; then verbs="start $verbs"; else verbs="$verbs doctor feed"; fi
        mapfile -t COMPREPLY < <(compgen -W "$verbs --socket --help --version" -- "$cur")
        return
    fi

    local options="--socket --json --help"
    case $verb in
    start) options="--config --socket --log-level --help" ;;
    add) options="$options --poll-interval --no-recursive --mode" ;;
    feed) options="--heartbeat --coalesce --help" ;;
    watch) options="$options -m --monitor -r --recursive -e --event -q --quiet -t --timeout --format --no-newline --timefmt --exclude --excludei --include --includei -c --csv -P --no-dereference -o --outfile --fromfile" ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
    elif [[ $verb == add || $verb == remove || $verb == watch || $verb == feed ]]; then
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
    elif [[ $verb == doctor ]]; then
        # A PID or a command name, as /proc/PID/comm shows it.
        mapfile -t COMPREPLY < <(compgen -W "$(cat /proc/[0-9]*/comm 2>/dev/null | sort -u)" -- "$cur")
    fi
}

complete -F _fakenotify fakenotify-ctl fakenotifyd
