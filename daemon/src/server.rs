//! The daemon's state and its event loop.
//!
//! `Server` owns every fd: the listener, request connections, instances, the kernel inotify fd,
//! the poll timer and the signalfd. `run` is the thin epoll loop that dispatches each kind of
//! readiness to the module that handles it, on one thread:
//!
//! - `requests`: connections and channels, decoded and answered;
//! - `subscriptions`: `inotify_add_watch`/`inotify_rm_watch`, objects and their watches;
//! - `polling`: the schedule, and polls handed to and taken back from the device workers;
//! - `delivery`: what polls found, settled in order per device, to the instances' queues;
//! - `forwarding`: events of kernel watches;
//! - `reconfigure`: reloads and policy changes; `control`: the rest of `fakenotify-ctl`.
//!
//! Filesystem calls about remote mounts run on the device's worker thread (`workers`) and come
//! back to the loop as messages; a request waits for its own jobs only (`pending`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fakenotify_proto::record::Reply;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

use crate::budget::{self, QueueMeters};
use crate::config::{Config, DaemonSettings, WatchPolicy};
use crate::connections::Connections;
use crate::feeds::Feeds;
use crate::instance::Instance;
use crate::intake::Intake;
use crate::kernel::KernelWatches;
use crate::listener::Listener;
use crate::mounts::Mounts;
use crate::moves::MoveTracker;
use crate::pacing::Pacing;
use crate::peer_log::PeerLog;
use crate::pending::{PendingAdd, PendingPolicy, PolicyChange};
use crate::policy::{self, Origin, Policies, PolicyDefaults};
use crate::registry::Registry;
use crate::scan::{ScanCounters, ScanIo};
use crate::schedule::PollSchedule;
use crate::settling::Settling;
use crate::signals::{Signal, Signals};
use crate::slab::Slab;
use crate::status_line::{Serving, StatusLine};
use crate::watch::WatchedObject;
use crate::workers::Workers;

const TOKEN_SHIFT: u32 = 56;
const LISTENER: u64 = 1 << TOKEN_SHIFT;
const TIMER: u64 = 2 << TOKEN_SHIFT;
const SIGNALS: u64 = 3 << TOKEN_SHIFT;
const KERNEL: u64 = 4 << TOKEN_SHIFT;
pub(crate) const CONNECTION: u64 = 5 << TOKEN_SHIFT;
pub(crate) const INSTANCE: u64 = 6 << TOKEN_SHIFT;
const WORKED: u64 = 7 << TOKEN_SHIFT;
pub(crate) const CHANNEL: u64 = 8 << TOKEN_SHIFT;
/// An instance's own inotify fd (`InstanceKernel`).
pub(crate) const INSTANCE_KERNEL: u64 = 9 << TOKEN_SHIFT;
/// A `[[feed]]`'s stdout, stderr or pidfd (`feeds.rs`).
const FEED: u64 = 10 << TOKEN_SHIFT;

const ID_MASK: u64 = (1 << TOKEN_SHIFT) - 1;
/// After a request the loop polls epoll without sleeping for this long: an application adding
/// many watches sends its next request within microseconds, and a loop still awake answers it
/// without a wake-up, a quarter of an `inotify_add_watch` on a 2-core VM (`just bench`). Idle,
/// the loop sleeps as before.
const BUSY_AFTER_REQUEST: Duration = Duration::from_micros(50);

pub struct Server {
    pub(crate) epoll: OwnedFd,
    pub(crate) listener: Listener,
    pub(crate) timer: OwnedFd,
    /// The deadline the timer is armed for.
    pub(crate) armed: Option<Duration>,
    pub(crate) signals: Signals,
    pub(crate) kernel: KernelWatches,
    pub(crate) connections: Connections,
    /// Keyed by the inode of the application's end of the pair.
    pub(crate) instances: HashMap<u64, Instance>,
    /// The watched objects, by identity and by kernel wd.
    pub(crate) registry: Registry,
    pub(crate) schedule: PollSchedule,
    pub(crate) policies: Policies,
    pub(crate) settings: DaemonSettings,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) counters: ScanCounters,
    pub(crate) pacing: Pacing,
    pub(crate) next_cookie: u32,
    pub(crate) next_generation: u64,
    /// For the polls the loop makes itself (a baseline, a poll before a subscriber joins),
    /// with `statx` helpers of its own for slow mounts.
    pub(crate) scan_io: ScanIo,
    /// Instances with events queued since the last flush.
    pub(crate) dirty: BTreeSet<u64>,
    pub(crate) moves: MoveTracker,
    pub(crate) mounts: Mounts,
    /// The service manager's `STATUS=` line.
    pub(crate) status_line: StatusLine,
    pub(crate) workers: Workers,
    /// Receive buffer for request records, kept so a request costs no 60 KiB clear.
    pub(crate) recv_buf: Vec<u8>,
    /// Watches `(instance, wd)` whose next nameless IN_CLOSE_NOWRITE is the close of the fd
    /// that proved read access for them (`expect_own_close`).
    pub(crate) own_closes: HashSet<(u64, i32)>,
    /// Read buffer for instances' inotify fds.
    pub(crate) event_buf: Vec<u8>,
    pub(crate) running: bool,
    pub(crate) started: Duration,
    pub(crate) stats: Stats,
    /// Queued event bytes, metered per uid and for the whole daemon.
    pub(crate) queues: QueueMeters,
    /// The daemon's `RLIMIT_NOFILE`, from which each uid's share of fds is drawn.
    pub(crate) nofile: u64,
    /// Warnings about peers, rate-limited per uid.
    pub(crate) peer_log: PeerLog,
    /// Bytes of queues freed by closed instances since the heap was last trimmed.
    pub(crate) freed_since_trim: u64,
    /// Which received fds are served on the loop and which on a worker.
    pub(crate) intake: Intake,
    /// `inotify_add_watch` requests waiting for a worker.
    pub(crate) pending: Slab<PendingAdd>,
    /// Requests waiting for the next poll of an object before they join it, by object.
    pub(crate) joins: HashMap<usize, Vec<usize>>,
    /// Policy changes waiting for their paths, by ticket.
    pub(crate) policy_changes: HashMap<u64, PendingPolicy>,
    pub(crate) next_ticket: u64,
    /// Entries of all polled listings as last counted, and when that count was made.
    pub(crate) entries_total: Option<(Duration, u64)>,
    /// The `[[feed]]` commands and the polls their lines ask for.
    pub(crate) feeds: Feeds,
    /// What each device's polls found, on its way to the subscribers, in order.
    pub(crate) settling: Settling,
}

/// Counters for `status`, beyond what instances and the scan counters hold.
#[derive(Default)]
pub struct Stats {
    pub polls: u64,
    /// Events and overflows of instances already closed.
    pub closed_delivered: u64,
    pub closed_overflows: u64,
    /// Poll figures per policy index; the last slot is the default policy.
    pub per_policy: Vec<PolicyPolls>,
    pub errors: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Copy, Default)]
pub struct PolicyPolls {
    pub polls: u64,
    pub last: Duration,
    pub worst: Duration,
    /// Time spent polling, in all.
    pub time: Duration,
    /// What the polls did: syscalls, entries compared, changes found.
    pub scan: ScanCounters,
}

impl Stats {
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }

    pub fn reset_policies(&mut self, policies: usize) {
        self.per_policy = vec![PolicyPolls::default(); policies + 1];
    }
}

/// Why the daemon could not start.
#[derive(Debug)]
pub struct StartError {
    pub op: &'static str,
    pub errno: Errno,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.op, self.errno)
    }
}

pub(crate) fn now() -> Duration {
    let ts = rustix::time::clock_gettime(ClockId::Monotonic);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

pub(crate) fn reply(errno: Errno) -> Reply {
    Reply { errno: errno.raw_os_error(), value: -1 }
}

impl Server {
    /// A server on `listener`, handling `signals` (blocked by the caller before the socket was
    /// bound: a SIGTERM may come as soon as it accepts).
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        listener: Listener,
        signals: Signals,
    ) -> Result<Server, StartError> {
        let fail = |op| move |errno| StartError { op, errno };
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(fail("epoll_create1"))?;
        let timer = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .map_err(fail("timerfd_create"))?;
        let kernel = KernelWatches::new().map_err(fail("inotify_init1"))?;
        let watch_in = EventFlags::IN;
        epoll::add(&epoll, &listener.fd, EventData::new_u64(LISTENER), watch_in)
            .map_err(fail("epoll_ctl listener"))?;
        epoll::add(&epoll, &timer, EventData::new_u64(TIMER), watch_in)
            .map_err(fail("epoll_ctl timerfd"))?;
        epoll::add(&epoll, signals.fd(), EventData::new_u64(SIGNALS), watch_in)
            .map_err(fail("epoll_ctl signalfd"))?;
        epoll::add(&epoll, kernel.fd(), EventData::new_u64(KERNEL), watch_in)
            .map_err(fail("epoll_ctl inotify"))?;
        let workers = Workers::new().map_err(fail("eventfd"))?;
        epoll::add(&epoll, workers.wake_fd(), EventData::new_u64(WORKED), watch_in)
            .map_err(fail("epoll_ctl eventfd"))?;
        let file: Vec<(WatchPolicy, Origin)> =
            config.watches.iter().map(|w| (w.clone(), Origin::File)).collect();
        // Resolved on a worker (`run` waits for it a little): a policy path on a hung mount
        // must not keep the daemon from starting.
        let unresolved = Policies {
            list: file
                .into_iter()
                .map(|(watch, origin)| policy::Policy { watch, root: None, origin })
                .collect(),
            defaults: PolicyDefaults::of(&config.daemon),
        };
        let queues = QueueMeters::new(&config.daemon.limits);
        let feeds = Feeds::new(&config.feeds, FEED);
        Ok(Server {
            epoll,
            listener,
            timer,
            armed: None,
            signals,
            kernel,
            connections: Connections::default(),
            instances: HashMap::new(),
            registry: Registry::default(),
            schedule: PollSchedule::default(),
            policies: unresolved.clone(),
            settings: config.daemon,
            config_path,
            counters: ScanCounters::default(),
            pacing: Pacing::default(),
            next_cookie: 1,
            next_generation: 1,
            scan_io: ScanIo::new(),
            dirty: BTreeSet::new(),
            moves: MoveTracker::default(),
            mounts: Mounts::default(),
            status_line: StatusLine::default(),
            workers,
            recv_buf: Vec::new(),
            own_closes: HashSet::new(),
            event_buf: vec![0; 64 * 1024],
            running: true,
            started: now(),
            stats: Stats::default(),
            queues,
            nofile: budget::nofile(),
            peer_log: PeerLog::default(),
            freed_since_trim: 0,
            entries_total: None,
            intake: Intake::default(),
            pending: Slab::default(),
            joins: HashMap::new(),
            policy_changes: HashMap::new(),
            next_ticket: 1,
            feeds,
            settling: Settling::default(),
        })
        .map(|mut server| {
            server.stats.reset_policies(server.policies.list.len());
            server.change_policies(unresolved, PolicyChange::Start, None);
            server.await_start_policies();
            server
        })
    }

    /// Serves until TERM or INT.
    pub fn run(&mut self) -> Result<(), StartError> {
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 64];
        // Until when the loop looks for work without sleeping, after a request.
        let mut busy_until: Option<Instant> = None;
        const NO_WAIT: rustix::event::Timespec = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        while self.running {
            self.arm_timer();
            let busy = busy_until.is_some_and(|until| Instant::now() < until);
            let timeout = if busy { Some(&NO_WAIT) } else { None };
            let (ready, _) = match epoll::wait(&self.epoll, &mut events, timeout) {
                Ok(ready) => ready,
                Err(Errno::INTR) => continue,
                Err(errno) => return Err(StartError { op: "epoll_wait", errno }),
            };
            let ready: Vec<(u64, EventFlags)> =
                ready.iter().map(|e| (e.data.u64(), e.flags)).collect();
            for (token, flags) in ready {
                if matches!(token & !ID_MASK, LISTENER | CONNECTION | CHANNEL) {
                    busy_until = Some(Instant::now() + BUSY_AFTER_REQUEST);
                }
                match token & !ID_MASK {
                    LISTENER => self.accept(),
                    TIMER => self.poll_due(),
                    SIGNALS => self.on_signals(),
                    KERNEL => self.forward_kernel_events(),
                    CONNECTION => self.serve_connection((token & ID_MASK) as usize),
                    INSTANCE => self.on_instance_ready(token & ID_MASK, flags),
                    WORKED => self.on_worked(),
                    CHANNEL => self.serve_channel(token & ID_MASK),
                    INSTANCE_KERNEL => self.forward_instance_kernel(token & ID_MASK),
                    FEED => self.feeds.on_ready(self.epoll.as_fd(), token, now()),
                    _ => {}
                }
            }
            self.step_feeds();
            self.flush_dirty();
            self.report_status();
        }
        self.save_to_fd_store();
        info!(
            "stopping: {} instances, {} watched objects",
            self.instances.len(),
            self.registry.len()
        );
        Ok(())
    }

    fn on_signals(&mut self) {
        for signal in self.signals.drain() {
            match signal {
                Signal::Stop => self.running = false,
                Signal::Reload => {
                    // The outcome is logged by reload itself.
                    let _ = self.reload(None);
                }
            }
        }
    }

    /// Arms the timer for the next deadline, an absolute monotonic time; a syscall only when
    /// the deadline moved (most loop turns, a request served for one, leave it as it is).
    fn arm_timer(&mut self) {
        let next = [
            self.schedule.next_deadline(),
            self.connections.next_idle_deadline(),
            self.peer_log.next_summary().map(|at| Duration::from_secs(at.as_secs() + 1)),
            self.feeds.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        if next == self.armed {
            return;
        }
        let value = match next {
            // A zero value would disarm; any deadline in the past fires at once.
            Some(deadline) => {
                let at = deadline.max(Duration::from_nanos(1));
                Timespec { tv_sec: at.as_secs() as i64, tv_nsec: i64::from(at.subsec_nanos()) }
            }
            None => Timespec { tv_sec: 0, tv_nsec: 0 },
        };
        let spec = Itimerspec { it_interval: Timespec { tv_sec: 0, tv_nsec: 0 }, it_value: value };
        match rustix::time::timerfd_settime(&self.timer, TimerfdTimerFlags::ABSTIME, &spec) {
            Ok(_) => self.armed = next,
            Err(errno) => {
                self.armed = None;
                error!("timerfd_settime: {errno}");
            }
        }
    }

    /// Tells the service manager what the daemon serves, when that changed (every few seconds
    /// at most; nothing without `$NOTIFY_SOCKET`).
    fn report_status(&mut self) {
        let at = now().saturating_sub(self.started);
        if !self.status_line.may_send(at) || !crate::sd_notify::wanted() {
            return;
        }
        let serving = Serving {
            instances: self.instances.len(),
            watches: self.instances.values().map(Instance::watch_count).sum(),
            polled: self.registry.iter().filter(|(_, o)| o.is_polled()).count(),
            polls: self.stats.polls,
        };
        if let Some(line) = self.status_line.due(at, serving) {
            crate::sd_notify::notify(&format!("STATUS={line}"));
        }
    }
}

/// An object's path for a log line.
pub(crate) fn object_path(objects: &Slab<WatchedObject>, id: usize) -> &str {
    objects.get(id).map_or("(gone)", |o| o.path.as_str())
}
