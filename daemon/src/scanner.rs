//! Polls run on one scanner thread per device, so a mount whose server stops answering blocks
//! only its own thread: the event loop, the control socket and every other mount go on.
//!
//! The event loop hands a poll over as a [`ScanJob`] (a duplicate of the object's fd and its
//! last state, moved, not copied) and gets a [`ScanResult`] back through a channel, woken by an
//! eventfd in its epoll set. Threads rather than processes: the job needs the fd and the
//! snapshot, which a thread takes without serialising, and a thread stuck in an uninterruptible
//! NFS call is no more killable as a process. The loop itself stays single-threaded: it alone
//! touches watches, instances and subscribers; a scanner only runs `poller::poll_state`.

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

use crate::poller::{self, PollOutcome};
use crate::scan::ScanCounters;
use crate::watch::ScanState;

/// One poll handed to a scanner thread.
pub struct ScanJob {
    pub object: usize,
    pub generation: u64,
    /// Whether the poll came from the schedule (and must be rescheduled) or was asked for
    /// out of turn.
    pub scheduled: bool,
    pub fd: OwnedFd,
    pub is_dir: bool,
    pub needs_stats: bool,
    pub force_sync: bool,
    pub state: ScanState,
}

/// A finished poll: the state back, what it found, what it cost.
pub struct ScanResult {
    pub object: usize,
    pub generation: u64,
    pub scheduled: bool,
    pub state: ScanState,
    pub outcome: PollOutcome,
    pub counters: ScanCounters,
    pub took: std::time::Duration,
}

pub struct Scanners {
    devices: HashMap<u64, Sender<ScanJob>>,
    results_tx: Sender<ScanResult>,
    results: Receiver<ScanResult>,
    wake: Arc<OwnedFd>,
}

impl Scanners {
    pub fn new() -> Result<Scanners, Errno> {
        let (results_tx, results) = channel();
        let wake = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Scanners { devices: HashMap::new(), results_tx, results, wake: Arc::new(wake) })
    }

    /// Readable when results wait in [`Scanners::drain`].
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Queues `job` on the thread of device `dev`, starting the thread on first use. Gives the
    /// job back if no thread can take it.
    pub fn dispatch(&mut self, dev: u64, job: ScanJob) -> Result<(), Box<ScanJob>> {
        if !self.devices.contains_key(&dev) {
            let (tx, rx) = channel::<ScanJob>();
            let results = self.results_tx.clone();
            let wake = Arc::clone(&self.wake);
            let spawned = std::thread::Builder::new()
                .name(format!("scan-{dev:x}"))
                .spawn(move || scan_loop(rx, results, wake));
            if let Err(error) = spawned {
                warn!("starting a scanner thread for device {dev:#x}: {error}");
                return Err(Box::new(job));
            }
            self.devices.insert(dev, tx);
        }
        let Some(tx) = self.devices.get(&dev) else { return Err(Box::new(job)) };
        tx.send(job).map_err(|e| Box::new(e.0))
    }

    /// The results that arrived since the last call.
    pub fn drain(&self) -> Vec<ScanResult> {
        let mut count = [0u8; 8];
        // Only the wake-up matters, not the count.
        let _ = rustix::io::read(&*self.wake, &mut count);
        self.results.try_iter().collect()
    }
}

fn scan_loop(jobs: Receiver<ScanJob>, results: Sender<ScanResult>, wake: Arc<OwnedFd>) {
    let mut buf = vec![MaybeUninit::uninit(); 64 * 1024];
    for mut job in jobs {
        let mut counters = ScanCounters::default();
        let began = Instant::now();
        let outcome = poller::poll_state(
            job.fd.as_fd(),
            &mut job.state,
            job.is_dir,
            job.needs_stats,
            job.force_sync,
            &mut buf,
            &mut counters,
        );
        let result = ScanResult {
            object: job.object,
            generation: job.generation,
            scheduled: job.scheduled,
            state: job.state,
            outcome,
            counters,
            took: began.elapsed(),
        };
        if results.send(result).is_err() {
            return;
        }
        // The loop reads the channel on any wake-up; a full counter still wakes it.
        let _ = rustix::io::write(&*wake, &1u64.to_ne_bytes());
    }
}
