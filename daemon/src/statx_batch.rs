//! `statx` of many names of one directory with up to [`IN_FLIGHT`] requests in flight.
//!
//! On NFS, SMB, sshfs or rclone each `statx` is a round trip to the server, and a poll that
//! makes them one after another pays N round trips however idle the server is. Servers answer
//! many at once (NFS has slots, sshfs pipelines SFTP, FUSE servers are multi-threaded), so a
//! worker hands a directory's names to a few helper threads of its own, which keep that
//! many requests outstanding. Threads rather than io_uring: `IORING_OP_STATX` runs on the
//! ring's worker threads anyway, and plain threads need no unsafe ring setup in the daemon.
//!
//! Where a `statx` is answered at once (local disks, the page cache) handing names over costs
//! more than it saves, so a batch times its first `statx` and goes on alone below
//! [`SLOW_STATX`]. The helpers start on the first slow batch and end after [`HELPER_IDLE`]
//! without one. They are the worker's own, so a hung mount holds up only its own
//! device, as before; and every request is still counted, so a `max_ops` budget holds whatever
//! the overlap.
//!
//! A batch keeps what a poll compares of each answer ([`Found`], 40 bytes, not the 264 of a
//! `Result<Statx, Errno>`) and its names in one buffer: while the answers for a 100 000-entry
//! directory come in, a poll holds about 11 MB, where a `Statx` per name (twice: the slots and
//! the list returned) and a `CString` each held over 50 MB in 100 000 allocations.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Statx, StatxFlags};
use rustix::io::Errno;

use crate::snapshot::EntryStat;

/// Requests in flight per device at most.
pub const IN_FLIGHT: usize = 32;

/// A first `statx` slower than this sends the rest of the batch to the helpers.
pub const SLOW_STATX: Duration = Duration::from_micros(100);

/// Stack of a helper thread: a `statx` and a few locals.
const HELPER_STACK: usize = 64 * 1024;

/// What a poll keeps of one entry's `statx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub ino: u64,
    pub is_dir: bool,
    pub stat: EntryStat,
}

impl Found {
    pub fn of(st: &Statx) -> Found {
        let mode = u32::from(st.stx_mode);
        Found {
            ino: st.stx_ino,
            is_dir: rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory,
            stat: EntryStat::of(st),
        }
    }
}

pub type StatResult = Result<Found, Errno>;

fn stat_one(dir: BorrowedFd<'_>, name: &CStr, flags: AtFlags, mask: StatxFlags) -> StatResult {
    rustix::fs::statx(dir, name, flags, mask).map(|st| Found::of(&st))
}

/// A batch's names with their NULs, in one buffer.
#[derive(Default)]
struct Names {
    bytes: Vec<u8>,
    /// Where each name (with its NUL) ends in `bytes`.
    ends: Vec<usize>,
}

impl Names {
    fn of(names: &[&CStr]) -> Names {
        let total = names.iter().map(|name| name.to_bytes_with_nul().len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(names.len());
        for name in names {
            bytes.extend_from_slice(name.to_bytes_with_nul());
            ends.push(bytes.len());
        }
        Names { bytes, ends }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, index: usize) -> &CStr {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        // Each slice is one name copied from a `CStr`, with its NUL and no other.
        CStr::from_bytes_with_nul(&self.bytes[start..self.ends[index]]).unwrap_or(c"")
    }
}

/// What the helpers share with the thread that hands them a batch.
struct Shared {
    state: Mutex<Batch>,
    work: Condvar,
    done: Condvar,
    /// A helper that found no work for this long ends.
    idle: Duration,
}

/// The batch being worked on: the names, the next to take, the results so far.
struct Batch {
    dir: RawFd,
    flags: AtFlags,
    mask: StatxFlags,
    names: Arc<Names>,
    next: usize,
    results: Vec<Option<StatResult>>,
    remaining: usize,
    /// Helper threads running.
    helpers: usize,
    closed: bool,
}

fn lock(mutex: &Mutex<Batch>) -> MutexGuard<'_, Batch> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A helper with no work for this long ends, and the next slow batch starts it again: the
/// loop's helpers, used when watches are added, do not keep their stacks for good (each is
/// 8 KiB resident, and a thread-local page). Starting 32 threads costs about a millisecond, a
/// round trip or two of the mounts that need them.
pub const HELPER_IDLE: Duration = Duration::from_secs(10);

/// One worker's `statx` helpers, started on need and ending when idle.
pub struct StatBatcher {
    width: usize,
    shared: Option<Arc<Shared>>,
    idle: Duration,
    /// Whether a failure to start a helper was logged.
    warned: bool,
}

impl StatBatcher {
    /// A batcher with up to `width` requests in flight (1: never any helper).
    pub fn new(width: usize) -> StatBatcher {
        StatBatcher::with_idle(width, HELPER_IDLE)
    }

    fn with_idle(width: usize, idle: Duration) -> StatBatcher {
        StatBatcher { width: width.max(1), shared: None, idle, warned: false }
    }

    /// `statx` of each of `names` in `dir`, in order. Holds `dir` until every result is in.
    pub fn stat_all(
        &mut self,
        dir: BorrowedFd<'_>,
        names: &[&CStr],
        flags: AtFlags,
        mask: StatxFlags,
    ) -> Vec<StatResult> {
        let mut results = Vec::with_capacity(names.len());
        let Some((first, rest)) = names.split_first() else { return results };
        let began = Instant::now();
        results.push(stat_one(dir, first, flags, mask));
        if self.width == 1 || rest.is_empty() || began.elapsed() < SLOW_STATX {
            results.extend(rest.iter().map(|name| stat_one(dir, name, flags, mask)));
            return results;
        }
        match self.run_batch(dir, rest, flags, mask) {
            Some(helped) => results.extend(helped),
            None => results.extend(rest.iter().map(|name| stat_one(dir, name, flags, mask))),
        }
        results
    }

    /// Hands `names` to the helpers, starting as many as are missing, and waits for every
    /// result; `None` if no helper runs and none could be started.
    fn run_batch(
        &mut self,
        dir: BorrowedFd<'_>,
        names: &[&CStr],
        flags: AtFlags,
        mask: StatxFlags,
    ) -> Option<Vec<StatResult>> {
        let idle = self.idle;
        let shared = Arc::clone(self.shared.get_or_insert_with(|| {
            let batch = Batch {
                dir: -1,
                flags: AtFlags::empty(),
                mask: StatxFlags::empty(),
                names: Arc::default(),
                next: 0,
                results: Vec::new(),
                remaining: 0,
                helpers: 0,
                closed: false,
            };
            Arc::new(Shared {
                state: Mutex::new(batch),
                work: Condvar::new(),
                done: Condvar::new(),
                idle,
            })
        }));
        // Counted and handed over under one lock: a helper ends only while it holds the lock
        // and no name is left to take, so the batch never waits on helpers that are gone.
        let mut batch = lock(&shared.state);
        while batch.helpers < self.width {
            let theirs = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("statx-{}", batch.helpers))
                .stack_size(HELPER_STACK)
                .spawn(move || helper_loop(&theirs));
            match spawned {
                Ok(_) => batch.helpers += 1,
                Err(error) => {
                    if !self.warned {
                        warn!("starting a statx helper thread: {error}");
                        self.warned = true;
                    }
                    break;
                }
            }
        }
        if batch.helpers == 0 {
            return None;
        }
        batch.dir = dir.as_raw_fd();
        batch.flags = flags;
        batch.mask = mask;
        batch.names = Arc::new(Names::of(names));
        batch.next = 0;
        batch.results = (0..names.len()).map(|_| None).collect();
        batch.remaining = names.len();
        shared.work.notify_all();
        while batch.remaining > 0 {
            batch = shared.done.wait(batch).unwrap_or_else(PoisonError::into_inner);
        }
        let results = std::mem::take(&mut batch.results);
        batch.names = Arc::default();
        // Every slot was filled before `remaining` reached zero.
        Some(results.into_iter().map(|result| result.unwrap_or(Err(Errno::IO))).collect())
    }
}

impl Drop for StatBatcher {
    /// The helpers end when they next look for work.
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            lock(&shared.state).closed = true;
            shared.work.notify_all();
        }
    }
}

fn helper_loop(shared: &Shared) {
    let mut batch = lock(&shared.state);
    loop {
        if batch.closed {
            batch.helpers -= 1;
            return;
        }
        if batch.next >= batch.names.len() {
            let (guard, waited) = shared
                .work
                .wait_timeout(batch, shared.idle)
                .unwrap_or_else(PoisonError::into_inner);
            batch = guard;
            if waited.timed_out() && batch.next >= batch.names.len() {
                batch.helpers -= 1;
                return;
            }
            continue;
        }
        let (index, names, dir, flags, mask) =
            (batch.next, Arc::clone(&batch.names), batch.dir, batch.flags, batch.mask);
        batch.next += 1;
        drop(batch);
        // SAFETY: `run_batch` holds the directory's fd open until `remaining` is zero, which
        // happens only after this result is stored below.
        let dir = unsafe { BorrowedFd::borrow_raw(dir) };
        let result = stat_one(dir, names.get(index), flags, mask);
        batch = lock(&shared.state);
        batch.results[index] = Some(result);
        batch.remaining -= 1;
        if batch.remaining == 0 {
            shared.done.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn results_come_back_in_order_alone_and_with_helpers() {
        let dir =
            std::env::temp_dir().join(format!("fakenotify-statx-batch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (i, size) in [3usize, 0, 7].iter().enumerate() {
            std::fs::write(dir.join(format!("f{i}")), vec![b'x'; *size]).expect("write");
        }
        let fd = std::fs::File::open(&dir).expect("open dir");
        let names = [c"f0", c"gone", c"f1", c"f2"];
        let sizes = |results: Vec<StatResult>| {
            results.into_iter().map(|r| r.map(|found| found.stat.size)).collect::<Vec<_>>()
        };
        let expected = vec![Ok(3), Err(Errno::NOENT), Ok(0), Ok(7)];
        let flags = AtFlags::SYMLINK_NOFOLLOW;
        let alone = StatBatcher::new(1).stat_all(fd.as_fd(), &names, flags, StatxFlags::SIZE);
        assert_eq!(sizes(alone), expected);
        let mut batcher = StatBatcher::with_idle(4, Duration::from_millis(50));
        let helped = batcher.run_batch(fd.as_fd(), &names, flags, StatxFlags::SIZE);
        assert_eq!(sizes(helped.expect("helpers start")), expected);
        let again = batcher.run_batch(fd.as_fd(), &names[..2], flags, StatxFlags::SIZE);
        assert_eq!(sizes(again.expect("helpers run")), expected[..2]);
        let shared = Arc::clone(batcher.shared.as_ref().expect("helpers started"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&shared.state).helpers > 0 {
            assert!(Instant::now() < deadline, "idle helpers never ended");
            std::thread::sleep(Duration::from_millis(10));
        }
        let restarted = batcher.run_batch(fd.as_fd(), &names, flags, StatxFlags::SIZE);
        assert_eq!(sizes(restarted.expect("helpers start again")), expected);
        assert_eq!(lock(&shared.state).helpers, 4);
        drop(batcher);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn names_share_one_buffer_and_come_back_whole() {
        let list = [c"a", c"", c"episode-0001.mkv", c"b"];
        let names = Names::of(&list);
        assert_eq!(names.len(), 4);
        assert_eq!(names.bytes.len(), 2 + 1 + 17 + 2);
        for (index, name) in list.iter().enumerate() {
            assert_eq!(names.get(index), *name);
        }
        assert_eq!(Names::of(&[]).len(), 0);
    }

    #[test]
    fn an_answer_kept_is_small() {
        assert!(std::mem::size_of::<Option<StatResult>>() <= 40, "a slot per name in a batch");
    }
}
