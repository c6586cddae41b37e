//! Latencies: `inotify_add_watch` through the preload against the real syscall (a small C
//! program, preloaded or not), and the time from a change in the backing directory to the event
//! read by a client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fakenotify_ctl::watcher::Watcher;

/// Median and 99th percentile of one series of calls, and how long all of them took.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallTimes {
    pub median: Duration,
    pub p99: Duration,
    pub total: Duration,
    pub failures: u64,
}

/// Compiles `helpers/addwatch.c` into `work`.
pub fn build_helper(work: &Path) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("helpers/addwatch.c");
    let out = work.join("addwatch");
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .map_err(|e| format!("cc: {e}"))?;
    if !status.success() {
        return Err(format!("cc {} failed", source.display()));
    }
    Ok(out)
}

/// The helper's `--round-trip`: the floor of a request to another process that waits in
/// epoll_wait, over `count` calls.
pub fn round_trip_times(helper: &Path, count: usize) -> Result<CallTimes, String> {
    let mut command = Command::new(helper);
    command.arg("--round-trip").arg(count.to_string()).env_remove("LD_PRELOAD");
    call_times(command)
}

/// Runs the helper over `paths`, with `preload` and `socket` when given.
pub fn add_watch_times(
    helper: &Path,
    work: &Path,
    paths: &[PathBuf],
    preload: Option<(&Path, &Path)>,
) -> Result<CallTimes, String> {
    let list = work.join("addwatch.list");
    let text: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
    std::fs::write(&list, text).map_err(|e| e.to_string())?;
    let mut command = Command::new(helper);
    command.arg(&list).arg(paths.len().to_string()).env_remove("LD_PRELOAD");
    if let Some((library, socket)) = preload {
        command.env("LD_PRELOAD", library).env("FAKENOTIFY_SOCKET", socket);
    }
    call_times(command)
}

/// Runs the helper and reads its `median_ns p99_ns total_ns failures` line.
fn call_times(mut command: Command) -> Result<CallTimes, String> {
    let output = command.output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match numbers[..] {
        [median, p99, total, failures] => Ok(CallTimes {
            median: Duration::from_nanos(median),
            p99: Duration::from_nanos(p99),
            total: Duration::from_nanos(total),
            failures,
        }),
        _ => Err(format!(
            "addwatch printed {text:?}; stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )),
    }
}

/// Creates `samples` files, one every `spacing`, in `backing_dirs` (spread over them) while
/// `watcher` watches the same directories through the mount, and returns the p50 and p99 of
/// the time from each creation to its IN_CREATE read by the client.
pub fn event_latency(
    mut watcher: Watcher,
    backing_dirs: &[PathBuf],
    samples: usize,
    spacing: Duration,
) -> Result<(Duration, Duration, usize), String> {
    let (tx, rx) = mpsc::channel::<(Vec<u8>, Instant)>();
    std::thread::spawn(move || {
        while let Ok(Some(events)) = watcher.read_events() {
            let at = Instant::now();
            for event in events {
                if tx.send((event.name, at)).is_err() {
                    return;
                }
            }
        }
    });
    let mut created = Vec::with_capacity(samples);
    for i in 0..samples {
        let dir = &backing_dirs[(i * 37 + 1) % backing_dirs.len()];
        let name = format!("latency-{i}.mkv");
        std::fs::write(dir.join(&name), b"x").map_err(|e| format!("{}: {e}", dir.display()))?;
        created.push((name.into_bytes(), Instant::now()));
        std::thread::sleep(spacing);
    }
    let mut latencies = Vec::with_capacity(samples);
    let deadline = Instant::now() + Duration::from_secs(30);
    while latencies.len() < samples && Instant::now() < deadline {
        let Ok((name, at)) = rx.recv_timeout(Duration::from_secs(1)) else { continue };
        if let Some((_, made)) = created.iter().find(|(n, _)| *n == name) {
            latencies.push(at.saturating_duration_since(*made));
        }
    }
    for (i, (name, _)) in created.iter().enumerate() {
        let dir = &backing_dirs[(i * 37 + 1) % backing_dirs.len()];
        let _ = std::fs::remove_file(dir.join(String::from_utf8_lossy(name).as_ref()));
    }
    if latencies.is_empty() {
        return Err("no event arrived".into());
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99), latencies.len()))
}
