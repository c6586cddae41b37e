//! Every filesystem call about a remote mount runs on one worker thread per device, so a mount
//! whose server stops answering blocks only its own thread: the event loop, the control socket
//! and every other mount go on.
//!
//! The event loop hands work over as a [`Job`] on the device's queue: a poll (a duplicate of
//! the object's fd and its last state, moved, not copied; no state for a first listing), the
//! filesystem half of an `inotify_add_watch` ([`PlaceJob`]), the resolution of policy
//! paths, or the relocation of a directory renamed on the server ([`RelocateJob`]). It gets a [`Done`] back on one shared list, woken by an eventfd in its epoll set.
//!
//! The queues are a mutex and a condition variable each, not `std::sync::mpsc`, whose generic
//! channel flavours cost the static daemon about as much as the rest of this module's callers.
//! Threads rather than processes: the job needs the fd and the snapshot, which a thread takes
//! without serialising, and a thread stuck in an uninterruptible NFS call is no more killable as
//! a process. The loop alone touches watches, instances and subscribers; a worker only makes the
//! calls and hands back what they answered.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use crate::heap;
use crate::mounts::Observed;
use crate::place::{self, PlaceJob, Placed};
use crate::policy::{Policies, Policy};
use crate::poller::{self, PollOutcome};
use crate::relocate::{self, RelocateJob, Relocated};
use crate::scan::{ScanCounters, ScanIo};
use crate::watch::ScanState;

/// The thread that finds policy paths, whatever their device (a path's device is known only
/// once it is found).
pub const PATHS_WORKER: u64 = u64::MAX - 1;

/// Work for a device's thread.
pub enum Job {
    Poll(PollJob),
    Place(PlaceJob),
    /// Finds the identity of each policy's path (`Policies::resolve`).
    Resolve(ResolveJob),
    /// Finds a directory renamed on the server again, and polls it there if `poll` is given.
    Relocate {
        job: RelocateJob,
        poll: Option<PollJob>,
    },
}

/// What a device's thread hands back.
pub enum Done {
    Poll(PollResult),
    Placed {
        request: usize,
        placed: Result<Placed, Errno>,
    },
    Resolved(ResolveJob),
    /// `poll` ran with the directory's new fd, or (not found) did not run and hands its state
    /// back.
    Relocated {
        relocated: Relocated,
        poll: Option<PollResult>,
    },
}

/// Policies whose paths are to be found; handed back with their roots set. `ticket` says which
/// request asked.
pub struct ResolveJob {
    pub ticket: u64,
    pub policies: Policies,
}

/// One poll handed to a worker.
pub struct PollJob {
    pub object: usize,
    pub generation: u64,
    /// Whether the poll came from the schedule (and must be rescheduled) or was asked for
    /// out of turn.
    pub scheduled: bool,
    /// Whether a request waits for it (a first listing, or a join): it goes before the polls
    /// that only keep the schedule.
    pub urgent: bool,
    pub fd: OwnedFd,
    pub look: poller::Look,
    /// The last state, or None for the object's first listing.
    pub state: Option<ScanState>,
    /// Requests waiting for this poll before they join the object (`Server::joins`).
    pub joiners: Vec<usize>,
    /// Find the object's ancestry too (`policy::ancestry`): an object restored from the fd
    /// store, whose ancestry was not saved.
    pub find_ancestry: bool,
}

impl PollJob {
    /// A poll of `object` that a request waits for, out of the schedule: a first listing when
    /// `state` is None; `joiners` join the object once it is done.
    pub fn urgent(
        object: usize,
        generation: u64,
        fd: OwnedFd,
        look: poller::Look,
        state: Option<ScanState>,
        joiners: Vec<usize>,
    ) -> PollJob {
        PollJob {
            object,
            generation,
            scheduled: false,
            urgent: true,
            fd,
            look,
            state,
            joiners,
            find_ancestry: false,
        }
    }
}

/// A finished poll: the state back, what it found, what it cost.
pub struct PollResult {
    pub object: usize,
    pub generation: u64,
    pub scheduled: bool,
    /// Whether this was the object's first listing.
    pub first: bool,
    /// None only when a first listing failed (`outcome` says why).
    pub state: Option<ScanState>,
    pub joiners: Vec<usize>,
    /// The ancestry, when the job asked for it and it could be found.
    pub ancestry: Option<Vec<crate::policy::Identity>>,
    pub outcome: PollOutcome,
    /// What the poll tells of its mount.
    pub observed: Observed,
    pub counters: ScanCounters,
    pub took: std::time::Duration,
}

/// The jobs waiting for one worker. A request's jobs (examining an object, a first
/// listing, the poll a join waits for, policy paths) go before scheduled polls: an application
/// blocked in `inotify_add_watch` waits for at most the poll in progress, not for every poll due
/// on a busy device.
#[derive(Default)]
struct Queue {
    requests: VecDeque<Job>,
    polls: VecDeque<Job>,
    /// The loop is done with this thread.
    closed: bool,
}

#[derive(Default)]
struct Jobs {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Job {
    /// Whether a request waits for this job.
    fn is_request(&self) -> bool {
        match self {
            Job::Poll(poll) => poll.urgent,
            Job::Place(_) | Job::Resolve(_) | Job::Relocate { .. } => true,
        }
    }
}

/// What the device workers hand back, and the eventfd that tells the loop.
struct Results {
    list: Mutex<Vec<Done>>,
    wake: OwnedFd,
}

/// Locks `mutex`. The daemon aborts on panic, so no lock is ever left poisoned; if one were,
/// its data would still be whole (every critical section here is a push or a take).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub struct Workers {
    devices: HashMap<u64, Arc<Jobs>>,
    results: Arc<Results>,
}

impl Workers {
    pub fn new() -> Result<Workers, Errno> {
        let wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Workers {
            devices: HashMap::new(),
            results: Arc::new(Results { list: Mutex::new(Vec::new()), wake }),
        })
    }

    /// Readable when results wait in [`Workers::drain`].
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.results.wake.as_fd()
    }

    /// Queues `job` on the thread of device `dev`, starting the thread on first use. Gives the
    /// job back if no thread can take it.
    pub fn dispatch(&mut self, dev: u64, job: Job) -> Result<(), Box<Job>> {
        if !self.devices.contains_key(&dev) {
            let jobs = Arc::new(Jobs::default());
            let (theirs, results) = (Arc::clone(&jobs), Arc::clone(&self.results));
            let spawned = std::thread::Builder::new()
                .name(format!("scan-{dev:x}"))
                .spawn(move || work_loop(&theirs, &results));
            if let Err(error) = spawned {
                warn!("starting a worker for device {dev:#x}: {error}");
                return Err(Box::new(job));
            }
            self.devices.insert(dev, jobs);
        }
        let Some(jobs) = self.devices.get(&dev) else { return Err(Box::new(job)) };
        let mut queue = lock(&jobs.queue);
        if job.is_request() {
            queue.requests.push_back(job);
        } else {
            queue.polls.push_back(job);
        }
        drop(queue);
        jobs.ready.notify_one();
        Ok(())
    }

    /// The results that arrived since the last call.
    pub fn drain(&self) -> Vec<Done> {
        let mut count = [0u8; 8];
        // Only the wake-up matters, not the count.
        let _ = rustix::io::read(&self.results.wake, &mut count);
        std::mem::take(&mut *lock(&self.results.list))
    }
}

impl Drop for Workers {
    /// Each thread ends once it is between polls; one stuck in a hung mount ends with the
    /// process.
    fn drop(&mut self) {
        for jobs in self.devices.values() {
            lock(&jobs.queue).closed = true;
            jobs.ready.notify_one();
        }
    }
}

/// The next job for this thread, waiting for one; None once the loop closed the queue.
fn next_job(jobs: &Jobs) -> Option<Job> {
    let mut queue = lock(&jobs.queue);
    loop {
        if queue.closed {
            return None;
        }
        if let Some(job) = queue.requests.pop_front().or_else(|| queue.polls.pop_front()) {
            return Some(job);
        }
        queue = jobs.ready.wait(queue).unwrap_or_else(PoisonError::into_inner);
    }
}

fn work_loop(jobs: &Jobs, results: &Results) {
    let mut io = ScanIo::new();
    let mut trimmer = heap::Trimmer::new(Instant::now());
    while let Some(job) = next_job(jobs) {
        let done = match job {
            Job::Poll(job) => Done::Poll(run_poll(job, &mut io)),
            Job::Place(job) => {
                Done::Placed { request: job.request, placed: place::place(job, &mut io) }
            }
            Job::Resolve(mut job) => {
                job.policies = resolve(job.policies);
                Done::Resolved(job)
            }
            Job::Relocate { job, poll } => {
                let relocated = relocate::run(job);
                let poll = poll.map(|mut poll| match relocated.fd_of(poll.object) {
                    Some(fd) => {
                        poll.fd = fd;
                        run_poll(poll, &mut io)
                    }
                    None => unrun(poll),
                });
                Done::Relocated { relocated, poll }
            }
        };
        lock(&results.list).push(done);
        // The loop takes the list on any wake-up; a full counter still wakes it.
        let _ = rustix::io::write(&results.wake, &1u64.to_ne_bytes());
        trimmer.after_poll();
    }
}

fn run_poll(mut job: PollJob, io: &mut ScanIo) -> PollResult {
    let mut counters = ScanCounters::default();
    let began = Instant::now();
    let mut observed = Observed::default();
    let first = job.state.is_none();
    let ancestry = job.find_ancestry.then(|| {
        crate::policy::identity(job.fd.as_fd())
            .ok()
            .map(|id| crate::policy::ancestry(job.fd.as_fd(), id, job.look.is_dir))
    });
    let outcome = match job.state.as_mut() {
        Some(state) => {
            poller::poll_state(job.fd.as_fd(), state, job.look, io, &mut counters, &mut observed)
        }
        None => match poller::first_state(job.fd.as_fd(), job.look, io, &mut counters) {
            Ok(state) => {
                job.state = Some(state);
                PollOutcome::Unchanged
            }
            Err((op, errno)) => PollOutcome::Failed { op, errno },
        },
    };
    PollResult {
        object: job.object,
        generation: job.generation,
        scheduled: job.scheduled,
        first,
        state: job.state,
        joiners: job.joiners,
        ancestry: ancestry.flatten(),
        outcome,
        observed,
        counters,
        took: began.elapsed(),
    }
}

/// A poll handed back without running: its state unchanged, nothing found.
pub fn unrun(job: PollJob) -> PollResult {
    PollResult {
        object: job.object,
        generation: job.generation,
        scheduled: job.scheduled,
        first: false,
        state: job.state,
        joiners: job.joiners,
        ancestry: None,
        outcome: PollOutcome::Unchanged,
        observed: Observed::default(),
        counters: ScanCounters::default(),
        took: std::time::Duration::ZERO,
    }
}

/// Each policy's root found anew.
pub fn resolve(policies: Policies) -> Policies {
    let Policies { list, defaults } = policies;
    let watches = list.into_iter().map(|Policy { watch, origin, .. }| (watch, origin));
    Policies::resolve(watches, defaults)
}
