//! notify's `PollWatcher` on the same tree, in a child process of its own so that its resident
//! memory is its own. The child prints `key=value` lines that the parent reads.
//!
//! A scan's time: `PollWatcher` reports paths gone only after it has walked the whole tree, so
//! the bench removes a sentinel file, asks for a scan, and times until that removal is reported.
//! The sentinel is made and removed in the backing directory, as the mount may be read-only.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{Config, EventKind, PollWatcher, RecursiveMode, Watcher};

use crate::daemon::rss;

#[derive(Clone, Debug)]
pub struct PollWatcherFigures {
    pub scan: Duration,
    pub rss_growth: u64,
}

const SENTINEL: &str = "zz-bench-sentinel";

/// Runs in the child: watches `root`, the view of `backing`, then times `scans` scans.
pub fn child(root: &Path, backing: &Path, scans: usize) -> Result<(), String> {
    let pid = std::process::id();
    let (tx, rx) = mpsc::channel();
    let sentinel = backing.join(SENTINEL);
    std::fs::write(&sentinel, b"").map_err(|e| format!("{}: {e}", sentinel.display()))?;
    let before = rss(pid);
    let mut watcher = PollWatcher::new(tx, Config::default().with_manual_polling())
        .map_err(|e| format!("PollWatcher: {e}"))?;
    let start = Instant::now();
    watcher.watch(root, RecursiveMode::Recursive).map_err(|e| format!("watch: {e}"))?;
    println!("initial_scan_us={}", start.elapsed().as_micros());
    println!("rss_growth={}", rss(pid).saturating_sub(before));
    let wait_for = |kind: fn(&EventKind) -> bool| -> Result<Instant, String> {
        loop {
            match rx.recv_timeout(Duration::from_secs(600)) {
                Ok(Ok(event))
                    if kind(&event.kind) && event.paths.iter().any(|p| p.ends_with(SENTINEL)) =>
                {
                    return Ok(Instant::now())
                }
                Ok(_) => continue,
                Err(e) => return Err(format!("PollWatcher events: {e}")),
            }
        }
    };
    for _ in 0..scans {
        std::fs::remove_file(&sentinel).map_err(|e| format!("{}: {e}", sentinel.display()))?;
        let start = Instant::now();
        watcher.poll().map_err(|e| format!("poll: {e}"))?;
        let done = wait_for(|k| matches!(k, EventKind::Remove(_)))?;
        println!("scan_us={}", done.duration_since(start).as_micros());
        std::fs::write(&sentinel, b"").map_err(|e| format!("{}: {e}", sentinel.display()))?;
        watcher.poll().map_err(|e| format!("poll: {e}"))?;
        wait_for(|k| matches!(k, EventKind::Create(_)))?;
    }
    let _ = std::fs::remove_file(&sentinel);
    Ok(())
}

/// Runs the child on `root`, the view of `backing`, and returns the median scan and the memory
/// growth.
pub fn measure(root: &Path, backing: &Path, scans: usize) -> Result<PollWatcherFigures, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .arg("--pollwatcher-child")
        .arg(root)
        .arg(backing)
        .arg(scans.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("{}{}", text, String::from_utf8_lossy(&output.stderr)));
    }
    let values = |key: &str| -> Vec<u64> {
        text.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.parse().ok()).collect()
    };
    let mut scans = values("scan_us");
    scans.sort_unstable();
    let scan = scans.get(scans.len() / 2).copied().ok_or("no scan timed")?;
    Ok(PollWatcherFigures {
        scan: Duration::from_micros(scan),
        rss_growth: values("rss_growth").first().copied().unwrap_or(0),
    })
}
