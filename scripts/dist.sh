#!/usr/bin/env bash
# Release archives: runs scripts/static-build.sh, then packs
#   $target/dist/fakenotify-VERSION-ARCH.tar.gz
# (VERSION from the workspace Cargo.toml, ARCH from `uname -m`) holding, under
# fakenotify-VERSION-ARCH/: build/{fakenotifyd,fakenotify-ctl,libfakenotify.so} (static),
# deploy/install.sh and deploy/install-release.sh, deploy/config.example.toml,
# deploy/systemd/*, man/*, completions/*, README.md; and $target/dist/SHA256SUMS
# (sha256sum format). The tar is ordered by name with fixed owners and mtimes (the commit's
# time, or SOURCE_DATE_EPOCH), so two runs on the same build give the same bytes.
# FAKENOTIFY_DIST_SKIP_BUILD=1 packs what target/static already holds.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
[[ $target = /* ]] || target=$root/$target

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || {
    echo "dist: no version in Cargo.toml's [workspace.package]" >&2
    exit 1
}
arch=$(uname -m)
name=fakenotify-$version-$arch

if [ "${FAKENOTIFY_DIST_SKIP_BUILD:-}" != 1 ]; then
    scripts/static-build.sh
fi

epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
dist=$target/dist
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
top=$stage/$name
mkdir -p "$top/build" "$top/deploy/systemd" "$top/man" "$top/completions"
for file in fakenotifyd fakenotify-ctl libfakenotify.so; do
    install -m 0755 "$target/static/$file" "$top/build/$file"
done
install -m 0755 deploy/install.sh deploy/install-release.sh "$top/deploy/"
install -m 0644 deploy/config.example.toml "$top/deploy/"
install -m 0644 deploy/systemd/fakenotify.service deploy/systemd/fakenotify.socket \
    "$top/deploy/systemd/"
install -m 0644 man/* "$top/man/"
install -m 0644 completions/* "$top/completions/"
install -m 0644 README.md "$top/"
find "$top" -type d -exec chmod 0755 {} +

mkdir -p "$dist"
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$stage" -cf - "$name" | gzip -9n >"$dist/$name.tar.gz.new"
mv -f "$dist/$name.tar.gz.new" "$dist/$name.tar.gz"
(
    cd "$dist"
    # Every archive in dist/, so archives made on other architectures can be added to one list.
    sha256sum -- fakenotify-*.tar.gz >SHA256SUMS.new
    mv -f SHA256SUMS.new SHA256SUMS
)
echo "dist: $dist/$name.tar.gz"
cat "$dist/SHA256SUMS"
