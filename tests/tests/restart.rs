//! A restart that keeps every watch: the daemon, stopped cleanly under a service manager, hands
//! its instance sockets and polled objects to the manager's fd store with a state record; started
//! again with them, it resumes each instance, and the same client fd receives the next event with
//! its original wd. The service manager here is the test itself: it implements the FDSTORE side
//! of sd_notify and passes the fds back as `LISTEN_FDS`, as systemd does.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fakenotify_tests::*;

/// A daemon process killed on drop, whatever the test's outcome.
struct Managed(Child);

impl Drop for Managed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Receives one datagram and the fds passed with it, waiting up to `timeout`.
fn receive(socket: &UnixDatagram, timeout: Duration) -> Option<(String, Vec<OwnedFd>)> {
    socket.set_read_timeout(Some(timeout)).expect("timeout");
    let mut data = vec![0u8; 4096];
    let mut control = vec![0u8; 8192];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // SAFETY: msghdr is plain data; the buffers it points to outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: a valid msghdr on a socket this test owns.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return None;
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control; the CMSG macros walk it within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                let data = libc::CMSG_DATA(cmsg) as *const i32;
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(*data.add(i)));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Some((String::from_utf8_lossy(&data[..n as usize]).into_owned(), fds))
}

/// The test's "service manager": a directory holding the daemon's configuration, its socket
/// (`fakenotify.sock`) and its logs, and the notify socket the daemon reports to.
fn manager(label: &str) -> (TempDir, UnixDatagram) {
    let dir = TempDir::new(label);
    std::fs::write(dir.join("config.toml"), FAST_CONFIG).expect("config");
    let notify = UnixDatagram::bind(dir.join("notify.sock")).expect("bind the notify socket");
    (dir, notify)
}

/// Starts `fakenotifyd start` under the service manager of `dir` ([`manager`]), passing `fds`
/// as systemd passes its fd store (fds 3.., `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`).
fn start(dir: &TempDir, fds: &[OwnedFd]) -> Managed {
    let notify = dir.join("notify.sock");
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let names = vec!["fakenotify"; raw.len()].join(":");
    let mut command = Command::new("sh");
    // `exec` keeps the shell's pid, which $$ names: LISTEN_PID is the daemon's own pid.
    command
        .args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(artifacts().fakenotifyd())
        .args(["start", "--socket"])
        .arg(dir.join("fakenotify.sock"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .env("NOTIFY_SOCKET", &notify)
        .env("LISTEN_FDS", raw.len().to_string())
        .env("LISTEN_FDNAMES", names)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("daemon-{}.log", raw.len()))).expect("log"));
    // SAFETY: between fork and exec only dup2/fcntl, which are async-signal-safe; the fds are
    // first moved above any target so that no dup2 overwrites one still to be placed.
    unsafe {
        command.pre_exec(move || {
            for (i, &fd) in raw.iter().enumerate() {
                if libc::dup2(fd, 200 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for i in 0..raw.len() as i32 {
                if libc::dup2(200 + i, 3 + i) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(200 + i);
            }
            Ok(())
        });
    }
    Managed(command.spawn().expect("spawn fakenotifyd under the test's service manager"))
}

fn wait_ready(notify: &UnixDatagram) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some((text, _)) = receive(notify, Duration::from_millis(200)) {
            if text.contains("READY=1") {
                return;
            }
        }
    }
    panic!("the daemon sent no READY=1");
}

/// Stops `daemon` with SIGTERM, as the service manager does, and returns the fds it stored.
fn stop_and_store(daemon: &mut Managed, notify: &UnixDatagram) -> Vec<OwnedFd> {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let mut stored = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some((text, fds)) = receive(notify, Duration::from_millis(200)) {
            if text.starts_with("STATUS=") {
                continue;
            }
            assert!(text.contains("FDSTORE=1") && text.contains("FDNAME=fakenotify"), "{text}");
            stored.extend(fds);
        }
        if daemon.0.try_wait().expect("wait").is_some() {
            break;
        }
    }
    let exit = daemon.0.wait().expect("wait for the daemon");
    assert!(exit.success(), "SIGTERM ends the daemon with 0: {exit}");
    stored
}

#[test]
fn a_restart_keeps_the_clients_fd_and_wd() {
    let fuse = FuseMount::new();
    let (dir, notify) = manager("restart");
    let socket = dir.join("fakenotify.sock");

    let mut first = start(&dir, &[]);
    wait_ready(&notify);
    let spec = format!("IN_CREATE:{}", fuse.mount.display());
    let mut client = Client::spawn_with_socket(
        artifacts().inotify_client(Libc::Glibc),
        &["-n", &spec],
        &socket,
        true,
    );
    client.expect_line("READY", |l| l.text == "READY");
    write(&fuse.backing("before"), b"");
    let before = client.expect_event("before", |e| e.matches(IN_CREATE, "before"));

    let stored = stop_and_store(&mut first, &notify);
    assert!(
        stored.len() >= 3,
        "state record, instance socket and object fd stored: {}",
        stored.len()
    );

    let _second = start(&dir, &stored);
    drop(stored);
    wait_ready(&notify);
    let log = std::fs::read_to_string(dir.join(format!("daemon-{}.log", 3))).unwrap_or_default();
    write(&fuse.backing("after"), b"");
    let after = client
        .expect_event("after, through the restarted daemon", |e| e.matches(IN_CREATE, "after"));
    assert_eq!(after.wd, before.wd, "the watch keeps its wd across the restart; log:\n{log}");

    // The instance's request channel died with the first daemon: a new watch takes a short
    // connection to the second one and continues the wd sequence.
    std::fs::create_dir(fuse.backing("later")).expect("mkdir");
    client.command(&format!("add IN_CREATE:{}", fuse.mount.join("later").display()));
    client.expect_line("WATCH 2 on the restarted daemon", |l| l.text.starts_with("WATCH 2 "));
    write(&fuse.backing("later/inside"), b"");
    client
        .expect_event("inside, on the new watch", |e| e.wd == 2 && e.matches(IN_CREATE, "inside"));
    assert!(client.is_running(), "the client never saw EOF");
}

#[test]
fn the_service_manager_hears_what_the_daemon_serves() {
    let fuse = FuseMount::new();
    let (dir, notify) = manager("status-line");
    let _daemon = start(&dir, &[]);
    wait_ready(&notify);
    let spec = format!("IN_CREATE:{}", fuse.mount.display());
    let mut client = Client::spawn_with_socket(
        artifacts().inotify_client(Libc::Glibc),
        &["-n", &spec],
        &dir.join("fakenotify.sock"),
        true,
    );
    client.expect_line("READY", |l| l.text == "READY");
    // A line goes out at most every 5 s, so the one naming the client may wait that long.
    let deadline = Instant::now() + WAIT;
    let mut heard = Vec::new();
    while Instant::now() < deadline {
        if let Some((text, _)) = receive(&notify, Duration::from_millis(200)) {
            if text.starts_with("STATUS=1 instance, 1 watch (1 polled), ") {
                assert!(text.ends_with(" polls/s"), "{text}");
                return;
            }
            heard.push(text);
        }
    }
    panic!("no STATUS= line named the client's instance; heard {heard:?}");
}

/// A restart while a watched mount hangs: the new daemon does not wait for that mount before
/// it serves (the stored fds are told apart from the kernel's inodes, and restored objects on
/// remote mounts are listed on their workers). Once the mount answers, the restored watch
/// reports again with its wd.
#[test]
fn a_restart_while_a_watched_mount_hangs_serves_everyone_else() {
    let fuse = FuseMount::new();
    let local = TempDir::new("local");
    let (dir, notify) = manager("restart");
    let socket = dir.join("fakenotify.sock");

    let mut first = start(&dir, &[]);
    wait_ready(&notify);
    let spec = format!("IN_CREATE:{}", fuse.mount.display());
    let program = artifacts().inotify_client(Libc::Glibc);
    let mut client = Client::spawn_with_socket(&program, &["-n", &spec], &socket, true);
    client.expect_line("READY", |l| l.text == "READY");
    write(&fuse.backing("before"), b"");
    let before = client.expect_event("before", |e| e.matches(IN_CREATE, "before"));

    let stored = stop_and_store(&mut first, &notify);

    let frozen = fuse.freeze();
    // Past the kernel's attribute cache of the mount, so that every call there would wait.
    std::thread::sleep(Duration::from_millis(1500));

    let _second = start(&dir, &stored);
    drop(stored);
    wait_ready(&notify);
    let local_spec = format!("IN_CREATE:{}", local.path().display());
    let mut other = Client::spawn_with_socket(&program, &["-n", &local_spec], &socket, true);
    other.expect_line("READY", |l| l.text == "READY");
    assert!(other.lines().iter().any(|l| l.text.ends_with(" socket")), "served by the daemon");
    write(&local.join("local-file"), b"");
    other.expect_event("a local create while the mount hangs", |e| {
        e.matches(IN_CREATE, "local-file")
    });

    // While the mount hung, the restored object's first listing waited on its worker: it is
    // taken once the mount answers, and changes come after it.
    drop(frozen);
    let deadline = Instant::now() + WAIT;
    loop {
        let out = run_ctl(&socket, &["status", "--json"], false);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status: fakenotify_ctl::message::Status =
            nanoserde::DeJson::deserialize_json(&text).expect("status JSON");
        if status.slow_scans.is_empty() && status.objects_polled == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the restored object was never listed: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    write(&fuse.backing("after"), b"");
    let log = || std::fs::read_to_string(dir.join("daemon-3.log")).unwrap_or_default();
    let after = client.wait_for(WAIT, |l| {
        EventLine::parse(&l.text).is_some_and(|e| e.matches(IN_CREATE, "after"))
    });
    let after = after.and_then(|l| EventLine::parse(&l.text));
    let after = after.unwrap_or_else(|| panic!("no event after SIGCONT; log:\n{}", log()));
    assert_eq!(after.wd, before.wd, "the watch keeps its wd across the restart");
}
