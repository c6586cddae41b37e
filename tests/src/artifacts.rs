//! The programs under test, built once per test process: the workspace binaries (cargo) and the
//! C test client (cc for glibc, musl-gcc for musl, both dynamically linked so LD_PRELOAD works).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Paths of everything the tests run. A piece that could not be built holds the reason, so only
/// the tests that need it fail, each with the build's own message.
#[derive(Debug)]
pub struct Artifacts {
    /// The cargo profile directory the binaries live in (`target/debug`).
    pub profile_dir: PathBuf,
    binaries: Result<(), String>,
    preload: Result<PathBuf, String>,
    client_glibc: Result<PathBuf, String>,
    client_musl: Result<PathBuf, String>,
}

/// The C library a test client is linked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Libc {
    Glibc,
    Musl,
}

impl Artifacts {
    pub fn fakenotifyd(&self) -> PathBuf {
        self.binary("fakenotifyd")
    }

    pub fn fakenotify_ctl(&self) -> PathBuf {
        self.binary("fakenotify-ctl")
    }

    /// `libfakenotify.so`, the preload.
    pub fn preload(&self) -> PathBuf {
        self.preload
            .clone()
            .unwrap_or_else(|reason| panic!("libfakenotify.so could not be built:\n{reason}"))
    }

    pub fn inotify_client(&self, libc: Libc) -> PathBuf {
        let built = match libc {
            Libc::Glibc => &self.client_glibc,
            Libc::Musl => &self.client_musl,
        };
        built.clone().unwrap_or_else(|reason| {
            panic!("the {libc:?} inotify_client is not available: {reason}")
        })
    }

    /// `tests/clients/watch.js`, the Node `fs.watch` client.
    pub fn node_watch_script(&self) -> PathBuf {
        clients_dir().join("watch.js")
    }

    fn binary(&self, name: &str) -> PathBuf {
        if let Err(reason) = &self.binaries {
            panic!("the workspace binaries could not be built:\n{reason}");
        }
        self.profile_dir.join(name)
    }
}

/// Builds everything on the first call (once per test process) and returns the paths.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let profile_dir = profile_dir();
        let binaries = build_binaries(&profile_dir);
        let preload = build_preload(&profile_dir);
        let out = profile_dir.join("fakenotify-tests");
        let client_glibc = std::fs::create_dir_all(&out)
            .map_err(|e| format!("{}: {e}", out.display()))
            .and_then(|()| compile_client(&out, Libc::Glibc));
        let client_musl = compile_client(&out, Libc::Musl);
        Artifacts { profile_dir, binaries, preload, client_glibc, client_musl }
    })
}

/// `tests/clients/`.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_owned()
}

/// The directory holding this profile's binaries: `$CARGO_TARGET_DIR/debug`, else the
/// directory above the test executable's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable knows its own path");
    let from_exe = exe
        .parent()
        .filter(|deps| deps.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .map(Path::to_owned);
    let profile = from_exe
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_owned())
        .unwrap_or_else(|| "debug".into());
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => workspace_root().join(dir).join(profile),
        None => from_exe.unwrap_or_else(|| workspace_root().join("target").join(profile)),
    }
}

/// `cargo build` of the daemon and the ctl into the profile directory the tests run from; a
/// no-op when `cargo build --workspace` came first.
fn build_binaries(profile_dir: &Path) -> Result<(), String> {
    run(&mut cargo_build(profile_dir, "Cargo.toml", &["-p", "fakenotifyd", "-p", "fakenotify-ctl"]))
}

/// `cargo build` of the preload into the same profile directory. It is a workspace of its own
/// (so that cargo does not unify its no_std rustix with the daemon's std one); this
/// `--target-dir` puts `libfakenotify.so` beside the daemon.
fn build_preload(profile_dir: &Path) -> Result<PathBuf, String> {
    run(&mut cargo_build(profile_dir, "preload/Cargo.toml", &[]))?;
    Ok(profile_dir.join("libfakenotify.so"))
}

fn cargo_build(profile_dir: &Path, manifest: &str, args: &[&str]) -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace_root())
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace_root().join(manifest))
        .args(args);
    if let Some(target_dir) = profile_dir.parent() {
        cargo.arg("--target-dir").arg(target_dir);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
    }
    cargo
}

/// `cargo build --release` of the preload alone into `target_dir/release`, for the tests that
/// inspect the library users install.
pub fn build_release_preload(target_dir: &Path) -> Result<PathBuf, String> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(workspace_root())
        .args(["build", "--release", "--manifest-path"])
        .arg(workspace_root().join("preload/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    run(&mut cargo)?;
    Ok(target_dir.join("release/libfakenotify.so"))
}

/// Another C program of `tests/clients/` (`name.c`, glibc, `-lpthread`), compiled on its first
/// use in this test process; panics with the compiler's message if it does not build.
pub fn c_program(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let out = artifacts().profile_dir.join("fakenotify-tests");
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    let result = built.entry(name.to_owned()).or_insert_with(|| {
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        compile(&out, &clients_dir().join(format!("{name}.c")), "cc", name, true)
    });
    result.clone().unwrap_or_else(|reason| panic!("{name}.c could not be built:\n{reason}"))
}

fn compile_client(out_dir: &Path, libc: Libc) -> Result<PathBuf, String> {
    let source = clients_dir().join("inotify_client.c");
    let (compiler, name) = match libc {
        Libc::Glibc => ("cc", "inotify_client-glibc"),
        Libc::Musl => ("musl-gcc", "inotify_client-musl"),
    };
    compile(out_dir, &source, compiler, name, libc == Libc::Glibc).map_err(|e| {
        if libc == Libc::Musl {
            format!("{e}\n(install musl-tools for musl-gcc; Debian's musl-gcc links dynamically)")
        } else {
            e
        }
    })
}

/// Compiles `source` into `out_dir/name` with `compiler`.
fn compile(
    out_dir: &Path,
    source: &Path,
    compiler: &str,
    name: &str,
    pthread: bool,
) -> Result<PathBuf, String> {
    let target = out_dir.join(name);
    // Built under a private name, then renamed: a concurrent test process never runs half a file.
    let partial = out_dir.join(format!("{name}.{}", std::process::id()));
    let mut cc = Command::new(compiler);
    cc.args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"]).arg(&partial).arg(source);
    if pthread {
        cc.arg("-lpthread");
    }
    run(&mut cc)?;
    std::fs::rename(&partial, &target)
        .map_err(|e| format!("rename to {}: {e}", target.display()))?;
    Ok(target)
}

fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|e| format!("{shown}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
