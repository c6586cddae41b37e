//! The cost of polling, checked structurally from the daemon's own counters (`fakenotify-ctl
//! status --json`), never by timing: an unchanged directory watched for creates, deletes and
//! renames costs one `statx` per poll and, every 16th poll, a verification listing; and a
//! `max_ops` budget holds the daemon's rate of filesystem operations while events still arrive.
//! Timings are `just bench`'s job.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fakenotify_ctl::message::PolicyInfo;
use fakenotify_ctl::watcher::Watcher;
use fakenotify_tests::*;

const DIRS: usize = 1000;
const CREATE_ONLY: u32 = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO;

/// Every this many polls of a directory, a verification listing (`poller::VERIFY_EVERY`).
const VERIFY_EVERY: u64 = 16;

/// `root/dNNNN` with two files each, left to age past the daemon's 2 s racy window: a directory
/// changed that recently is listed again at its next poll, as a change in the same clock tick
/// would not move its times.
fn tree(root: &Path) -> Vec<PathBuf> {
    let dirs = (0..DIRS)
        .map(|i| {
            let dir = root.join(format!("d{i:04}"));
            std::fs::create_dir(&dir).expect("mkdir");
            for f in ["a.mkv", "b.nfo"] {
                std::fs::write(dir.join(f), b"x").expect("write");
            }
            dir
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    dirs
}

fn config(root: &Path, extra: &str) -> String {
    format!(
        "[daemon]\nmax_user_watches = 100000\n\n[[watch]]\npath = \"{}\"\nmode = \"poll\"\n\
         poll_interval = \"1s\"\n{extra}",
        root.display()
    )
}

/// Every policy's counters, as `fakenotify-ctl status --json` prints them.
fn policy(daemon: &Daemon, root: &Path) -> PolicyInfo {
    let root = root.display().to_string();
    let policies = daemon.full_status().0.policies;
    policies.into_iter().find(|p| p.path == root).expect("the tree's policy in status")
}

fn watch_all(daemon: &Daemon, dirs: &[PathBuf]) -> Watcher {
    let mut watcher = Watcher::register(daemon.socket()).expect("register with the daemon");
    for dir in dirs {
        watcher.add(dir, CREATE_ONLY).expect("add a watch");
    }
    watcher
}

/// Waits until the policy made at least `polls` polls more than `from`.
fn after_polls(daemon: &Daemon, root: &Path, from: &PolicyInfo, polls: u64) -> PolicyInfo {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = policy(daemon, root);
        if now.polls >= from.polls + polls {
            return now;
        }
        assert!(Instant::now() < deadline, "only {} polls in {WAIT:?}", now.polls - from.polls);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_unchanged_tree_costs_one_statx_per_directory_and_a_verification_listing_now_and_then() {
    let dir = TempDir::new("perf-structure");
    let root = dir.join("library");
    std::fs::create_dir(&root).expect("mkdir");
    let dirs = tree(&root);
    let daemon = Daemon::start(&config(&root, ""));
    let _watcher = watch_all(&daemon, &dirs);
    // The first round after the baselines, then one whole round measured.
    let start = policy(&daemon, &root);
    let warm = after_polls(&daemon, &root, &start, DIRS as u64);
    let round = after_polls(&daemon, &root, &warm, DIRS as u64);
    let polls = round.polls - warm.polls;
    assert!(polls >= DIRS as u64);
    let listings = round.syscalls_getdents - warm.syscalls_getdents;
    // Staggered by inode number: a round holds about one directory in 16 being verified.
    assert!(listings > 0, "verification listings run");
    assert!(listings <= polls / VERIFY_EVERY + 32, "{listings} listings in {polls} polls");
    let statx = round.syscalls_statx - warm.syscalls_statx;
    assert_eq!(statx, polls + listings, "one statx per poll, one after each listing");
    assert_eq!(round.entries_compared - warm.entries_compared, 2 * listings, "two per listing");
    assert_eq!(round.events - warm.events, 0);
    assert!(!round.stretched, "1000 statx/s is within the default budget: {round:?}");
}

#[test]
fn max_ops_holds_the_operation_rate_and_events_still_arrive() {
    let dir = TempDir::new("perf-budget");
    let root = dir.join("library");
    std::fs::create_dir(&root).expect("mkdir");
    let dirs = tree(&root);
    // 1000 directories at 1 s need 1000 statx/s; the budget is 200.
    let daemon = Daemon::start(&config(&root, "max_ops = 200\n"));
    let mut watcher = watch_all(&daemon, &dirs);
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
    // The first listings (a statx and two getdents64 each, about 3 000 calls) are paid for
    // first: about 15 s at 200 a second, during which the group's polls wait.
    let rate = |a: &PolicyInfo, b: &PolicyInfo, took: Duration| {
        let ops =
            (b.syscalls_statx + b.syscalls_getdents) - (a.syscalls_statx + a.syscalls_getdents);
        ops as f64 / took.as_secs_f64()
    };
    let listed = Instant::now();
    let a = policy(&daemon, &root);
    std::thread::sleep(Duration::from_secs(4));
    let b = policy(&daemon, &root);
    let paying = rate(&a, &b, listed.elapsed());
    assert!(paying <= 100.0, "{paying:.0} ops/s while the first listings are paid for");
    std::thread::sleep(Duration::from_secs(16).saturating_sub(listed.elapsed()));
    let a = policy(&daemon, &root);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let (b, t1) = (policy(&daemon, &root), Instant::now());
    let rate = rate(&a, &b, t1 - t0);
    assert!(rate <= 230.0, "{rate:.0} ops/s over a 200/s budget ({a:?} -> {b:?})");
    assert!(rate >= 150.0, "{rate:.0} ops/s: the budget should be used evenly, not idle");
    assert!(b.stretched, "status says the intervals are stretched: {b:?}");
    assert!(b.held_polls > 0 || b.effective_interval_ms >= 4000, "{b:?}");
    assert!(
        (4000..=6000).contains(&b.effective_interval_ms),
        "1 s stretched about 5x: {}",
        b.effective_interval_ms
    );
    // A new file still shows, within one stretched interval (about 5 s).
    let made = Instant::now();
    std::fs::write(dirs[DIRS / 2].join("new.mkv"), b"x").expect("write");
    let deadline = made + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = rx.recv_timeout(left).expect("IN_CREATE new.mkv within 15 s");
        if event.name == b"new.mkv" && event.mask & IN_CREATE != 0 {
            break;
        }
    }
}
