//! The listening socket cannot be redirected: the daemon refuses a socket directory that a
//! user other than root (or its own uid) may write, and gives the socket its mode without a
//! `chmod` by path. An attacker who owns the directory races `ln -sf` of a root 0600 file onto
//! the socket's name through hundreds of starts; the file's mode never changes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fakenotify_tests::*;

const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// `sh -c SCRIPT` as uid and gid 65534 with no groups; killed on drop.
struct AsNobody(Child);

impl AsNobody {
    fn run(script: &str) -> AsNobody {
        let child = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn setpriv (util-linux)");
        AsNobody(child)
    }
}

impl Drop for AsNobody {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One `fakenotifyd start`: its exit status and stderr, or `None` if it was still serving
/// after `patience` (it is killed then).
fn start_once(socket: &Path, config: &Path, patience: Duration) -> Option<(i32, String)> {
    let err = config.with_extension("stderr");
    let mut child = Command::new(artifacts().fakenotifyd())
        .arg("start")
        .arg("--socket")
        .arg(socket)
        .arg("--config")
        .arg(config)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn fakenotifyd");
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let stderr = std::fs::read_to_string(&err).unwrap_or_default();
            return Some((status.code().unwrap_or(-1), stderr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn an_attacker_writable_socket_directory_is_refused_and_no_file_changes_mode() {
    let base = TempDir::new("socket-race");
    let config = base.join("config.toml");
    std::fs::write(&config, FAST_CONFIG).expect("write config");
    let secret = base.join("secret");
    std::fs::write(&secret, b"root only").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // One directory owned by the attacker, one of root's that every user may write.
    let owned = base.join("owned");
    std::fs::create_dir(&owned).expect("mkdir");
    std::os::unix::fs::chown(&owned, Some(NOBODY), Some(NOBODY)).expect("chown");
    let open = base.join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    let script = format!(
        "while :; do ln -sfn {s} {o}/s.sock; ln -sfn {s} {p}/s.sock; done",
        s = secret.display(),
        o = owned.display(),
        p = open.display()
    );
    let _racer = AsNobody::run(&script);
    let mut served = 0;
    for round in 0..300 {
        let dir = if round % 2 == 0 { &owned } else { &open };
        let socket = dir.join("s.sock");
        let outcome = start_once(&socket, &config, Duration::from_millis(300));
        assert_eq!(mode(&secret), 0o600, "round {round}: the daemon changed the target's mode");
        let Some((code, stderr)) = outcome else {
            served += 1;
            continue;
        };
        assert_eq!(code, 1, "round {round}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "round {round}: one line:\n{stderr}");
        assert!(
            stderr.contains(&dir.display().to_string())
                && stderr.contains("refusing this socket directory"),
            "round {round}: the error names the directory and the cause:\n{stderr}"
        );
    }
    assert_eq!(served, 0, "the daemon served in a directory others may write");
    assert_eq!(std::fs::metadata(&secret).expect("stat").uid(), 0);
}

#[test]
fn a_sticky_directory_of_roots_may_hold_the_socket_but_a_planted_link_is_refused() {
    let sticky = TempDir::new("socket-sticky");
    std::fs::set_permissions(sticky.path(), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod");
    let config = sticky.join("config.toml");
    std::fs::write(&config, FAST_CONFIG).expect("write config");
    let socket = sticky.join("s.sock");

    // Nobody else can replace an entry of root's in a sticky directory: it serves, mode 0666.
    let mut daemon = Command::new(artifacts().fakenotifyd())
        .args(["start", "--socket"])
        .arg(&socket)
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fakenotifyd");
    let deadline = Instant::now() + WAIT;
    while seqpacket::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not serve in a sticky directory");
        assert!(daemon.try_wait().expect("wait").is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(mode(&socket), 0o666, "the socket's mode");
    let _ = daemon.kill();
    let _ = daemon.wait();
    std::fs::remove_file(&socket).expect("remove the socket");

    // But anyone may take the name first: a link there is refused, not followed or removed.
    let secret = sticky.join("secret");
    std::fs::write(&secret, b"x").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let planted = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ln", "-s"])
        .arg(&secret)
        .arg(&socket)
        .status()
        .expect("run setpriv ln");
    assert!(planted.success(), "uid 65534 could not plant the link");
    let (code, stderr) =
        start_once(&socket, &config, WAIT).expect("the daemon must refuse a planted link");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(mode(&secret), 0o600);
    assert!(std::fs::symlink_metadata(&socket).expect("lstat").file_type().is_symlink());
}
