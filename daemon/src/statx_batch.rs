//! `statx` of many names of one directory with up to [`IN_FLIGHT`] requests in flight.
//!
//! On NFS, SMB, sshfs or rclone each `statx` is a round trip to the server, and a poll that
//! makes them one after another pays N round trips however idle the server is. Servers answer
//! many at once (NFS has slots, sshfs pipelines SFTP, FUSE servers are multi-threaded), so a
//! scanner thread hands a directory's names to a few helper threads of its own, which keep that
//! many requests outstanding. Threads rather than io_uring: `IORING_OP_STATX` runs on the
//! ring's worker threads anyway, and plain threads need no unsafe ring setup in the daemon.
//!
//! Where a `statx` is answered at once (local disks, the page cache) handing names over costs
//! more than it saves, so a batch times its first `statx` and goes on alone below
//! [`SLOW_STATX`]. The helpers start on the first slow batch. They are the scanner thread's
//! own, so a hung mount holds up only its own device, as before; and every request is still
//! counted, so a `max_ops` budget holds whatever the overlap.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Statx, StatxFlags};
use rustix::io::Errno;

/// Requests in flight per device at most.
pub const IN_FLIGHT: usize = 32;

/// A first `statx` slower than this sends the rest of the batch to the helpers.
pub const SLOW_STATX: Duration = Duration::from_micros(100);

/// Stack of a helper thread: a `statx` and a few locals.
const HELPER_STACK: usize = 64 * 1024;

pub type StatResult = Result<Statx, Errno>;

/// What the helpers share with the thread that hands them a batch.
struct Shared {
    state: Mutex<Batch>,
    work: Condvar,
    done: Condvar,
}

/// The batch being worked on: the names, the next to take, the results so far.
struct Batch {
    dir: RawFd,
    flags: AtFlags,
    mask: StatxFlags,
    names: Arc<Vec<CString>>,
    next: usize,
    results: Vec<Option<StatResult>>,
    remaining: usize,
    closed: bool,
}

fn lock(mutex: &Mutex<Batch>) -> MutexGuard<'_, Batch> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One scanner thread's `statx` helpers, started on first need.
pub struct StatBatcher {
    width: usize,
    helpers: Option<Arc<Shared>>,
}

impl StatBatcher {
    /// A batcher with up to `width` requests in flight (1: never any helper).
    pub fn new(width: usize) -> StatBatcher {
        StatBatcher { width: width.max(1), helpers: None }
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
        results.push(rustix::fs::statx(dir, *first, flags, mask));
        if self.width == 1 || rest.is_empty() || began.elapsed() < SLOW_STATX {
            results.extend(rest.iter().map(|name| rustix::fs::statx(dir, *name, flags, mask)));
            return results;
        }
        match self.helpers() {
            Some(shared) => results.extend(run_batch(shared, dir, rest, flags, mask)),
            None => {
                results.extend(rest.iter().map(|name| rustix::fs::statx(dir, *name, flags, mask)))
            }
        }
        results
    }

    /// The helpers, started now if they are not yet; `None` if no thread could be started.
    fn helpers(&mut self) -> Option<&Shared> {
        if self.helpers.is_none() {
            let batch = Batch {
                dir: -1,
                flags: AtFlags::empty(),
                mask: StatxFlags::empty(),
                names: Arc::default(),
                next: 0,
                results: Vec::new(),
                remaining: 0,
                closed: false,
            };
            let shared = Arc::new(Shared {
                state: Mutex::new(batch),
                work: Condvar::new(),
                done: Condvar::new(),
            });
            for index in 0..self.width {
                let theirs = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name(format!("statx-{index}"))
                    .stack_size(HELPER_STACK)
                    .spawn(move || helper_loop(&theirs));
                if let Err(error) = spawned {
                    warn!("starting a statx helper thread: {error}");
                    if index == 0 {
                        return None;
                    }
                    break;
                }
            }
            self.helpers = Some(shared);
        }
        self.helpers.as_deref()
    }
}

impl Drop for StatBatcher {
    /// The helpers end when they next look for work.
    fn drop(&mut self) {
        if let Some(shared) = &self.helpers {
            lock(&shared.state).closed = true;
            shared.work.notify_all();
        }
    }
}

/// Hands `names` to the helpers and waits for every result.
fn run_batch(
    shared: &Shared,
    dir: BorrowedFd<'_>,
    names: &[&CStr],
    flags: AtFlags,
    mask: StatxFlags,
) -> Vec<StatResult> {
    let mut batch = lock(&shared.state);
    batch.dir = dir.as_raw_fd();
    batch.flags = flags;
    batch.mask = mask;
    batch.names = Arc::new(names.iter().map(|name| (*name).to_owned()).collect());
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
    results.into_iter().map(|result| result.unwrap_or(Err(Errno::IO))).collect()
}

fn helper_loop(shared: &Shared) {
    let mut batch = lock(&shared.state);
    loop {
        if batch.closed {
            return;
        }
        if batch.next >= batch.names.len() {
            batch = shared.work.wait(batch).unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let (index, names, dir, flags, mask) =
            (batch.next, Arc::clone(&batch.names), batch.dir, batch.flags, batch.mask);
        batch.next += 1;
        drop(batch);
        // SAFETY: `run_batch` holds the directory's fd open until `remaining` is zero, which
        // happens only after this result is stored below.
        let dir = unsafe { BorrowedFd::borrow_raw(dir) };
        let result = rustix::fs::statx(dir, names[index].as_c_str(), flags, mask);
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
            results.into_iter().map(|r| r.map(|st| st.stx_size)).collect::<Vec<_>>()
        };
        let expected = vec![Ok(3), Err(Errno::NOENT), Ok(0), Ok(7)];
        let flags = AtFlags::SYMLINK_NOFOLLOW;
        let alone = StatBatcher::new(1).stat_all(fd.as_fd(), &names, flags, StatxFlags::SIZE);
        assert_eq!(sizes(alone), expected);
        let mut batcher = StatBatcher::new(4);
        let shared = batcher.helpers().expect("helpers start");
        let helped = run_batch(shared, fd.as_fd(), &names, flags, StatxFlags::SIZE);
        assert_eq!(sizes(helped), expected);
        let again = run_batch(shared, fd.as_fd(), &names[..2], flags, StatxFlags::SIZE);
        assert_eq!(sizes(again), expected[..2]);
        drop(batcher);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
