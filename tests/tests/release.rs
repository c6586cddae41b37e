//! Release archives and the installer that downloads them: `scripts/dist.sh` (`just dist`) once
//! per test process, its output served by a local HTTP server on 127.0.0.1, and
//! `deploy/install-release.sh --base-url` against it into a temporary DESTDIR: every file in
//! place and the daemon runs; a tampered archive or checksum list is refused with nothing
//! installed; a second run changes nothing and keeps an edited config.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use fakenotify_tests::deploy::{repo_root, require_tool, run, run_ok, snapshot, INSTALLED};
use fakenotify_tests::*;

/// `target/dist` after one run of `scripts/dist.sh` (which runs the static build).
struct Dist {
    dir: PathBuf,
    archive: String,
}

fn dist() -> &'static Dist {
    static DIST: OnceLock<Result<Dist, String>> = OnceLock::new();
    let made = DIST.get_or_init(|| {
        let target_dir = artifacts()
            .profile_dir
            .parent()
            .expect("the profile directory has a parent")
            .to_owned();
        let cargo_dir = Path::new(env!("CARGO")).parent().map(Path::to_owned);
        let rest = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs: Vec<PathBuf> = cargo_dir.into_iter().collect();
        dirs.extend(std::env::split_paths(&rest));
        let path = std::env::join_paths(dirs).unwrap_or(rest);
        run(Command::new("bash")
            .arg(repo_root().join("scripts/dist.sh"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("PATH", path))?;
        let dir = target_dir.join("dist");
        let archive = format!("fakenotify-{}-{}.tar.gz", version(), uname_m());
        if !dir.join(&archive).is_file() || !dir.join("SHA256SUMS").is_file() {
            return Err(format!("dist.sh left no {archive} or SHA256SUMS in {}", dir.display()));
        }
        Ok(Dist { dir, archive })
    });
    made.as_ref().unwrap_or_else(|reason| panic!("scripts/dist.sh failed:\n{reason}"))
}

fn version() -> String {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap();
    let package = manifest.split("[workspace.package]").nth(1).expect("[workspace.package]");
    let line = package.lines().find(|l| l.starts_with("version")).expect("a version line");
    line.split('"').nth(1).expect("a quoted version").to_owned()
}

fn uname_m() -> String {
    let output = run_ok(Command::new("uname").arg("-m"));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `python3 -m http.server` on 127.0.0.1 and a port the kernel picks, serving `dir`; killed on
/// drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn serve(dir: &Path) -> Server {
        require_tool("python3", "apt-get install python3");
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("http.server said no port: {line:?}");
        };
        Server { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of `target/dist` in a temporary directory, to tamper with.
fn dist_copy(label: &str) -> TempDir {
    let copy = TempDir::new(label);
    for entry in std::fs::read_dir(&dist().dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    copy
}

fn install_release(url: &str, destdir: &Path) -> Output {
    install_release_with(url, destdir, &["--version", &version()])
}

fn install_release_with(url: &str, destdir: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg(repo_root().join("deploy/install-release.sh"))
        .args(["--base-url", url])
        .args(args)
        .arg("--destdir")
        .arg(destdir)
        .env_remove("PREFIX")
        .env_remove("DESTDIR")
        .env_remove("FAKENOTIFY_BUILD")
        .env_remove("SYSCONFDIR")
        .env_remove("UNITDIR")
        .output()
        .expect("run install-release.sh")
}

fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "install-release.sh failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn installed_files(root: &Path) -> Vec<String> {
    snapshot(root)
        .into_keys()
        .filter(|p| {
            let full = root.join(p);
            full.is_symlink() || !full.is_dir()
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn dist_makes_a_versioned_archive_listed_in_sha256sums() {
    let dist = dist();
    let sums = std::fs::read_to_string(dist.dir.join("SHA256SUMS")).unwrap();
    assert!(
        sums.lines().any(|l| l.ends_with(&format!("  {}", dist.archive))),
        "SHA256SUMS lacks {}:\n{sums}",
        dist.archive
    );
    run_ok(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&dist.dir),
    );
    let listing = run_ok(Command::new("tar").arg("-tvzf").arg(dist.dir.join(&dist.archive)));
    let listing = String::from_utf8_lossy(&listing.stdout);
    let top = dist.archive.trim_end_matches(".tar.gz");
    for file in [
        "build/fakenotifyd",
        "build/fakenotify-ctl",
        "build/libfakenotify.so",
        "deploy/install.sh",
        "deploy/install-release.sh",
        "deploy/config.example.toml",
        "deploy/systemd/fakenotify.service",
        "deploy/systemd/fakenotify.socket",
        "man/fakenotify-ctl.1",
        "man/fakenotify.7",
        "man/fakenotifyd.8",
        "completions/_fakenotify",
        "completions/fakenotify-ctl.bash",
        "completions/fakenotify-ctl.fish",
        "completions/fakenotifyd.fish",
        "README.md",
    ] {
        let wanted = format!("{top}/{file}");
        let entry = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {wanted}")))
            .unwrap_or_else(|| panic!("the archive lacks {wanted}:\n{listing}"));
        assert!(entry.contains(" 0/0 "), "{wanted} is not owned by 0/0: {entry}");
    }
}

#[test]
fn install_release_installs_every_file_and_a_second_run_changes_nothing() {
    let dist = dist();
    let server = Server::serve(&dist.dir);
    let dest = TempDir::new("release-install");
    let first = succeeded(&install_release(&server.url, dest.path()));
    assert!(first.contains("verified"), "no verification line:\n{first}");
    assert_eq!(installed_files(dest.path()), INSTALLED.to_vec(), "{first}");

    let daemon = dest.join("usr/local/bin/fakenotifyd");
    let shown = run_ok(Command::new(&daemon).arg("--version"));
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains(&version()), "fakenotifyd --version: {shown}");
    let ctl = run_ok(Command::new(dest.join("usr/local/bin/fakenotify-ctl")).arg("--version"));
    assert!(String::from_utf8_lossy(&ctl.stdout).contains(&version()));
    // The static build is what was installed.
    let built = std::fs::read(dist.dir.parent().unwrap().join("static/fakenotifyd")).unwrap();
    assert_eq!(std::fs::read(&daemon).unwrap(), built);

    // An edited config stays; everything else is left exactly as it was.
    let config = dest.join("etc/fakenotify/config.toml");
    let mut edited = std::fs::read_to_string(&config).unwrap();
    edited.push_str("\n# edited by the admin\n");
    std::fs::write(&config, &edited).unwrap();
    let before = snapshot(dest.path());
    let second = succeeded(&install_release(&server.url, dest.path()));
    assert!(second.contains("nothing to do"), "the second run changed something:\n{second}");
    assert_eq!(snapshot(dest.path()), before, "the second run touched files:\n{second}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
}

fn assert_refused(output: &Output, dest: &Path, why: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{why}: not refused with exit 1:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "{why}: not a one-line error:\n{stderr}");
    assert!(stderr.starts_with("install-release.sh: "), "{why}: {stderr}");
    assert!(
        snapshot(dest).is_empty(),
        "{why}: something was installed: {:?}",
        installed_files(dest)
    );
}

#[test]
fn a_tampered_archive_is_refused_and_nothing_is_installed() {
    let archive = &dist().archive;
    let copy = dist_copy("release-tampered");
    let path = copy.join(archive);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let server = Server::serve(copy.path());
    let dest = TempDir::new("release-tampered-dest");
    let output = install_release(&server.url, dest.path());
    assert_refused(&output, dest.path(), "a changed byte");
    assert!(String::from_utf8_lossy(&output.stderr).contains("checksum mismatch"));
}

#[test]
fn a_wrong_or_incomplete_checksum_list_is_refused_and_nothing_is_installed() {
    let archive = &dist().archive;
    let copy = dist_copy("release-sums");
    let server = Server::serve(copy.path());
    let dest = TempDir::new("release-sums-dest");

    std::fs::write(copy.join("SHA256SUMS"), format!("{}  {archive}\n", "0".repeat(64))).unwrap();
    let output = install_release(&server.url, dest.path());
    assert_refused(&output, dest.path(), "a wrong sum");
    assert!(String::from_utf8_lossy(&output.stderr).contains("checksum mismatch"));

    std::fs::write(copy.join("SHA256SUMS"), format!("{}  other.tar.gz\n", "0".repeat(64))).unwrap();
    let output = install_release(&server.url, dest.path());
    assert_refused(&output, dest.path(), "no entry");
    assert!(String::from_utf8_lossy(&output.stderr).contains("lists no"));

    std::fs::remove_file(copy.join("SHA256SUMS")).unwrap();
    let output = install_release(&server.url, dest.path());
    assert_refused(&output, dest.path(), "no SHA256SUMS");
}

#[test]
fn the_release_scripts_pass_sh_n_and_shellcheck_and_just_lists_dist() {
    require_tool("shellcheck", "apt-get install shellcheck");
    let root = repo_root();
    for (shell, script) in [("sh", "deploy/install-release.sh"), ("bash", "scripts/dist.sh")] {
        run_ok(Command::new(shell).arg("-n").arg(root.join(script)));
        run_ok(Command::new("shellcheck").arg(root.join(script)));
    }
    let justfile = std::fs::read_to_string(root.join("justfile")).unwrap();
    assert!(
        justfile.lines().any(|l| l.starts_with("dist:")) && justfile.contains("scripts/dist.sh"),
        "the justfile has no dist recipe running scripts/dist.sh"
    );
}

#[test]
fn without_a_version_it_installs_the_archive_the_list_names_under_the_prefix() {
    let server = Server::serve(&dist().dir);
    let dest = TempDir::new("release-prefix");
    succeeded(&install_release_with(&server.url, dest.path(), &["--prefix=/opt/fakenotify"]));
    let daemon = dest.join("opt/fakenotify/bin/fakenotifyd");
    run_ok(Command::new(&daemon).arg("--version"));
    assert!(dest.join("opt/fakenotify/lib/fakenotify/libfakenotify.so").is_file());
    assert!(dest.join("opt/fakenotify/share/man/man8/fakenotifyd.8").is_file());
    let unit = std::fs::read_to_string(dest.join("etc/systemd/system/fakenotify.service")).unwrap();
    assert!(
        unit.contains("/opt/fakenotify/bin/fakenotifyd"),
        "the unit names another path:\n{unit}"
    );
}

#[test]
fn without_curl_or_wget_it_says_so() {
    // A PATH with uname alone: no curl, no wget.
    let bin = TempDir::new("release-nofetch");
    let uname = ["/usr/bin/uname", "/bin/uname"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("uname in /usr/bin or /bin");
    std::os::unix::fs::symlink(uname, bin.join("uname")).unwrap();
    let dest = TempDir::new("release-nofetch-dest");
    let output = Command::new("/bin/sh")
        .arg(repo_root().join("deploy/install-release.sh"))
        .args(["--base-url", "http://127.0.0.1:9", "--destdir"])
        .arg(dest.path())
        .env("PATH", bin.path())
        .output()
        .expect("run install-release.sh");
    assert_refused(&output, dest.path(), "no downloader");
    assert!(String::from_utf8_lossy(&output.stderr).contains("neither curl nor wget"));
}
