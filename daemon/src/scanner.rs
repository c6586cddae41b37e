//! Polls run on one scanner thread per device, so a mount whose server stops answering blocks
//! only its own thread: the event loop, the control socket and every other mount go on.
//!
//! The event loop hands a poll over as a [`ScanJob`] (a duplicate of the object's fd and its
//! last state, moved, not copied) on the device's queue and gets a [`ScanResult`] back on one
//! shared list, woken by an eventfd in its epoll set. The queues are a mutex and a condition
//! variable each, not `std::sync::mpsc`, whose generic channel flavours cost the static daemon
//! about as much as the rest of this module's callers. Threads rather than processes: the job needs the fd and the
//! snapshot, which a thread takes without serialising, and a thread stuck in an uninterruptible
//! NFS call is no more killable as a process. The loop itself stays single-threaded: it alone
//! touches watches, instances and subscribers; a scanner only runs `poller::poll_state`.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use crate::heap;
use crate::mounts::Observed;
use crate::poller::{self, PollOutcome};
use crate::scan::{ScanCounters, ScanIo};
use crate::watch::ScanState;

/// One poll handed to a scanner thread.
pub struct ScanJob {
    pub object: usize,
    pub generation: u64,
    /// Whether the poll came from the schedule (and must be rescheduled) or was asked for
    /// out of turn.
    pub scheduled: bool,
    pub fd: OwnedFd,
    pub look: poller::Look,
    pub state: ScanState,
}

/// A finished poll: the state back, what it found, what it cost.
pub struct ScanResult {
    pub object: usize,
    pub generation: u64,
    pub scheduled: bool,
    pub state: ScanState,
    pub outcome: PollOutcome,
    /// What the poll tells of its mount.
    pub observed: Observed,
    pub counters: ScanCounters,
    pub took: std::time::Duration,
}

/// The jobs waiting for one scanner thread; `closed` once the loop is done with it.
#[derive(Default)]
struct Jobs {
    queue: Mutex<(VecDeque<ScanJob>, bool)>,
    ready: Condvar,
}

/// What the scanner threads hand back, and the eventfd that tells the loop.
struct Results {
    list: Mutex<Vec<ScanResult>>,
    wake: OwnedFd,
}

/// Locks `mutex`. The daemon aborts on panic, so no lock is ever left poisoned; if one were,
/// its data would still be whole (every critical section here is a push or a take).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct Scanners {
    devices: HashMap<u64, Arc<Jobs>>,
    results: Arc<Results>,
}

impl Scanners {
    pub fn new() -> Result<Scanners, Errno> {
        let wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Scanners {
            devices: HashMap::new(),
            results: Arc::new(Results { list: Mutex::new(Vec::new()), wake }),
        })
    }

    /// Readable when results wait in [`Scanners::drain`].
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.results.wake.as_fd()
    }

    /// Queues `job` on the thread of device `dev`, starting the thread on first use. Gives the
    /// job back if no thread can take it.
    pub fn dispatch(&mut self, dev: u64, job: ScanJob) -> Result<(), Box<ScanJob>> {
        if !self.devices.contains_key(&dev) {
            let jobs = Arc::new(Jobs::default());
            let (theirs, results) = (Arc::clone(&jobs), Arc::clone(&self.results));
            let spawned = std::thread::Builder::new()
                .name(format!("scan-{dev:x}"))
                .spawn(move || scan_loop(&theirs, &results));
            if let Err(error) = spawned {
                warn!("starting a scanner thread for device {dev:#x}: {error}");
                return Err(Box::new(job));
            }
            self.devices.insert(dev, jobs);
        }
        let Some(jobs) = self.devices.get(&dev) else { return Err(Box::new(job)) };
        lock(&jobs.queue).0.push_back(job);
        jobs.ready.notify_one();
        Ok(())
    }

    /// The results that arrived since the last call.
    pub fn drain(&self) -> Vec<ScanResult> {
        let mut count = [0u8; 8];
        // Only the wake-up matters, not the count.
        let _ = rustix::io::read(&self.results.wake, &mut count);
        std::mem::take(&mut *lock(&self.results.list))
    }
}

impl Drop for Scanners {
    /// Each thread ends once it is between polls; one stuck in a hung mount ends with the
    /// process.
    fn drop(&mut self) {
        for jobs in self.devices.values() {
            lock(&jobs.queue).1 = true;
            jobs.ready.notify_one();
        }
    }
}

/// The next job for this thread, waiting for one; None once the loop closed the queue.
fn next_job(jobs: &Jobs) -> Option<ScanJob> {
    let mut queue = lock(&jobs.queue);
    loop {
        if queue.1 {
            return None;
        }
        if let Some(job) = queue.0.pop_front() {
            return Some(job);
        }
        queue = jobs.ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
    }
}

fn scan_loop(jobs: &Jobs, results: &Results) {
    let mut io = ScanIo::new();
    let mut trimmer = heap::Trimmer::new(Instant::now());
    while let Some(mut job) = next_job(jobs) {
        let mut counters = ScanCounters::default();
        let began = Instant::now();
        let mut observed = Observed::default();
        let outcome = poller::poll_state(
            job.fd.as_fd(),
            &mut job.state,
            job.look,
            &mut io,
            &mut counters,
            &mut observed,
        );
        let result = ScanResult {
            object: job.object,
            generation: job.generation,
            scheduled: job.scheduled,
            state: job.state,
            outcome,
            observed,
            counters,
            took: began.elapsed(),
        };
        lock(&results.list).push(result);
        // The loop takes the list on any wake-up; a full counter still wakes it.
        let _ = rustix::io::write(&results.wake, &1u64.to_ne_bytes());
        trimmer.after_poll();
    }
}
