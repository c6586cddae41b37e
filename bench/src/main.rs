//! `fakenotify-bench` (`just bench`): what a FakeNotify poll costs next to the least any poller
//! must do and next to notify's `PollWatcher`, all measured in one run on this machine.
//!
//! It makes deterministic trees (100 files per directory) on local disk and, when bindfs is
//! there, behind a bindfs FUSE mount of the same tree; drives the real `fakenotifyd` (every
//! directory watched, as Jellyfin does) and reads what its polls cost from its own counters;
//! and prints one table. It asserts nothing about time: the figures vary by machine, the ratios
//! much less. It is not a test; `tests/tests/perf_structure.rs` checks the cheap path.

mod daemon;
mod floor;
mod latency;
mod pollwatch;
mod tree;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fakenotify_ctl::message::PolicyInfo;
use fakenotify_ctl::watcher::Watcher;
use fakenotify_proto::inotify::*;

use crate::daemon::{config, Daemon};
use crate::floor::Floor;
use crate::tree::Tree;

const USAGE: &str = "\
fakenotify-bench: FakeNotify's polls against the syscall floor and notify's PollWatcher

Usage: fakenotify-bench [--sizes 10k,100k] [--huge] [--no-fuse] [--delays 0.2,1]
                        [--delayed-size 100k] [--floor-sample 2k|full] [--add-watch-only]
                        [--work DIR]

  --sizes LIST         tree sizes in entries (default 10k,100k; none: delayed columns only)
  --huge               add the 1m tree (slow behind bindfs: minutes)
  --no-fuse            local disk only (no bindfs and no delayed columns)
  --delays LIST        milliseconds per request of the delayed mounts (default 0.2,1; none: no
                       delayed columns)
  --delayed-size SIZE  the tree behind the delayed mounts (default 100k: about 15 minutes
                       for both delays on a 2-core machine)
  --floor-sample SIZE  on the delayed mounts, the sequential floor (FORCE_SYNC) runs over the
                       first directories holding SIZE entries and its time is scaled to the
                       whole tree by entries, marked est. (default 2k; one statx after another
                       is linear in entries, and 100k entries at 1 ms are 2 minutes a pass);
                       full: over the whole tree (at 1 ms about 16 minutes more per delay). The
                       cached floor and PollWatcher always run over the whole tree.
  --add-watch-only     only the inotify_add_watch latencies (on the first size of 10k or more)
  --work DIR           where trees, mounts and sockets go (default $TMPDIR/fakenotify-bench)

Needs target/release/fakenotifyd and libfakenotify.so beside this program (just bench builds
them), cc for the add_watch helper, bindfs + fusermount3 (as root) for the FUSE columns, and
/usr/bin/python3 with pyfuse3 (Debian: python3-pyfuse3) for the delayed ones.";

/// A mask like .NET's FileSystemWatcher (Jellyfin, Sonarr...): attributes compared per entry.
const MODIFY_MASK: u32 = IN_CREATE
    | IN_DELETE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_MODIFY
    | IN_ATTRIB
    | IN_CLOSE_WRITE
    | IN_DELETE_SELF;
/// New, gone and renamed files only: a directory's own statx is enough while it is unchanged.
const CREATE_MASK: u32 = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF;

struct Options {
    sizes: Vec<usize>,
    fuse: bool,
    /// Milliseconds per request of each delayed mount.
    delays: Vec<f64>,
    delayed_size: usize,
    /// Entries of the delayed trees' floor sample; `None`: the whole tree.
    floor_sample: Option<usize>,
    add_watch_only: bool,
    work: PathBuf,
}

fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_lowercase();
    let (digits, scale) = match text.strip_suffix('m') {
        Some(d) => (d, 1_000_000),
        None => match text.strip_suffix('k') {
            Some(d) => (d, 1000),
            None => (text.as_str(), 1),
        },
    };
    digits.parse::<usize>().ok().map(|n| n * scale).filter(|n| *n > 0)
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut options = Options {
        sizes: vec![10_000, 100_000],
        fuse: true,
        delays: vec![0.2, 1.0],
        delayed_size: 100_000,
        floor_sample: Some(2_000),
        add_watch_only: false,
        work: std::env::temp_dir().join("fakenotify-bench"),
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                let list = args.next().ok_or("--sizes needs a list")?;
                options.sizes = if list == "none" {
                    Vec::new()
                } else {
                    list.split(',')
                        .map(|s| parse_size(s).ok_or(format!("bad size {s:?}")))
                        .collect::<Result<_, _>>()?
                };
            }
            "--huge" => options.sizes.push(1_000_000),
            "--no-fuse" => options.fuse = false,
            "--delays" => {
                let list = args.next().ok_or("--delays needs a list")?;
                options.delays = if list == "none" {
                    Vec::new()
                } else {
                    list.split(',')
                        .map(|d| {
                            d.trim()
                                .parse::<f64>()
                                .ok()
                                .filter(|ms| ms.is_finite() && *ms > 0.0)
                                .ok_or(format!("bad delay {d:?} (milliseconds, e.g. 0.2)"))
                        })
                        .collect::<Result<_, _>>()?
                };
            }
            "--delayed-size" => {
                let size = args.next().ok_or("--delayed-size needs a size")?;
                options.delayed_size = parse_size(&size).ok_or(format!("bad size {size:?}"))?;
            }
            "--floor-sample" => {
                let size = args.next().ok_or("--floor-sample needs a size or full")?;
                options.floor_sample = if size == "full" {
                    None
                } else {
                    Some(parse_size(&size).ok_or(format!("bad size {size:?}"))?)
                };
            }
            "--add-watch-only" => options.add_watch_only = true,
            "--work" => options.work = args.next().ok_or("--work needs a directory")?.into(),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    options.sizes.sort_unstable();
    options.sizes.dedup();
    Ok(options)
}

/// A bindfs mount of `backing` at `mount`, unmounted on drop.
struct Bindfs {
    mount: PathBuf,
}

impl Bindfs {
    fn new(backing: &Path, mount: &Path) -> Result<Bindfs, String> {
        std::fs::create_dir_all(mount).map_err(|e| e.to_string())?;
        let status = Command::new("bindfs")
            .arg(backing)
            .arg(mount)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("bindfs: {e}"))?;
        if !status.success() {
            return Err(format!("bindfs {} {} failed", backing.display(), mount.display()));
        }
        Ok(Bindfs { mount: mount.to_owned() })
    }
}

/// A delayfs mount (`scripts/delayfs.py`) of `backing` at `mount`: every request answered
/// after `delay_ms`, many at once. Unmounted on drop.
struct Delayfs {
    mount: PathBuf,
    server: std::process::Child,
}

impl Delayfs {
    fn new(backing: &Path, mount: &Path, delay_ms: f64) -> Result<Delayfs, String> {
        std::fs::create_dir_all(mount).map_err(|e| e.to_string())?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/delayfs.py");
        let server = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(backing)
            .arg(mount)
            .arg(delay_ms.to_string())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let mut delayfs = Delayfs { mount: mount.to_owned(), server };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(mount) {
            if let Ok(Some(status)) = delayfs.server.try_wait() {
                return Err(format!("delayfs exited ({status}) before mounting"));
            }
            if Instant::now() > deadline {
                return Err(format!("delayfs did not mount {} within 10 s", mount.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(delayfs)
    }
}

impl Drop for Delayfs {
    /// Unmounts, and ends the server if it is still there 10 s later: a mount namespace made
    /// meanwhile (by a test running beside the bench) keeps a copy of the mount, and with it
    /// the server's connection, after our unmount.
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-u").arg(&self.mount).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.server.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Whether a mount sits at `path` (its line in /proc/self/mountinfo).
fn is_mounted(path: &Path) -> bool {
    let wanted = format!(" {} ", path.display());
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| text.contains(&wanted))
}

/// Whether delayfs can run here: Debian's python3 with pyfuse3 and trio.
fn delayfs_available() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import pyfuse3, trio"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for Bindfs {
    fn drop(&mut self) {
        let ok = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
    }
}

fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        // Children (the daemon) inherit it; without it a 1m tree's 10 000 directories fail.
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn size_label(n: usize) -> String {
    for (scale, suffix) in [(1_000_000, "m"), (1000, "k")] {
        let (whole, rest) = (n / scale, n % scale);
        if whole > 0 && rest == 0 {
            return format!("{whole}{suffix}");
        }
    }
    n.to_string()
}

/// What one daemon run with one mask costs on one tree.
#[derive(Default, Clone)]
struct MaskFigures {
    unchanged: Duration,
    changed: Duration,
    statx_per_poll: f64,
    getdents_per_poll: f64,
    /// Resident memory growth per listed entry right after every watch was added.
    bytes_per_entry: f64,
    /// The same after the unchanged and changed passes: what the polls keep.
    bytes_per_entry_polled: f64,
    add_time: Duration,
}

#[derive(Default, Clone)]
struct Column {
    label: String,
    entries: usize,
    dirs: usize,
    floor: Duration,
    /// When the floor was measured on a sample: its entries (the floor is scaled from it).
    floor_sample: Option<usize>,
    floor_cached: Duration,
    modify: MaskFigures,
    create: MaskFigures,
    /// The create mask with `listing = "every-poll"`, as on rclone, sshfs and mergerfs.
    listed: MaskFigures,
    pollwatcher: Option<pollwatch::PollWatcherFigures>,
    pollwatcher_error: Option<String>,
}

struct Context {
    fakenotifyd: PathBuf,
    preload: PathBuf,
    work: PathBuf,
    idle_rss: Option<(u64, u64)>,
}

/// Waits until the policy of `root` has made `polls` more polls than `from` (and at least
/// `min` went by); returns the later counters.
fn wait_polls(
    daemon: &Daemon,
    root: &Path,
    from: &PolicyInfo,
    polls: u64,
    min: Duration,
) -> PolicyInfo {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(900);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = daemon.policy(root);
        if (now.polls >= from.polls + polls && start.elapsed() >= min) || Instant::now() > deadline
        {
            return now;
        }
    }
}

/// Time of one pass over every directory, from the daemon's counters between `a` and `b`.
fn pass_time(a: &PolicyInfo, b: &PolicyInfo, dirs: usize) -> Duration {
    let polls = b.polls.saturating_sub(a.polls).max(1);
    let per_poll = b.poll_time_us.saturating_sub(a.poll_time_us) as f64 / polls as f64;
    Duration::from_secs_f64(per_poll * dirs as f64 / 1e6)
}

/// One daemon, one mask, one tree: memory per entry, the unchanged pass, the 1 % changed pass.
fn measure_mask(
    ctx: &mut Context,
    view: &Tree,
    backing: &mut Tree,
    mask: u32,
    listing: &str,
    name: &str,
) -> Result<MaskFigures, String> {
    let text = config(&[&view.root], "1s", Some(u32::MAX), "poll", listing);
    let daemon = Daemon::start(&ctx.fakenotifyd, &ctx.work, name, &text);
    std::thread::sleep(Duration::from_millis(300));
    let idle = daemon.rss();
    if ctx.idle_rss.is_none() {
        ctx.idle_rss = Some((idle, daemon.rss_anon()));
    }
    let mut watcher = Watcher::register(&daemon.socket).map_err(|e| e.to_string())?;
    let dirs = view.watched_dirs();
    let start = Instant::now();
    for dir in &dirs {
        watcher.add(dir, mask).map_err(|e| e.to_string())?;
    }
    let add_time = start.elapsed();
    let grown = daemon.rss().saturating_sub(idle);
    // Read and drop the events, as an application would.
    std::thread::spawn(move || while let Ok(Some(_)) = watcher.read_events() {});
    let n = dirs.len() as u64;
    // A directory changed within the last 2 s is listed again at its next poll (its times may
    // hide a change made in the same clock tick): the earlier phase's changes age out first.
    std::thread::sleep(Duration::from_millis(2500));
    let warm = wait_polls(&daemon, &view.root, &daemon.policy(&view.root), n, Duration::ZERO);
    let quiet = wait_polls(&daemon, &view.root, &warm, n, Duration::from_secs(2));
    let unchanged = pass_time(&warm, &quiet, dirs.len());
    let polls = quiet.polls.saturating_sub(warm.polls).max(1) as f64;
    let statx = quiet.syscalls_statx.saturating_sub(warm.syscalls_statx) as f64 / polls;
    let getdents = quiet.syscalls_getdents.saturating_sub(warm.syscalls_getdents) as f64 / polls;
    // 1 % of the files change once per pass (or per interval, when a pass is quicker).
    let period = unchanged.max(Duration::from_secs(1));
    let stop = AtomicBool::new(false);
    let changed = std::thread::scope(|scope| {
        let changer = scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let next = Instant::now() + period;
                if let Err(e) = backing.change_one_percent() {
                    return Err(e.to_string());
                }
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Ok(())
        });
        std::thread::sleep(period);
        let a = daemon.policy(&view.root);
        let b = wait_polls(&daemon, &view.root, &a, 2 * n, Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        changer.join().map_err(|_| "changer panicked".to_string())??;
        Ok::<_, String>(pass_time(&a, &b, dirs.len()))
    })?;
    let polled = daemon.rss().saturating_sub(idle);
    Ok(MaskFigures {
        unchanged,
        changed,
        statx_per_poll: statx,
        getdents_per_poll: getdents,
        bytes_per_entry: grown as f64 / view.listed_entries() as f64,
        bytes_per_entry_polled: polled as f64 / view.listed_entries() as f64,
        add_time,
    })
}

fn measure_column(
    ctx: &mut Context,
    view: &Tree,
    backing: &mut Tree,
    label: String,
    floor_passes: usize,
    floor_sample: Option<usize>,
) -> Result<Column, String> {
    eprintln!("bench: {label}: floor");
    let dirs = view.watched_dirs();
    let mut floor = Floor::open(&dirs).map_err(|e| format!("floor: {e}"))?;
    // The sample for the FORCE_SYNC floor: whole directories below the root, enough of them to
    // hold `floor_sample` entries. One request after another costs the same per entry however
    // many there are, so its time scales by entries; the plain statx floor does not sample, as
    // what the attribute cache answers depends on how long a pass takes.
    let sample_dirs = floor_sample
        .map(|n| &view.dirs[..n.div_ceil(tree::FILES_PER_DIR).clamp(1, view.dirs.len())]);
    let mut sample =
        sample_dirs.map(Floor::open).transpose().map_err(|e| format!("floor sample: {e}"))?;
    let mut sampled = None;
    // `floor_passes` passes of each kind before the daemon runs and as many after, the median
    // of them all: the machine's other load drifts, and the floor should see the same as the
    // daemon.
    let mut passes = |force_sync: bool, into: &mut Vec<Duration>| -> Result<(), String> {
        let (floor, scale) = match (&mut sample, force_sync) {
            (Some(sample), true) => (sample, true),
            _ => (&mut floor, false),
        };
        floor.pass(force_sync).map_err(|e| format!("floor: {e}"))?;
        for _ in 0..floor_passes {
            let (time, seen) = floor.pass(force_sync).map_err(|e| format!("floor: {e}"))?;
            if scale {
                // A held directory's rewound listing may lack names renamed since its open
                // (delayfs answers it from what it read at opendir): the largest pass is the
                // sample.
                sampled = Some(sampled.unwrap_or(0).max(seen));
                into.push(time.mul_f64(view.listed_entries() as f64 / seen.max(1) as f64));
            } else {
                into.push(time);
            }
        }
        Ok(())
    };
    let (mut forced, mut cached) = (Vec::new(), Vec::new());
    passes(true, &mut forced)?;
    passes(false, &mut cached)?;
    eprintln!("bench: {label}: fakenotifyd, IN_MODIFY mask");
    let modify = measure_mask(ctx, view, backing, MODIFY_MASK, "auto", "modify")?;
    eprintln!("bench: {label}: fakenotifyd, create/delete/move mask");
    let create = measure_mask(ctx, view, backing, CREATE_MASK, "auto", "create")?;
    eprintln!("bench: {label}: fakenotifyd, create/delete/move mask, listing every poll");
    let listed = measure_mask(ctx, view, backing, CREATE_MASK, "every-poll", "listed")?;
    eprintln!("bench: {label}: floor again");
    passes(true, &mut forced)?;
    passes(false, &mut cached)?;
    drop(floor);
    drop(sample);
    let median = |mut v: Vec<Duration>| {
        v.sort_unstable();
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2
    };
    let (floor_time, floor_cached) = (median(forced), median(cached));
    eprintln!("bench: {label}: notify PollWatcher");
    let measured = pollwatch::measure(&view.root, &backing.root, floor_passes);
    let (pollwatcher, pollwatcher_error) = match measured {
        Ok(figures) => (Some(figures), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Column {
        label,
        entries: view.listed_entries(),
        dirs: dirs.len(),
        floor: floor_time,
        floor_sample: sampled,
        floor_cached,
        modify,
        create,
        listed,
        pollwatcher,
        pollwatcher_error,
    })
}

/// The rest of the figures: add_watch latency and event latency.
#[derive(Default)]
struct Extras {
    add_watch: Vec<(String, latency::CallTimes)>,
    event_latency: Option<(String, Duration, Duration, usize)>,
    static_idle_rss: Option<(u64, u64)>,
    notes: Vec<String>,
}

fn measure_add_watch(
    ctx: &Context,
    local: &Tree,
    fuse: Option<&Tree>,
    extras: &mut Extras,
) -> Result<(), String> {
    eprintln!("bench: inotify_add_watch latency");
    let helper = latency::build_helper(&ctx.work)?;
    let count = 10_000;
    let mut roots: Vec<&Path> = vec![&local.root];
    if let Some(f) = fuse {
        roots.push(&f.root);
    }
    // Policies as a user would have them (their ancestry is walked at each add); local files
    // get a kernel watch, FUSE files are polled.
    let text = config(&roots, "1s", None, "auto", "auto");
    let daemon = Daemon::start(&ctx.fakenotifyd, &ctx.work, "addwatch", &text);
    let files = local.files(count);
    let real = latency::add_watch_times(&helper, &ctx.work, &files, None)?;
    extras.add_watch.push(("inotify_add_watch, real syscall (ext4)".into(), real));
    let round_trip = latency::round_trip_times(&helper, count)?;
    extras
        .add_watch
        .push(("floor: a request to another process (SEQPACKET round trip)".into(), round_trip));
    let through =
        latency::add_watch_times(&helper, &ctx.work, &files, Some((&ctx.preload, &daemon.socket)))?;
    extras
        .add_watch
        .push(("inotify_add_watch, preload, local file (kernel watch)".into(), through));
    if let Some(f) = fuse {
        let files = f.files(count);
        let polled = latency::add_watch_times(
            &helper,
            &ctx.work,
            &files,
            Some((&ctx.preload, &daemon.socket)),
        )?;
        extras.add_watch.push(("inotify_add_watch, preload, FUSE file (polled)".into(), polled));
    }
    Ok(())
}

fn measure_event_latency(
    ctx: &Context,
    view: &Tree,
    backing: &Tree,
    extras: &mut Extras,
    label: String,
) -> Result<(), String> {
    eprintln!("bench: event latency on {label}");
    let text = config(&[&view.root], "1s", None, "poll", "auto");
    let daemon = Daemon::start(&ctx.fakenotifyd, &ctx.work, "latency", &text);
    let mut watcher = Watcher::register(&daemon.socket).map_err(|e| e.to_string())?;
    for dir in view.watched_dirs() {
        watcher.add(&dir, CREATE_MASK).map_err(|e| e.to_string())?;
    }
    // Let the first round (spread over one interval) go by.
    std::thread::sleep(Duration::from_millis(1500));
    let (p50, p99, n) =
        latency::event_latency(watcher, &backing.dirs, 100, Duration::from_millis(97))?;
    extras.event_latency = Some((label, p50, p99, n));
    Ok(())
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

fn print_table(columns: &[Column], ctx: &Context, extras: &Extras, bin_dir: &Path) {
    let mut header = String::from("| figure |");
    let mut rule = String::from("|---|");
    for c in columns {
        header.push_str(&format!(" {} |", c.label));
        rule.push_str("---:|");
    }
    println!("{header}\n{rule}");
    let row = |name: &str, cell: &dyn Fn(&Column) -> String| {
        let mut line = format!("| {name} |");
        for c in columns {
            line.push_str(&format!(" {} |", cell(c)));
        }
        println!("{line}");
    };
    row("entries (directories watched)", &|c| format!("{} ({})", c.entries, c.dirs));
    row("floor: getdents64 + statx (FORCE_SYNC) of every entry", &|c| match c.floor_sample {
        Some(n) => format!("{} (est. from {n} entries)", ms(c.floor)),
        None => ms(c.floor),
    });
    row("floor with cached attributes (plain statx)", &|c| ms(c.floor_cached));
    let vs = |d: Duration, c: &Column| {
        let mut s = format!("{} ({:.2}x floor", ms(d), ratio(d, c.floor));
        if let Some(pw) = &c.pollwatcher {
            s.push_str(&format!(", {:.2}x PW", ratio(d, pw.scan)));
        }
        s.push(')');
        s
    };
    row("FakeNotify, IN_MODIFY mask, unchanged", &|c| vs(c.modify.unchanged, c));
    row("FakeNotify, IN_MODIFY mask, 1% changed", &|c| vs(c.modify.changed, c));
    row("FakeNotify, create/delete/move mask, unchanged", &|c| {
        format!(
            "{} ({:.0}x cheaper than full)",
            ms(c.create.unchanged),
            ratio(c.modify.unchanged, c.create.unchanged)
        )
    });
    row("FakeNotify, create/delete/move mask, 1% changed", &|c| vs(c.create.changed, c));
    row("FakeNotify, create mask, listing every poll (rclone, sshfs, mergerfs), unchanged", &|c| {
        vs(c.listed.unchanged, c)
    });
    row("notify PollWatcher scan (PW)", &|c| match (&c.pollwatcher, &c.pollwatcher_error) {
        (Some(pw), _) => format!("{} ({:.2}x floor)", ms(pw.scan), ratio(pw.scan, c.floor)),
        (None, Some(e)) => format!("failed: {}", e.lines().next().unwrap_or("")),
        _ => "-".into(),
    });
    row("syscalls per poll, IN_MODIFY mask, unchanged", &|c| {
        format!("{:.1} statx + {:.2} getdents", c.modify.statx_per_poll, c.modify.getdents_per_poll)
    });
    row("syscalls per poll, create mask, unchanged", &|c| {
        format!("{:.1} statx + {:.2} getdents", c.create.statx_per_poll, c.create.getdents_per_poll)
    });
    row("syscalls per poll, create mask, listing every poll, unchanged", &|c| {
        format!("{:.1} statx + {:.2} getdents", c.listed.statx_per_poll, c.listed.getdents_per_poll)
    });
    row("daemon bytes per entry after the adds, IN_MODIFY / create mask", &|c| {
        format!("{:.0} / {:.0}", c.modify.bytes_per_entry, c.create.bytes_per_entry)
    });
    row("daemon bytes per entry while polled (after the passes), IN_MODIFY / create mask", &|c| {
        format!("{:.0} / {:.0}", c.modify.bytes_per_entry_polled, c.create.bytes_per_entry_polled)
    });
    row("PollWatcher bytes per entry", &|c| {
        c.pollwatcher
            .as_ref()
            .map_or("-".into(), |pw| format!("{:.0}", pw.rss_growth as f64 / c.entries as f64))
    });
    row("adding every watch (IN_MODIFY mask)", &|c| ms(c.modify.add_time));
    println!();
    println!("| figure | value |\n|---|---:|");
    let mib = |b: u64| b as f64 / 1048576.0;
    if let Some((idle, anon)) = ctx.idle_rss {
        println!(
            "| daemon idle RSS (of which private anonymous) | {:.2} MiB ({:.2} MiB) |",
            mib(idle),
            mib(anon)
        );
    }
    if let Some((idle, anon)) = extras.static_idle_rss {
        println!(
            "| static daemon idle RSS (of which private anonymous) | {:.2} MiB ({:.2} MiB) |",
            mib(idle),
            mib(anon)
        );
    }
    for (name, t) in &extras.add_watch {
        let failed =
            if t.failures > 0 { format!(", {} failed", t.failures) } else { String::new() };
        println!(
            "| {name}: median / p99 / 10 000 calls | {} / {} / {}{failed} |",
            us(t.median),
            us(t.p99),
            ms(t.total)
        );
    }
    if let Some((label, p50, p99, n)) = &extras.event_latency {
        println!(
            "| event latency, {label}, 1 s interval: p50 / p99 ({n} events) | {} / {} |",
            ms(*p50),
            ms(*p99)
        );
    }
    let size = |p: PathBuf| {
        file_size(&p).map_or("not built".to_string(), |b| format!("{:.1} KiB", b as f64 / 1024.0))
    };
    println!("| libfakenotify.so (stripped) | {} |", size(bin_dir.join("libfakenotify.so")));
    let static_daemon = bin_dir.parent().map(|t| t.join("static/fakenotifyd")).unwrap_or_default();
    let static_size = file_size(&static_daemon)
        .map_or("not built (just static)".to_string(), |b| {
            format!("{:.2} MiB", b as f64 / 1048576.0)
        });
    println!("| static fakenotifyd | {static_size} |");
    for note in &extras.notes {
        println!("\nnote: {note}");
    }
}

fn run(options: Options) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin_dir = exe.parent().ok_or("no directory for the bench executable")?.to_owned();
    let fakenotifyd = bin_dir.join("fakenotifyd");
    let preload = bin_dir.join("libfakenotify.so");
    for p in [&fakenotifyd, &preload] {
        if !p.exists() {
            return Err(format!("{} is missing: run `just bench`, which builds it", p.display()));
        }
    }
    raise_fd_limit();
    std::fs::create_dir_all(&options.work)
        .map_err(|e| format!("{}: {e}", options.work.display()))?;
    let mut ctx = Context { fakenotifyd, preload, work: options.work.clone(), idle_rss: None };
    let mut columns = Vec::new();
    let mut extras = Extras::default();
    let fuse = options.fuse && Command::new("bindfs").arg("--version").output().is_ok();
    if options.fuse && !fuse {
        extras.notes.push("bindfs not found: FUSE columns left out".into());
    }
    let add_watch_size = options.sizes.iter().copied().find(|&n| n >= 10_000);
    let latency_size = options.sizes.iter().copied().filter(|&n| n <= 100_000).max();
    for &size in &options.sizes {
        let label = size_label(size);
        eprintln!("bench: making the {label} tree");
        let mut backing = Tree::create(&options.work.join(format!("tree-{label}")), size)
            .map_err(|e| format!("making the {label} tree: {e}"))?;
        let local = backing.seen_at(&backing.root.clone());
        if !options.add_watch_only {
            let label = format!("{label} local");
            columns.push(measure_column(&mut ctx, &local, &mut backing, label, 3, None)?);
        }
        let mount = if fuse {
            let mount_dir = options.work.join(format!("mount-{label}"));
            Some(Bindfs::new(&backing.root, &mount_dir)?)
        } else {
            None
        };
        let view = mount.as_ref().map(|m| backing.seen_at(&m.mount));
        if let Some(view) = view.as_ref().filter(|_| !options.add_watch_only) {
            let label = format!("{label} bindfs");
            columns.push(measure_column(&mut ctx, view, &mut backing, label, 3, None)?);
        }
        if Some(size) == add_watch_size {
            measure_add_watch(&ctx, &backing, view.as_ref(), &mut extras)?;
        }
        if Some(size) == latency_size && !options.add_watch_only {
            let (target, where_) = match &view {
                Some(view) => (view.seen_at(&view.root), "bindfs"),
                None => (local.seen_at(&local.root), "local"),
            };
            measure_event_latency(
                &ctx,
                &target,
                &backing,
                &mut extras,
                format!("{label} {where_}"),
            )?;
        }
        drop(mount);
        let _ = std::fs::remove_dir_all(&backing.root);
    }
    if options.fuse && !options.delays.is_empty() {
        if delayfs_available() {
            measure_delayed(&mut ctx, &options, &mut columns)?;
        } else {
            extras.notes.push(
                "/usr/bin/python3 with pyfuse3 not found (python3-pyfuse3): delayed columns left out"
                    .into(),
            );
        }
    }
    let static_daemon = bin_dir.parent().map(|t| t.join("static/fakenotifyd")).unwrap_or_default();
    if static_daemon.exists() {
        let daemon = Daemon::start(
            &static_daemon,
            &ctx.work,
            "static",
            &config(&[], "1s", None, "auto", "auto"),
        );
        std::thread::sleep(Duration::from_millis(300));
        extras.static_idle_rss = Some((daemon.rss(), daemon.rss_anon()));
    }
    if let Some(c) = columns.iter().find(|c| c.floor_sample.is_some()) {
        extras.notes.push(format!(
            "est.: on the delayed mounts the FORCE_SYNC floor ran over a sample of {} entries \
             and its time is scaled to the {} entries of the tree (one request after another \
             costs the same per entry); the daemon, the cached floor and PollWatcher ran over \
             the whole tree. --floor-sample full measures the floor over the whole tree.",
            c.floor_sample.unwrap_or(0),
            c.entries
        ));
    }
    print_table(&columns, &ctx, &extras, &bin_dir);
    Ok(())
}

/// The columns of latency-bound mounts: the delayed tree behind delayfs at each delay, where a
/// poller's requests cost a round trip each unless it overlaps them.
fn measure_delayed(
    ctx: &mut Context,
    options: &Options,
    columns: &mut Vec<Column>,
) -> Result<(), String> {
    let label = size_label(options.delayed_size);
    eprintln!("bench: making the {label} tree for the delayed mounts");
    let root = options.work.join(format!("tree-delayed-{label}"));
    let mut backing = Tree::create(&root, options.delayed_size)
        .map_err(|e| format!("making the {label} tree: {e}"))?;
    for &delay in &options.delays {
        let mount = Delayfs::new(&backing.root, &options.work.join("mount-delayed"), delay)?;
        let view = backing.seen_at(&mount.mount);
        let column_label = format!("{label} delayfs {delay} ms");
        // A whole-tree floor pass of 100k entries at 1 ms is 2 minutes: one of each kind
        // before and after then, three of a sample.
        let passes = if options.floor_sample.is_some() { 3 } else { 1 };
        let sample = options.floor_sample.filter(|&n| n < options.delayed_size);
        columns.push(measure_column(ctx, &view, &mut backing, column_label, passes, sample)?);
    }
    let _ = std::fs::remove_dir_all(&backing.root);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--pollwatcher-child") {
        let root = PathBuf::from(args.get(2).cloned().unwrap_or_default());
        let backing = PathBuf::from(args.get(3).cloned().unwrap_or_default());
        let scans = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3);
        return match pollwatch::child(&root, &backing, scans) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pollwatcher child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("fakenotify-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fakenotify-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
