# fish completion for fakenotifyd (installed in share/fish/vendor_completions.d).
set -l verbs start status list add remove reload stop

complete -c fakenotifyd -f
complete -c fakenotifyd -n "not __fish_seen_subcommand_from $verbs" -a start -d 'serve in the foreground'
complete -c fakenotifyd -n "not __fish_seen_subcommand_from $verbs" -a 'status list add remove reload stop' -d 'as fakenotify-ctl'
complete -c fakenotifyd -n '__fish_seen_subcommand_from start' -l config -r -F -d 'TOML configuration'
complete -c fakenotifyd -n '__fish_seen_subcommand_from start' -l log-level -x -a 'error warn info debug'
complete -c fakenotifyd -l socket -r -F -d 'the socket'
complete -c fakenotifyd -l json -d 'JSON output'
complete -c fakenotifyd -l help -d 'show help'
complete -c fakenotifyd -n '__fish_seen_subcommand_from add remove' -a '(__fish_complete_directories)'
complete -c fakenotifyd -n '__fish_seen_subcommand_from add' -l poll-interval -x -d 'poll interval'
complete -c fakenotifyd -n '__fish_seen_subcommand_from add' -l no-recursive -d 'this directory only'
complete -c fakenotifyd -n '__fish_seen_subcommand_from add' -l mode -x -a 'auto poll inotify'
