#!/usr/bin/env bash
# Static builds for hosts without a matching libc (NAS boxes, small embedded systems, `FROM
# scratch` images): fakenotifyd and fakenotify-ctl linked with `+crt-static` on the host's gnu
# target, plus libfakenotify.so (which never needs a libc). Copies the three into
# $target/static/, checks that the executables have no interpreter and no NEEDED entry and that
# the library has no NEEDED entry, and prints their sizes.
#
# `--target <host triple>` keeps RUSTFLAGS away from build scripts and proc macros, which must
# stay dynamic to run on the build machine.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
[[ $target = /* ]] || target=$root/$target

host=$(rustc -vV | sed -n 's/^host: //p')
case $host in
*-linux-gnu*) ;;
*)
    echo "static-build: host $host is not a *-linux-gnu target; +crt-static here is untested" >&2
    exit 1
    ;;
esac
command -v readelf >/dev/null || {
    echo "static-build: readelf is missing (Debian: apt-get install binutils)" >&2
    exit 1
}

# Packed relative relocations (DT_RELR) shrink a static-pie's relocation table from ~50 KiB to
# ~2 KiB, keeping ASLR. They need binutils >= 2.38 and glibc >= 2.36 (whose static-pie start-up
# applies them): probed by linking and running a tiny static-pie C program with them.
relr=
probe=$(mktemp -d)
if printf 'int main(void) { return 0; }\n' >"$probe/p.c" &&
    cc -static-pie -fPIE -Wl,-z,pack-relative-relocs -o "$probe/p" "$probe/p.c" 2>/dev/null &&
    "$probe/p"; then
    relr=" -C link-arg=-Wl,-z,pack-relative-relocs"
else
    echo "static-build: no DT_RELR support (binutils < 2.38 or glibc < 2.36); the daemon is larger" >&2
fi
rm -rf "$probe"

RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static$relr" \
    cargo build --release --locked --target "$host" --target-dir "$target" \
    -p fakenotifyd -p fakenotify-ctl
cargo build --release --manifest-path preload/Cargo.toml --target-dir "$target"

out=$target/static
mkdir -p "$out"
for bin in fakenotifyd fakenotify-ctl; do
    install -m 0755 "$target/$host/release/$bin" "$out/$bin"
done
install -m 0755 "$target/release/libfakenotify.so" "$out/libfakenotify.so"

status=0
for file in "$out/fakenotifyd" "$out/fakenotify-ctl"; do
    if readelf -lW "$file" | grep -q 'Requesting program interpreter'; then
        echo "static-build: $file has a program interpreter: not static" >&2
        status=1
    fi
done
for file in "$out/fakenotifyd" "$out/fakenotify-ctl" "$out/libfakenotify.so"; do
    if readelf -dW "$file" | grep -q '(NEEDED)'; then
        echo "static-build: $file has NEEDED entries:" >&2
        readelf -dW "$file" | grep '(NEEDED)' >&2
        status=1
    fi
done
[ "$status" -eq 0 ] || exit "$status"

echo "static artifacts in $out (no interpreter, no NEEDED):"
for file in "$out/fakenotifyd" "$out/fakenotify-ctl" "$out/libfakenotify.so"; do
    printf '  %-18s %8d bytes\n' "$(basename "$file")" "$(stat -c %s "$file")"
done
