//! A mount whose FUSE server stops answering (SIGSTOP, as an NFS server that goes away) must not
//! hold up events of other mounts or the control socket; `status` names it while it hangs, and
//! its events resume when it answers again.

use std::path::Path;
use std::time::{Duration, Instant};

use fakenotify_tests::*;

/// The bindfs process serving `mount`, found by its command line.
fn bindfs_pid(mount: &Path) -> i32 {
    let wanted = mount.to_str().expect("UTF-8 temp path");
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().is_some_and(|a| a.ends_with("bindfs")) && args.iter().any(|a| a == wanted) {
            return pid;
        }
    }
    panic!("no bindfs process serves {wanted}");
}

/// A stopped process, continued again on drop (also when the test fails), so the mount can be
/// unmounted.
struct Frozen(i32);

impl Frozen {
    fn stop(pid: i32) -> Frozen {
        // SAFETY: kill(2) on a process this test started (through bindfs).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP {pid}");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[test]
fn a_hung_mount_does_not_stop_events_of_other_mounts() {
    let hung = FuseMount::new();
    let alive = FuseMount::new();
    let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"300ms\"\n");
    let specs = [
        format!("IN_CREATE:{}", hung.mount.display()),
        format!("IN_CREATE:{}", alive.mount.display()),
    ];
    let mut client =
        Client::inotify_client(Libc::Glibc, &["-n", &specs[0], &specs[1]], Some(&daemon), true);
    write(&hung.backing("before"), b"");
    client.expect_event("before", |e| e.matches(IN_CREATE, "before"));

    let frozen = Frozen::stop(bindfs_pid(&hung.mount));
    write(&hung.backing("during"), b"");
    // Long enough for a poll of the frozen mount to be stuck in its scanner.
    std::thread::sleep(Duration::from_millis(1500));

    for n in 0..3 {
        let name = format!("alive-{n}");
        let began = Instant::now();
        write(&alive.backing(&name), b"");
        client.expect_event(&name, |e| e.matches(IN_CREATE, &name));
        let took = began.elapsed();
        assert!(
            took < Duration::from_millis(1300),
            "{name} took {took:?} while another mount hangs"
        );
    }
    let (s, took) = daemon.full_status();
    assert!(took < Duration::from_secs(1), "status took {took:?} while a mount hangs");
    let named = s.slow_scans.iter().any(|scan| scan.path == hung.mount.display().to_string());
    assert!(named, "status names the hung mount: {:?}", s.slow_scans);
    assert!(!s.slow_scans.iter().any(|scan| scan.path == alive.mount.display().to_string()));

    drop(frozen);
    client.expect_event("during (after SIGCONT)", |e| e.matches(IN_CREATE, "during"));
    let deadline = Instant::now() + WAIT;
    while !daemon.full_status().0.slow_scans.is_empty() {
        assert!(Instant::now() < deadline, "the mount is still reported hung after SIGCONT");
        std::thread::sleep(Duration::from_millis(100));
    }
}
