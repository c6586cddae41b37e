//! The preload in the places where a hook that took a lock, allocated or kept a table would
//! deadlock or crash: `inotify_add_watch` and `inotify_init1` from a signal handler that
//! interrupts the same calls, `fork()` while four threads are inside the hooks (the child
//! then uses the inherited instance and makes its own), and `vfork()`+`exec` with an
//! inherited instance. `tests/clients/fork_safety.c` does the work; here it runs under the
//! preload with a daemon, bounded in time, on a local directory (kernel forwarding) and on a
//! polled bindfs mount.

use std::path::Path;
use std::time::Duration;

use fakenotify_tests::*;

/// Far more than the program needs (well under a second); reaching it means a deadlock.
const BOUND: Duration = Duration::from_secs(60);

fn run_fork_safety(dir: &Path, daemon: &Daemon) {
    let program = c_program("fork_safety");
    let mut client = Client::spawn(&program, &[dir], Some(daemon), true);
    let status = match client.wait_exit(BOUND) {
        Some(status) => status,
        None => client.fail(&format!("still running after {BOUND:?}: a deadlock")),
    };
    let lines: Vec<String> = client.lines().into_iter().map(|l| l.text).collect();
    if !lines.iter().any(|l| l == "INIT socket") {
        client.fail("the instance is not served by fakenotifyd, so nothing was tested");
    }
    let failed: Vec<&String> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
    if !status.success() || !failed.is_empty() || !lines.iter().any(|l| l == "DONE 0 failed") {
        client.fail(&format!("ended with {status}; failed checks: {failed:?}"));
    }
}

#[test]
fn signal_handlers_forks_and_vfork_exec_on_a_local_directory() {
    let dir = TempDir::new("fork-safety");
    let daemon = Daemon::fast();
    run_fork_safety(dir.path(), &daemon);
}

#[test]
fn signal_handlers_forks_and_vfork_exec_on_a_polled_mount() {
    let fuse = FuseMount::new();
    let daemon = Daemon::fast();
    run_fork_safety(&fuse.mount, &daemon);
}
