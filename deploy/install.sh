#!/bin/sh
# FakeNotify installer: copies an existing release build into place, or removes it again.
#
#   deploy/install.sh [install|uninstall]          (default: install; run as root)
#
# What goes where (DESTDIR is prepended to every path, for staging and packaging):
#   $PREFIX/bin/fakenotifyd, $PREFIX/bin/fakenotify-ctl
#   $PREFIX/lib/fakenotify/libfakenotify.so
#   $PREFIX/lib/fakenotify/libfakenotify_preload.so   -> libfakenotify.so (the compose name)
#   $PREFIX/share/fakenotify/config.example.toml
#   $PREFIX/share/man/man{1,7,8}/...                   fakenotify-ctl.1, fakenotify.7, fakenotifyd.8
#   $PREFIX/share/bash-completion/completions/fakenotify-ctl, .../fakenotifyd -> fakenotify-ctl
#   $PREFIX/share/zsh/site-functions/_fakenotify, $PREFIX/share/fish/vendor_completions.d/*.fish
#   $SYSCONFDIR/fakenotify/config.toml                 the example with its [[watch]] tables
#                                                      commented out, only if absent
#   $UNITDIR/fakenotify.service, $UNITDIR/fakenotify.socket   (ExecStart= in $PREFIX/bin)
#
# Variables: PREFIX (/usr/local), SYSCONFDIR (/etc), UNITDIR ($SYSCONFDIR/systemd/system, which
# systemd reads whatever PREFIX is), DESTDIR (empty), FAKENOTIFY_BUILD (the directory holding the
# three built files: $CARGO_TARGET_DIR/release, else target/release; target/static after
# `just static`).
#
# Running it again changes nothing: a file whose content and mode already match is left alone
# (same mtime). Uninstall removes what install put, except a config.toml that was edited.
set -eu

usage() {
    sed -n '2,22s/^# \{0,1\}//p' "$0"
}

mode=${1:-install}
case $mode in
install | uninstall) ;;
-h | --help)
    usage
    exit 0
    ;;
*)
    echo "install.sh: unknown mode '$mode' (install or uninstall)" >&2
    exit 2
    ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$SYSCONFDIR/systemd/system}
DESTDIR=${DESTDIR:-}
target=${CARGO_TARGET_DIR:-$root/target}
case $target in
/*) ;;
*) target=$root/$target ;;
esac
build=${FAKENOTIFY_BUILD:-$target/release}

bindir=$PREFIX/bin
libdir=$PREFIX/lib/fakenotify
datadir=$PREFIX/share/fakenotify
confdir=$SYSCONFDIR/fakenotify
mandir=$PREFIX/share/man
bashdir=$PREFIX/share/bash-completion/completions
zshdir=$PREFIX/share/zsh/site-functions
fishdir=$PREFIX/share/fish/vendor_completions.d
example=$root/deploy/config.example.toml

changed=0

say() {
    printf 'install.sh: %s\n' "$*"
}

# put SOURCE PATH MODE: install SOURCE as $DESTDIR$PATH unless it already holds the same bytes
# with the same mode. The copy is written beside the target and renamed over it, so a running
# daemon or a preloaded program never sees half a file.
put() {
    dest=$DESTDIR$2
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$1" "$dest" &&
        [ "$(stat -c %a "$dest")" = "$3" ]; then
        say "unchanged  $2"
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    cp "$1" "$dest.new.$$"
    chmod "$3" "$dest.new.$$"
    mv -f "$dest.new.$$" "$dest"
    say "installed  $2"
    changed=$((changed + 1))
}

# link TARGET PATH: make $DESTDIR$PATH a symbolic link to TARGET unless it already is one.
link() {
    dest=$DESTDIR$2
    if [ -L "$dest" ] && [ "$(readlink "$dest")" = "$1" ]; then
        say "unchanged  $2 -> $1"
        return 0
    fi
    mkdir -p "$(dirname "$dest")"
    ln -sfn "$1" "$dest"
    say "linked     $2 -> $1"
    changed=$((changed + 1))
}

# inert EXAMPLE: the example with every line from its first [[watch]] on commented out, so a
# fresh install runs on the defaults and warns about no path that does not exist here.
inert() {
    sed '/^\[\[watch\]\]/,$ s/^\([^#]\)/# \1/' "$1"
}

# drop PATH: remove $DESTDIR$PATH if it exists.
drop() {
    if [ -e "$DESTDIR$1" ] || [ -L "$DESTDIR$1" ]; then
        rm -f "$DESTDIR$1"
        say "removed    $1"
        changed=$((changed + 1))
    fi
}

# prune DIR...: remove each $DESTDIR$DIR that is empty.
prune() {
    for dir in "$@"; do
        rmdir "$DESTDIR$dir" 2>/dev/null || true
    done
}

systemd_running() {
    [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

do_install() {
    missing=
    for file in fakenotifyd fakenotify-ctl libfakenotify.so; do
        [ -f "$build/$file" ] || missing="$missing $file"
    done
    if [ -n "$missing" ]; then
        echo "install.sh: not built in $build:$missing" >&2
        echo "install.sh: build first: just release   (or: cargo build --release &&" \
            "cargo build --release --manifest-path preload/Cargo.toml --target-dir target)," >&2
        echo "install.sh: or point FAKENOTIFY_BUILD at a build (just static: target/static)" >&2
        exit 1
    fi

    put "$build/fakenotifyd" "$bindir/fakenotifyd" 755
    put "$build/fakenotify-ctl" "$bindir/fakenotify-ctl" 755
    put "$build/libfakenotify.so" "$libdir/libfakenotify.so" 755
    link libfakenotify.so "$libdir/libfakenotify_preload.so"
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    put "$example" "$datadir/config.example.toml" 644
    put "$root/man/fakenotify-ctl.1" "$mandir/man1/fakenotify-ctl.1" 644
    put "$root/man/fakenotify.7" "$mandir/man7/fakenotify.7" 644
    put "$root/man/fakenotifyd.8" "$mandir/man8/fakenotifyd.8" 644
    put "$root/completions/fakenotify-ctl.bash" "$bashdir/fakenotify-ctl" 644
    link fakenotify-ctl "$bashdir/fakenotifyd"
    put "$root/completions/_fakenotify" "$zshdir/_fakenotify" 644
    put "$root/completions/fakenotify-ctl.fish" "$fishdir/fakenotify-ctl.fish" 644
    put "$root/completions/fakenotifyd.fish" "$fishdir/fakenotifyd.fish" 644
    if [ -e "$DESTDIR$confdir/config.toml" ]; then
        say "kept       $confdir/config.toml (it exists)"
    else
        inert "$example" >"$scratch/config.toml"
        put "$scratch/config.toml" "$confdir/config.toml" 644
    fi

    # The units name /usr/local/bin; point them at this PREFIX.
    units_before=$changed
    for unit in fakenotify.service fakenotify.socket; do
        sed "s|/usr/local/bin/|$bindir/|g" "$root/deploy/systemd/$unit" >"$scratch/$unit"
        put "$scratch/$unit" "$UNITDIR/$unit" 644
    done
    if [ "$changed" -ne "$units_before" ] && systemd_running; then
        systemctl daemon-reload
        say "ran        systemctl daemon-reload"
    fi

    if [ "$changed" -eq 0 ]; then
        say "nothing to do: everything is in place"
    else
        say "$changed file(s) changed"
    fi
    if [ -z "$DESTDIR" ]; then
        cat <<EOF
install.sh: next steps:
  systemctl enable --now fakenotify.socket fakenotify.service
  LD_PRELOAD=$libdir/libfakenotify.so <program>     (or see the README for containers)
EOF
    fi
}

do_uninstall() {
    if systemd_running && [ -e "$UNITDIR/fakenotify.service" ]; then
        systemctl disable --now fakenotify.socket fakenotify.service || true
    fi
    drop "$bindir/fakenotifyd"
    drop "$bindir/fakenotify-ctl"
    drop "$libdir/libfakenotify_preload.so"
    drop "$libdir/libfakenotify.so"
    if [ -f "$DESTDIR$confdir/config.toml" ]; then
        # As installed (or as installed before the tables were commented out): not edited.
        if inert "$example" | cmp -s - "$DESTDIR$confdir/config.toml" ||
            cmp -s "$example" "$DESTDIR$confdir/config.toml"; then
            drop "$confdir/config.toml"
        else
            say "kept       $confdir/config.toml (edited; remove it yourself)"
        fi
    fi
    drop "$datadir/config.example.toml"
    drop "$mandir/man1/fakenotify-ctl.1"
    drop "$mandir/man7/fakenotify.7"
    drop "$mandir/man8/fakenotifyd.8"
    drop "$bashdir/fakenotifyd"
    drop "$bashdir/fakenotify-ctl"
    drop "$zshdir/_fakenotify"
    drop "$fishdir/fakenotify-ctl.fish"
    drop "$fishdir/fakenotifyd.fish"
    units_before=$changed
    drop "$UNITDIR/fakenotify.service"
    drop "$UNITDIR/fakenotify.socket"
    if [ "$changed" -ne "$units_before" ] && systemd_running; then
        systemctl daemon-reload
    fi
    # Only directories left empty go; shared ones that hold other packages' files stay.
    prune "$libdir" "$datadir" "$confdir" "$mandir/man1" "$mandir/man7" "$mandir/man8" "$mandir" \
        "$bashdir" "$PREFIX/share/bash-completion" "$zshdir" "$PREFIX/share/zsh" "$fishdir" \
        "$PREFIX/share/fish"
    say "$changed file(s) removed"
}

case $mode in
install) do_install ;;
uninstall) do_uninstall ;;
esac
