//! Polls on a latency-bound mount (delayfs: every FUSE request answered after a delay, many at
//! once) keep their `statx` calls in flight together, and still hold what held before: a
//! `max_ops` budget counts every request whatever their overlap, and a server that stops with
//! requests outstanding stalls only its own device.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fakenotify_ctl::message::PolicyInfo;
use fakenotify_ctl::watcher::{WatchEvent, Watcher};
use fakenotify_tests::*;

const DIRS: usize = 20;
const FILES: usize = 100;
const MODIFY: u32 = IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE;

/// `backing/dNN` with `FILES` files each, left to age past the daemon's 2 s racy window; the
/// same directories as the mount shows them.
fn tree(mount: &FuseMount) -> Vec<PathBuf> {
    let dirs = (0..DIRS)
        .map(|d| {
            let name = format!("d{d:02}");
            std::fs::create_dir(mount.backing(&name)).expect("mkdir");
            for f in 0..FILES {
                std::fs::write(mount.backing(&name).join(format!("f{f:03}")), b"x").expect("write");
            }
            mount.mounted(&name)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    dirs
}

fn policy(daemon: &Daemon, root: &Path) -> PolicyInfo {
    let root = root.display().to_string();
    daemon
        .full_status()
        .0
        .policies
        .into_iter()
        .find(|p| p.path == root)
        .expect("the mount's policy")
}

/// Watches `dirs` for `mask` and hands their events to the returned channel.
fn watch(daemon: &Daemon, dirs: &[PathBuf], mask: u32) -> mpsc::Receiver<WatchEvent> {
    let mut watcher = Watcher::register(daemon.socket()).expect("register with the daemon");
    for dir in dirs {
        watcher.add(dir, mask).expect("add a watch");
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(Some(events)) = watcher.read_events() {
            for event in events {
                if tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn expect_event(rx: &mpsc::Receiver<WatchEvent>, what: &str, mask: u32, name: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"));
        if event.name == name && event.mask & mask != 0 {
            return;
        }
    }
}

#[test]
fn a_budget_holds_while_statx_calls_overlap() {
    let mount = FuseMount::delayfs(1.0);
    let dirs = tree(&mount);
    // 20 directories of 101 statx each at 1 s want about 2000 operations a second; 300 allowed.
    let daemon = Daemon::start(&format!(
        "[[watch]]\npath = \"{}\"\npoll_interval = \"1s\"\nmax_ops = 300\n",
        mount.mount.display()
    ));
    let rx = watch(&daemon, &dirs, MODIFY);
    let rate = |a: &PolicyInfo, b: &PolicyInfo, took: Duration| {
        let ops =
            (b.syscalls_statx + b.syscalls_getdents) - (a.syscalls_statx + a.syscalls_getdents);
        ops as f64 / took.as_secs_f64()
    };
    // The first listings made about 2 000 statx calls: the budget pays for them first, about
    // 7 s at 300 a second, and the polls wait.
    let (a, t0) = (policy(&daemon, &mount.mount), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (b, t1) = (policy(&daemon, &mount.mount), Instant::now());
    let paying = rate(&a, &b, t1 - t0);
    assert!(paying <= 100.0, "{paying:.0} ops/s while the first listings are paid for");
    std::thread::sleep(Duration::from_secs(4));
    let (a, t0) = (policy(&daemon, &mount.mount), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let (b, t1) = (policy(&daemon, &mount.mount), Instant::now());
    let rate = rate(&a, &b, t1 - t0);
    assert!(rate <= 350.0, "{rate:.0} ops/s over a 300/s budget ({a:?} -> {b:?})");
    assert!(rate >= 150.0, "{rate:.0} ops/s: the budget should be used, not idle");
    assert!(b.stretched, "status says the intervals are stretched: {b:?}");
    // A change still shows, within a stretched interval (about 7 s).
    std::fs::write(mount.backing("d07/new"), b"data").expect("write");
    expect_event(&rx, "IN_CREATE of d07/new", IN_CREATE, b"new");
}

#[test]
fn a_server_stopped_with_statx_calls_in_flight_stalls_only_its_device() {
    let slow = FuseMount::delayfs(1.0);
    let dirs = tree(&slow);
    let alive = FuseMount::new();
    let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"300ms\"\n");
    let slow_events = watch(&daemon, &dirs, MODIFY);
    let alive_events = watch(&daemon, std::slice::from_ref(&alive.mount), IN_CREATE);
    // Polls of 101 statx at 1 ms, back to back: stopped now, the server holds many requests.
    std::thread::sleep(Duration::from_secs(1));
    let frozen = slow.freeze();
    std::fs::write(slow.backing("d03/during"), b"data").expect("write");
    std::thread::sleep(Duration::from_millis(1500));

    for n in 0..3 {
        let name = format!("alive-{n}");
        let began = Instant::now();
        std::fs::write(alive.backing(&name), b"").expect("write");
        expect_event(&alive_events, &name, IN_CREATE, name.as_bytes());
        let took = began.elapsed();
        assert!(
            took < Duration::from_millis(1300),
            "{name} took {took:?} while a server is stopped"
        );
    }
    let (s, took) = daemon.full_status();
    assert!(took < Duration::from_secs(1), "status took {took:?} while a server is stopped");
    let slow_root = slow.mount.display().to_string();
    assert!(
        s.slow_scans.iter().any(|scan| scan.path.starts_with(&slow_root)),
        "status names the stopped mount: {:?}",
        s.slow_scans
    );

    drop(frozen);
    expect_event(&slow_events, "IN_CREATE of d03/during after SIGCONT", IN_CREATE, b"during");
    std::fs::write(slow.backing("d05/f001"), b"longer").expect("write");
    expect_event(&slow_events, "IN_MODIFY of d05/f001", IN_MODIFY, b"f001");
}

/// An `inotify_add_watch` for IN_MODIFY on a large directory of a slow mount takes as long as
/// the first listing with every entry's attributes: longer than the preload's 3 s bound for an
/// unanswered request. The daemon says at once that the answer comes later, so the application
/// waits for its wd, as it would in the kernel on that mount, and its events arrive; no watch is
/// made behind its back.
#[test]
fn a_slow_first_listing_returns_the_wd_however_long_it_takes() {
    const ENTRIES: usize = 2000;
    let mount = FuseMount::delayfs(50.0);
    std::fs::create_dir(mount.backing("big")).expect("mkdir");
    for f in 0..ENTRIES {
        std::fs::write(mount.backing("big").join(format!("f{f:04}")), b"x").expect("write");
    }
    std::thread::sleep(Duration::from_millis(2500));
    let daemon = Daemon::start("[daemon]\ndefault_poll_interval = \"1s\"\n");
    let spec = format!("MODIFY:{}", mount.mounted("big").display());
    let program = artifacts().inotify_client(Libc::Glibc);
    let began = Instant::now();
    let mut client = Client::spawn(program, &[&spec], Some(&daemon), true);
    let ready = client.wait_for(Duration::from_secs(120), |l| l.text == "READY");
    let took = began.elapsed();
    assert!(ready.is_some(), "no READY: {}", client.transcript());
    let lines = client.lines();
    assert!(
        lines.iter().any(|l| l.text.starts_with("WATCH 1 ")),
        "the application got its wd after {took:?}: {lines:?}"
    );
    eprintln!("add_watch(IN_MODIFY) on {ENTRIES} entries at 50 ms per request took {took:?}");
    std::fs::write(mount.backing("big/f0007"), b"changed").expect("modify");
    client.expect_event("IN_MODIFY f0007", |e| e.matches(IN_MODIFY, "f0007"));
    let (s, _) = daemon.full_status();
    assert_eq!(s.watches, 1, "one watch, the application's: {s:?}");
}
