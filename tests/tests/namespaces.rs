//! An application in a container runs in namespaces of its own while the daemon runs on the
//! host (Docker's default). Its pid namespace cannot see the daemon's pid, so the kernel
//! reports pid 0 for it in `SO_PEERCRED`; its network namespace holds the socketpair it
//! registers, which the daemon's `sock_diag` cannot see. Either alone once sent every such
//! application back to real inotify; here the preloaded client gets its events.

use fakenotify_tests::*;

/// The C client, preloaded, in new namespaces (`unshare FLAGS`), watching `mount` for creates.
fn contained(daemon: &Daemon, fuse: &FuseMount, flags: &[&str]) -> Client {
    let client_path = artifacts().inotify_client(Libc::Glibc);
    let client = client_path.to_str().expect("UTF-8 path");
    let spec = format!("IN_CREATE:{}", fuse.mount.display());
    let mut args = flags.to_vec();
    args.extend([client, spec.as_str()]);
    let mut contained = Client::spawn("unshare", &args, Some(daemon), true);
    contained.expect_line("READY", |l| l.text == "READY");
    let lines = contained.lines();
    assert!(
        lines.iter().any(|l| l.text.starts_with("INIT") && l.text.ends_with("socket")),
        "the instance is FakeNotify's, not real inotify: {lines:?}"
    );
    contained
}

#[test]
fn an_application_in_its_own_pid_namespace_trusts_the_daemon_and_gets_events() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let mut client = contained(&daemon, &fuse, &["--pid", "--fork", "--mount-proc"]);
    write(&fuse.backing("other-pids"), b"");
    client.expect_event("IN_CREATE other-pids", |e| e.matches(IN_CREATE, "other-pids"));
}

#[test]
fn an_application_in_its_own_network_namespace_registers_and_gets_events() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let mut client = contained(&daemon, &fuse, &["--net"]);
    write(&fuse.backing("other-net"), b"");
    client.expect_event("IN_CREATE other-net", |e| e.matches(IN_CREATE, "other-net"));
}

#[test]
fn an_application_in_a_container_like_set_of_namespaces_gets_events() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    let flags = ["--pid", "--fork", "--mount-proc", "--net", "--ipc", "--uts"];
    let mut client = contained(&daemon, &fuse, &flags);
    write(&fuse.backing("container"), b"");
    client.expect_event("IN_CREATE container", |e| e.matches(IN_CREATE, "container"));
}
