//! `fakenotifyd start` with no flags and no configuration file serves on the built-in defaults:
//! `/run/fakenotify/fakenotify.sock` in a 0755 directory, the socket 0666, every remote mount
//! polled at the default interval; the ctl finds it without being told where.
//!
//! A daemon on the original FakeNotify's `/run/fakenotify.sock` alone is found there by a
//! preloaded client and by the ctl, neither told where.
//!
//! Each test runs itself again in a private mount namespace with fresh tmpfs on `/run` and, if it
//! exists, `/etc/fakenotify` (`fakenotify_tests::namespace`).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fakenotify_tests::*;

const DEFAULT_SOCKET: &str = "/run/fakenotify/fakenotify.sock";
const LEGACY_SOCKET: &str = "/run/fakenotify.sock";

/// `fakenotifyd start ARGS`, once it serves `socket`.
fn serve(args: &[&OsStr], socket: &Path, stderr: Stdio) -> Child {
    let mut daemon = Command::new(artifacts().fakenotifyd())
        .arg("start")
        .args(args)
        .env_remove("FAKENOTIFY_SOCKET")
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn fakenotifyd start");
    let deadline = Instant::now() + WAIT;
    while seqpacket::connect(socket).is_err() {
        if let Some(status) = daemon.try_wait().expect("wait") {
            panic!("fakenotifyd start exited ({status}) instead of serving {}", socket.display());
        }
        assert!(Instant::now() < deadline, "nothing serves {}", socket.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

#[test]
fn start_without_flags_serves_on_the_default_socket() {
    if !inside_private_namespace() {
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
    let mut daemon = serve(&[], socket, Stdio::piped());
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
    if !inside_private_namespace() {
        return in_private_namespace("the_old_socket_path_is_found_when_the_default_is_absent");
    }
    let socket = Path::new(LEGACY_SOCKET);
    assert!(!Path::new(DEFAULT_SOCKET).exists(), "{DEFAULT_SOCKET} exists in the private /run");
    let dir = TempDir::new("legacy-socket");
    let config = dir.join("config.toml");
    std::fs::write(&config, FAST_CONFIG).expect("write the config");
    let config_arg = config.as_os_str();
    let args = [OsStr::new("--socket"), socket.as_os_str(), OsStr::new("--config"), config_arg];
    let mut daemon = serve(&args, socket, Stdio::null());

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
