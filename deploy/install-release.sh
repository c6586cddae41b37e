#!/bin/sh
# FakeNotify release installer: downloads a release archive made by `just dist`, checks it
# against the release's SHA256SUMS and installs it with the archive's own deploy/install.sh.
#
#   install-release.sh [--base-url URL] [--version V] [--prefix P] [--destdir D]
#
#   --base-url URL  where SHA256SUMS and fakenotify-V-ARCH.tar.gz are (default:
#                   https://github.com/fakenotify/fakenotify/releases/download/vV, or
#                   .../releases/latest/download without --version)
#   --version V     the release (default: the one archive for ARCH that SHA256SUMS lists)
#   --prefix P      PREFIX for install.sh (default: /usr/local)
#   --destdir D     DESTDIR for install.sh (staging; default: none)
#
# ARCH is `uname -m`. Nothing is installed unless the archive's SHA-256 matches its line in
# SHA256SUMS. Needs curl or wget, sha256sum, tar and gzip. Running it again changes nothing
# (install.sh leaves matching files alone, and keeps an existing config.toml).
set -eu

version=
base_url=
prefix=${PREFIX:-/usr/local}
destdir=${DESTDIR:-}

die() {
    echo "install-release.sh: $*" >&2
    exit 1
}

need_value() {
    [ "$#" -ge 2 ] || die "$1 needs a value"
}

while [ "$#" -gt 0 ]; do
    case $1 in
    --base-url)
        need_value "$@"
        base_url=$2
        shift 2
        ;;
    --base-url=*)
        base_url=${1#*=}
        shift
        ;;
    --version)
        need_value "$@"
        version=$2
        shift 2
        ;;
    --version=*)
        version=${1#*=}
        shift
        ;;
    --prefix)
        need_value "$@"
        prefix=$2
        shift 2
        ;;
    --prefix=*)
        prefix=${1#*=}
        shift
        ;;
    --destdir)
        need_value "$@"
        destdir=$2
        shift 2
        ;;
    --destdir=*)
        destdir=${1#*=}
        shift
        ;;
    -h | --help)
        sed -n '2,17s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "install-release.sh: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
    esac
done

releases=https://github.com/fakenotify/fakenotify/releases
if [ -z "$base_url" ] && [ -n "$version" ]; then
    base_url=$releases/download/v$version
fi
base_url=${base_url:-$releases/latest/download}
base_url=${base_url%/}
arch=$(uname -m)

if command -v curl >/dev/null 2>&1; then
    fetch() { curl -fsL --proto '=https,http' -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
    fetch() { wget -q -O "$2" "$1"; }
else
    die "neither curl nor wget is installed (Debian: apt-get install curl)"
fi
for tool in sha256sum tar gzip; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (Debian: coreutils, tar, gzip)"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fetch "$base_url/SHA256SUMS" "$work/SHA256SUMS" || die "cannot download $base_url/SHA256SUMS"
if [ -z "$version" ]; then
    # The one archive for this architecture: fakenotify-VERSION-ARCH.tar.gz.
    archive=$(awk -v a="$arch" '{ f = $2; sub(/^\*/, "", f) }
        f ~ "^fakenotify-[^/]+-" a "[.]tar[.]gz$" { print f; exit }' "$work/SHA256SUMS")
    [ -n "$archive" ] || die "SHA256SUMS at $base_url lists no archive for $arch"
    name=${archive%.tar.gz}
else
    name=fakenotify-$version-$arch
    archive=$name.tar.gz
fi
expected=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1; exit }' "$work/SHA256SUMS")
[ -n "$expected" ] || die "SHA256SUMS at $base_url lists no $archive (no release for $arch?)"
fetch "$base_url/$archive" "$work/$archive" || die "cannot download $base_url/$archive"
actual=$(sha256sum "$work/$archive" | cut -d' ' -f1)
[ "$actual" = "$expected" ] ||
    die "checksum mismatch for $archive: expected $expected, got $actual; nothing installed"

mkdir "$work/unpacked"
tar -xzf "$work/$archive" -C "$work/unpacked" --no-same-owner ||
    die "cannot unpack $archive; nothing installed"
top=$work/unpacked/$name
if [ ! -f "$top/deploy/install.sh" ] || [ ! -f "$top/build/fakenotifyd" ]; then
    die "$archive does not hold $name/deploy/install.sh and $name/build/; nothing installed"
fi

echo "install-release.sh: $archive verified (sha256 $actual)"
FAKENOTIFY_BUILD=$top/build PREFIX=$prefix DESTDIR=$destdir CARGO_TARGET_DIR='' \
    sh "$top/deploy/install.sh" install
