//! Support for the deployment checks (`tests/tests/deploy.rs`): the static build, made once per
//! test process by `scripts/static-build.sh` into the shared target directory, the files under
//! `deploy/`, and the external tools the checks run (systemd-analyze, shellcheck,
//! nix-instantiate, python3 with yaml), each of which fails with the package to install rather
//! than skipping.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::artifacts;

/// `fakenotifyd` and `fakenotify-ctl` linked statically, and the preload, in `target/static`.
#[derive(Debug)]
pub struct StaticBuild {
    pub dir: PathBuf,
}

impl StaticBuild {
    pub fn fakenotifyd(&self) -> PathBuf {
        self.dir.join("fakenotifyd")
    }

    pub fn fakenotify_ctl(&self) -> PathBuf {
        self.dir.join("fakenotify-ctl")
    }

    pub fn preload(&self) -> PathBuf {
        self.dir.join("libfakenotify.so")
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the repository")
        .to_owned()
}

/// Runs `scripts/static-build.sh` on the first call (an optimised, LTO build: it takes a while)
/// into the target directory the tests use; the script itself checks for no interpreter and no
/// NEEDED entry. Panics with the script's output if it fails.
pub fn static_build() -> &'static StaticBuild {
    static BUILD: OnceLock<Result<StaticBuild, String>> = OnceLock::new();
    let built = BUILD.get_or_init(|| {
        let target_dir = artifacts()
            .profile_dir
            .parent()
            .expect("the profile directory has a parent")
            .to_owned();
        let mut script = Command::new("bash");
        script
            .arg(repo_root().join("scripts/static-build.sh"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("PATH", path_with_cargo());
        let output = run(&mut script)?;
        let dir = target_dir.join("static");
        if !dir.join("fakenotifyd").is_file() {
            return Err(format!(
                "static-build.sh succeeded but {} holds no fakenotifyd:\n{}",
                dir.display(),
                String::from_utf8_lossy(&output.stdout)
            ));
        }
        Ok(StaticBuild { dir })
    });
    built.as_ref().unwrap_or_else(|reason| panic!("the static build failed:\n{reason}"))
}

/// `$PATH` with the directory of the `cargo` running the tests first, so scripts find the same
/// toolchain.
fn path_with_cargo() -> std::ffi::OsString {
    let cargo_dir = Path::new(env!("CARGO")).parent().map(Path::to_owned);
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = cargo_dir.into_iter().collect();
    dirs.extend(std::env::split_paths(&rest));
    std::env::join_paths(dirs).unwrap_or(rest)
}

/// Panics unless `tool` is on `$PATH`, saying how to install it (`install`, e.g. `apt-get
/// install shellcheck`; `.ci/run` installs them all).
pub fn require_tool(tool: &str, install: &str) {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        panic!("{tool} is not installed: {install} (.ci/run installs it)");
    }
}

/// Runs `command`; `Err` with the command, its status and both streams unless it succeeds.
pub fn run(command: &mut Command) -> Result<Output, String> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|e| format!("{shown}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{shown} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Like [`run`], panicking on failure.
pub fn run_ok(command: &mut Command) -> Output {
    run(command).unwrap_or_else(|e| panic!("{e}"))
}

/// Every file under `dir` whose name ends with `suffix`, skipping build outputs and `.git`.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                if !matches!(name.as_ref(), "target" | ".git" | "node_modules" | "result") {
                    pending.push(path);
                }
            } else if name.ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every path under a root (directories included), with what identifies its state: inode,
/// mode, mtime, and its bytes or link target. Equal snapshots mean nothing was touched.
pub type Snapshot = BTreeMap<PathBuf, (u64, u32, i64, i64, Vec<u8>)>;

/// The [`Snapshot`] of the tree under `root`.
pub fn snapshot(root: &Path) -> Snapshot {
    let mut state = Snapshot::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir").flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let contents = if meta.file_type().is_symlink() {
                std::fs::read_link(&path).expect("readlink").into_os_string().into_vec()
            } else if meta.is_file() {
                std::fs::read(&path).expect("read")
            } else {
                pending.push(path.clone());
                Vec::new()
            };
            let key = path.strip_prefix(root).expect("under the root").to_owned();
            state.insert(key, (meta.ino(), meta.mode(), meta.mtime(), meta.mtime_nsec(), contents));
        }
    }
    state
}

/// What `deploy/install.sh install` puts under DESTDIR with the default PREFIX.
pub const INSTALLED: [&str; 16] = [
    "etc/fakenotify/config.toml",
    "etc/systemd/system/fakenotify.service",
    "etc/systemd/system/fakenotify.socket",
    "usr/local/bin/fakenotify-ctl",
    "usr/local/bin/fakenotifyd",
    "usr/local/lib/fakenotify/libfakenotify.so",
    "usr/local/lib/fakenotify/libfakenotify_preload.so",
    "usr/local/share/bash-completion/completions/fakenotify-ctl",
    "usr/local/share/bash-completion/completions/fakenotifyd",
    "usr/local/share/fakenotify/config.example.toml",
    "usr/local/share/fish/vendor_completions.d/fakenotify-ctl.fish",
    "usr/local/share/fish/vendor_completions.d/fakenotifyd.fish",
    "usr/local/share/man/man1/fakenotify-ctl.1",
    "usr/local/share/man/man7/fakenotify.7",
    "usr/local/share/man/man8/fakenotifyd.8",
    "usr/local/share/zsh/site-functions/_fakenotify",
];
