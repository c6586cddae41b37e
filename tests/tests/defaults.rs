//! `fakenotifyd start` with no flags and no configuration file serves on the built-in defaults:
//! `/run/fakenotify/fakenotify.sock` in a 0755 directory, the socket 0666, every remote mount
//! polled at the default interval; the ctl finds it without being told where.
//!
//! A daemon on the original FakeNotify's `/run/fakenotify.sock` alone is found there by a
//! preloaded client and by the ctl, neither told where.
//!
//! Each test runs itself again in a private mount namespace with fresh tmpfs on `/run` and, if it
//! exists, `/etc/fakenotify`, so a daemon already serving the default socket (or an installed
//! configuration) on the machine neither fails it nor is disturbed by it. It needs root, as the
//! other end-to-end tests do.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fakenotify_tests::*;

const DEFAULT_SOCKET: &str = "/run/fakenotify/fakenotify.sock";
const LEGACY_SOCKET: &str = "/run/fakenotify.sock";

/// Set in the copy of the test that runs inside the private namespace.
const INSIDE: &str = "FAKENOTIFY_TEST_PRIVATE_NAMESPACE";

/// Mounts the tmpfs over `/run` and `/etc/fakenotify`, then runs its arguments.
const PRIVATE_MOUNTS: &str = "mount -t tmpfs -o mode=0755 fakenotify-test-run /run && \
    { [ ! -d /etc/fakenotify ] || mount -t tmpfs -o mode=0755 fakenotify-test-etc /etc/fakenotify; } && \
    exec \"$@\"";

/// Runs the test `name` of this binary again in a private mount namespace (see the module doc)
/// and fails with its output if it fails there.
fn in_private_namespace(name: &str) {
    artifacts(); // built out here, where a build failure reads plainly
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", PRIVATE_MOUNTS, "sh"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .expect("run unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("1 passed"),
        "{name} in a private mount namespace (unshare --mount needs root) failed:\n{text}"
    );
}

#[test]
fn start_without_flags_serves_on_the_default_socket() {
    if std::env::var_os(INSIDE).is_none() {
        return in_private_namespace("start_without_flags_serves_on_the_default_socket");
    }
    assert!(
        !Path::new("/etc/fakenotify/config.toml").exists(),
        "this test needs the built-in defaults: /etc/fakenotify/config.toml exists"
    );
    let socket = Path::new(DEFAULT_SOCKET);
    assert!(
        seqpacket::connect(socket).is_err(),
        "a daemon serves {DEFAULT_SOCKET} inside the private namespace"
    );
    let mut daemon = Command::new(artifacts().fakenotifyd())
        .arg("start")
        .env_remove("FAKENOTIFY_SOCKET")
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fakenotifyd start");
    let deadline = Instant::now() + WAIT;
    while seqpacket::connect(socket).is_err() {
        if let Some(status) = daemon.try_wait().expect("wait") {
            panic!("fakenotifyd start exited ({status}) instead of serving {DEFAULT_SOCKET}");
        }
        assert!(Instant::now() < deadline, "nothing serves {DEFAULT_SOCKET}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(socket.parent().expect("socket dir")), 0o755);
    assert_eq!(mode(socket), 0o666);

    let status = Command::new(artifacts().fakenotify_ctl())
        .args(["status", "--json"])
        .env_remove("FAKENOTIFY_SOCKET")
        .output()
        .expect("run fakenotify-ctl status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "ctl finds the default socket: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.contains("\"interval_ms\":5000"), "the default interval is 5 s: {text}");

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let exit = daemon.wait().expect("wait for fakenotifyd");
    assert!(exit.success(), "SIGTERM ends it with 0: {exit}");
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn the_old_socket_path_is_found_when_the_default_is_absent() {
    if std::env::var_os(INSIDE).is_none() {
        return in_private_namespace("the_old_socket_path_is_found_when_the_default_is_absent");
    }
    let socket = Path::new(LEGACY_SOCKET);
    assert!(!Path::new(DEFAULT_SOCKET).exists(), "{DEFAULT_SOCKET} exists in the private /run");
    let dir = TempDir::new("legacy-socket");
    let config = dir.join("config.toml");
    std::fs::write(&config, FAST_CONFIG).expect("write the config");
    let mut daemon = Command::new(artifacts().fakenotifyd())
        .arg("start")
        .arg("--socket")
        .arg(socket)
        .arg("--config")
        .arg(&config)
        .env_remove("FAKENOTIFY_SOCKET")
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fakenotifyd start");
    let deadline = Instant::now() + WAIT;
    while seqpacket::connect(socket).is_err() {
        if let Some(status) = daemon.try_wait().expect("wait") {
            panic!("fakenotifyd start exited ({status}) instead of serving {LEGACY_SOCKET}");
        }
        assert!(Instant::now() < deadline, "nothing serves {LEGACY_SOCKET}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let fuse = FuseMount::new();
    let spec = format!("all:{}", fuse.mount.display());
    let mut client = Client::inotify_client_on_default_socket(&[&spec]);
    write(&fuse.backing("from-the-server"), b"x");
    client.expect_event("IN_CREATE from a poll", |e| e.matches(IN_CREATE, "from-the-server"));

    let status = Command::new(artifacts().fakenotify_ctl())
        .args(["status", "--json"])
        .env_remove("FAKENOTIFY_SOCKET")
        .output()
        .expect("run fakenotify-ctl status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "ctl finds {LEGACY_SOCKET}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.contains("\"instances_total\":1"), "the client is its one instance: {text}");
    drop(client);

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let exit = daemon.wait().expect("wait for fakenotifyd");
    assert!(exit.success(), "SIGTERM ends it with 0: {exit}");
}
