# FakeNotify's routine commands. `just --list` shows them with these comments.
#
# libfakenotify.so (preload/) is a cargo workspace of its own, so that its no_std rustix is not
# unified with the daemon's std one; the recipes build it into the main target directory, so
# every binary ends up in target/debug or target/release.

target := env_var_or_default("CARGO_TARGET_DIR", justfile_directory() / "target")

# Build everything (debug): fakenotifyd, fakenotify-ctl, target/debug/libfakenotify.so
build:
    cargo build --workspace
    cargo build --manifest-path preload/Cargo.toml --target-dir {{target}}

# Build the preload alone, optimised: target/release/libfakenotify.so
preload:
    cargo build --release --manifest-path preload/Cargo.toml --target-dir {{target}}

# All tests: unit tests and the end-to-end suite (needs bindfs, fuse3, inotify-tools, musl-tools, node,
# and rclone, sshfs, openssh-server, openssh-client, mergerfs)
test:
    cargo test --workspace -- --test-threads=2 && cargo test --manifest-path preload/Cargo.toml

# Only the end-to-end suite (tests/): real daemon, preload, FUSE mount and inotify clients
e2e:
    cargo test -p fakenotify-tests -- --test-threads=2

# The end-to-end tests on rclone, sshfs and mergerfs mounts (as root; about 100 s)
real-fs:
    cargo test -p fakenotify-tests --test real_filesystems -- --test-threads=1

# Formatting and lints as CI wants them, for both workspaces
lint:
    cargo fmt --all -- --check
    cargo fmt --manifest-path preload/Cargo.toml -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    cargo clippy --manifest-path preload/Cargo.toml --all-targets --target-dir {{target}} -- -D warnings

# Format every crate
fmt:
    cargo fmt --all
    cargo fmt --manifest-path preload/Cargo.toml

# Show FakeNotify at work on a temporary FUSE mount, with and without the preload (under a minute)
demo:
    scripts/demo.sh

# 10k and 100k trees on local disk and behind bindfs, 100k behind delayfs at 0.2 and 1 ms per
# request, then `just bench-feed`; about 30 minutes; `just bench --help` for the options.
# Benchmark (as root): polls against the syscall floor and notify's PollWatcher, then feeds
bench *args:
    cargo build --release -p fakenotifyd -p fakenotify-ctl -p fakenotify-bench
    cargo build --release --manifest-path preload/Cargo.toml --target-dir {{target}}
    {{target}}/release/fakenotify-bench {{args}}
    case " {{args}} " in *" --help "*|*" -h "*) ;; *) just bench-feed ;; esac

# A 100 000-entry tree behind bindfs watched with IN_MODIFY by two daemons at 5 s, one with a
# [[feed]] (safety interval 10 min): event latency p50/p99 and statx calls per minute of each.
# Feeds against polling (as root, bindfs, inotifywait; about 3 minutes)
bench-feed dirs="500" files="200" seconds="120" spacing="10":
    cargo build --release -p fakenotifyd -p fakenotify-ctl
    cargo build --release --manifest-path preload/Cargo.toml --target-dir {{target}}
    python3 scripts/feed-measure.py --bin {{target}}/release {{dirs}} {{files}} {{seconds}} {{spacing}}

# Optimised build of everything into target/release
release:
    cargo build --release
    cargo build --release --manifest-path preload/Cargo.toml --target-dir {{target}}

# Static fakenotifyd and fakenotify-ctl (+crt-static) and the preload in target/static; prints sizes
static:
    scripts/static-build.sh

# Install the release build (PREFIX=/usr/local, DESTDIR honoured; see deploy/install.sh --help)
install:
    deploy/install.sh install

# Remove what `just install` put in place (an edited /etc/fakenotify/config.toml stays)
uninstall:
    deploy/install.sh uninstall

# Build the scratch image with the static daemon and ctl (docker build, needs a Docker engine)
docker tag="fakenotify:latest":
    docker build -f deploy/docker/Dockerfile -t {{tag}} .

# Run every fuzz target for SECONDS each (cargo-fuzz on stable via RUSTC_BOOTSTRAP; seeds in fuzz/corpus)
fuzz seconds="60":
    #!/usr/bin/env bash
    set -euo pipefail
    cd fuzz
    for target in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
        work=$(mktemp -d)
        RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" "$work" "corpus/$target" -- -max_total_time={{seconds}}
        rm -rf "$work"
    done

# Release archives: target/dist/fakenotify-VERSION-ARCH.tar.gz (static build + deploy files) and SHA256SUMS
dist:
    scripts/dist.sh
