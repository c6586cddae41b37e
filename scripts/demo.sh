#!/usr/bin/env bash
# FakeNotify in under a minute.
#
# Builds the release binaries, mounts a temporary bindfs (a FUSE filesystem standing in for an
# NFS share), starts fakenotifyd on a temporary socket, and runs `inotifywait -m` on the mount
# twice: as is, and with LD_PRELOAD=libfakenotify.so. Then it changes files in the backing
# directory, as another machine would on a real share, and prints what each inotifywait saw side
# by side. Everything is removed on exit, Ctrl-C included. Nothing is installed or left behind.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
[[ $target = /* ]] || target=$root/$target

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 (package: $2)"); }
need cargo "rustup.rs"
need bindfs bindfs
need fusermount3 fuse3
need inotifywait inotify-tools
if ((${#missing[@]})); then
    echo "demo: missing: ${missing[*]}" >&2
    echo "demo: on Debian/Ubuntu: sudo apt-get install bindfs fuse3 inotify-tools" >&2
    exit 1
fi
if [ ! -e /dev/fuse ]; then
    echo "demo: /dev/fuse is missing: load the fuse module (sudo modprobe fuse)," \
        "or run the container with --device /dev/fuse --cap-add SYS_ADMIN" >&2
    exit 1
fi

echo "==> cargo build --release   (and the preload, a workspace of its own)"
cargo build --release --quiet
cargo build --release --quiet --manifest-path preload/Cargo.toml --target-dir "$target"

work=$(mktemp -d "${TMPDIR:-/tmp}/fakenotify-demo.XXXXXX")
backing=$work/server-side
mount=$work/mnt
socket=$work/fakenotify.sock
mkdir "$backing" "$mount"
pids=()

cleanup() {
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if mountpoint -q "$mount" 2>/dev/null; then
        fusermount3 -u "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted"; exit 130' INT TERM

# Waits up to 10 s for a command to succeed.
wait_until() {
    local tries=100
    until "$@" >/dev/null 2>&1; do
        ((--tries)) || { echo "demo: timed out waiting for: $*" >&2; return 1; }
        sleep 0.1
    done
}

echo "==> bindfs $backing $mount   (FUSE: the kernel never sees changes made on the server side)"
bindfs "$backing" "$mount"

printf '[daemon]\ndefault_poll_interval = "1s"\n' >"$work/config.toml"
echo "==> fakenotifyd start --socket $socket   (polls remote directories every 1s)"
"$target/release/fakenotifyd" start --socket "$socket" --config "$work/config.toml" 2>"$work/daemon.log" &
pids+=($!)
if ! wait_until "$target/release/fakenotify-ctl" status --socket "$socket"; then
    cat "$work/daemon.log" >&2
    exit 1
fi

# The events applications act on. (Left out: IN_ACCESS, which a plain watcher of the mount also
# gets each time the daemon lists the directory, and IN_OPEN/IN_CLOSE_NOWRITE.)
events=create,modify,attrib,close_write,moved_from,moved_to,delete,delete_self
echo "==> inotifywait -m -e $events $mount"
echo "    (twice: plain, and with LD_PRELOAD=libfakenotify.so)"
format='%e %f'
inotifywait -m -e "$events" --format "$format" "$mount" >"$work/plain.out" 2>"$work/plain.err" &
pids+=($!)
LD_PRELOAD=$target/release/libfakenotify.so FAKENOTIFY_SOCKET=$socket \
    inotifywait -m -e "$events" --format "$format" "$mount" >"$work/fake.out" 2>"$work/fake.err" &
pids+=($!)
wait_until grep -q "Watches established" "$work/plain.err"
wait_until grep -q "Watches established" "$work/fake.err"

# Each change, then enough time for a poll to see it (and for a written file to settle).
change() {
    echo "    \$ $1"
    (cd "$backing" && eval "$1")
    sleep "$2"
}
echo
echo "==> changes on the server side ($backing):"
change 'echo hello > notes.txt' 2.5
change 'echo more >> notes.txt' 2.5
change 'mv notes.txt notes-final.txt' 1.5
change 'mkdir Photos' 1.5
change 'rm notes-final.txt' 1.5

echo
width=40
printf "%-${width}s | %s\n" "inotifywait" "inotifywait + libfakenotify.so"
printf "%-${width}s-+-%s\n" "$(printf -- '-%.0s' $(seq $width))" "$(printf -- '-%.0s' $(seq $width))"
# Snapshots of what each printed, "(nothing)" for an empty one.
shown() { if [ -s "$1" ]; then cat "$1"; else echo "(nothing)"; fi; }
shown "$work/plain.out" >"$work/plain.shown"
shown "$work/fake.out" >"$work/fake.shown"
plain_events=$(wc -l <"$work/plain.out")
fake_events=$(wc -l <"$work/fake.out")
paste -d '\t' "$work/plain.shown" "$work/fake.shown" |
    awk -F '\t' -v w="$width" '{ printf "%-" w "s | %s\n", $1, $2 }'
echo
echo "without FakeNotify: $plain_events events; with FakeNotify: $fake_events events"
