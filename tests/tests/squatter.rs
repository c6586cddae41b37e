//! The preload talks only to a daemon it trusts (issue 14, item 5): a user who binds the socket
//! path first (another uid, here 65534) gets nothing from a preloaded root process, not a
//! Register, not an fd, and the process runs on real inotify as if no daemon were there. With
//! `FAKENOTIFY_DAEMON_UID` naming that uid, the same process does talk to it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use fakenotify_tests::raw_client::{self, Acquire};
use fakenotify_tests::*;

const NOBODY: u32 = 65534;

/// Every connection made to `listener` so far, with what each sent: (bytes, fds) per message.
fn drain_connections(listener: &OwnedFd) -> Vec<Vec<(usize, usize)>> {
    let mut connections = Vec::new();
    loop {
        // SAFETY: accept4 on a listening socket; the result is checked before being owned.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            return connections;
        }
        // SAFETY: a fresh fd nothing else owns.
        let conn = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // Blocking reads, bounded: what the peer sends, up to its close or this timeout.
        let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
        // SAFETY: setsockopt with a timeval of the right size.
        unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let mut messages = Vec::new();
        while let Ok((bytes, fds)) = raw_client::recv_with_fds(&conn) {
            if bytes.is_empty() && fds.is_empty() {
                break;
            }
            messages.push((bytes.len(), fds.len()));
        }
        connections.push(messages);
    }
}

fn squatter(dir: &TempDir) -> (OwnedFd, std::path::PathBuf) {
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let socket = dir.join("fakenotify.sock");
    let listener = raw_client::acquire_as(NOBODY, NOBODY, &[Acquire::Listen(socket.clone())])
        .pop()
        .unwrap()
        .expect("uid 65534 binds the socket path");
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    (listener, socket)
}

#[test]
fn a_squatter_on_the_socket_gets_nothing_and_the_app_uses_real_inotify() {
    let (dir, watched) = (TempDir::new("squatter"), TempDir::new_in(Path::new("/dev/shm"), "sq"));
    let (listener, socket) = squatter(&dir);
    let args = [format!("all:{}", watched.path().display())];
    let mut client =
        Client::spawn_with_socket(artifacts().inotify_client(Libc::Glibc), &args, &socket, true);
    client.expect_line("READY", |l| l.text == "READY");
    client.expect_line("INIT on real inotify", |l| l.text.starts_with("INIT "));
    let init = client.lines().into_iter().find(|l| l.text.starts_with("INIT ")).unwrap();
    assert!(init.text.ends_with(" inotify"), "the root client fell back to real inotify: {init:?}");
    write(&watched.join("created"), b"");
    client.expect_event("IN_CREATE from the kernel", |e| e.matches(IN_CREATE, "created"));

    let connections = drain_connections(&listener);
    assert!(!connections.is_empty(), "the preload did try the socket");
    for messages in &connections {
        assert!(messages.is_empty(), "the squatter received {messages:?} (bytes, fds)");
    }
}

#[test]
fn a_named_daemon_uid_is_trusted() {
    let dir = TempDir::new("squatter-named");
    let (listener, socket) = squatter(&dir);
    let watched = TempDir::new_in(Path::new("/dev/shm"), "sq-named");
    let mut command = std::process::Command::new(artifacts().inotify_client(Libc::Glibc));
    command
        .arg(format!("all:{}", watched.path().display()))
        .env("LD_PRELOAD", artifacts().preload())
        .env("FAKENOTIFY_SOCKET", &socket)
        .env("FAKENOTIFY_DAEMON_UID", NOBODY.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("spawn inotify_client");
    let deadline = Instant::now() + WAIT;
    let mut connections = Vec::new();
    while Instant::now() < deadline && connections.iter().all(|m: &Vec<_>| m.is_empty()) {
        std::thread::sleep(Duration::from_millis(50));
        connections.extend(drain_connections(&listener));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        connections.iter().any(|m| m.first().is_some_and(|&(_, fds)| fds == 2)),
        "the trusted uid got the Register and its two fds: {connections:?}"
    );
}
