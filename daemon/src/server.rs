//! The daemon's state and what happens on each kind of readiness.
//!
//! `Server` owns every fd: the listener, request connections, instances, the kernel inotify fd,
//! the poll timer and the signalfd. `run` is the thin epoll loop that dispatches tokens to the
//! handlers here, on one thread. Filesystem calls about remote mounts run on the device's worker
//! thread (`workers`): polls, first listings, the examination of an `inotify_add_watch`'s object
//! and the resolution of policy paths come back to the loop as messages, and a request waits
//! for its own jobs only (`pending`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fakenotify_proto::inotify::{
    watch_mask_is_valid, IN_ATTRIB, IN_CLOSE_NOWRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF,
    IN_IGNORED, IN_ISDIR, IN_MASK_CREATE, IN_MOVED_FROM, IN_MOVED_TO, IN_ONLYDIR, IN_Q_OVERFLOW,
};
use fakenotify_proto::record::{Record, Reply};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::fs::FileType;
use rustix::io::Errno;
use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

use crate::budget::{self, QueueMeters};
use crate::config::{Config, DaemonSettings, Mode, WatchPolicy};
use crate::connections::{Accepted, Connections, CONNECTION_IDLE, MAX_CONNECTIONS};
use crate::diff::Change;
use crate::fanout;
use crate::feeds::Feeds;
use crate::fstype;
use crate::grant;
use crate::instance::{Flush, Instance, QueuedEvent};
use crate::intake::{Intake, Reach};
use crate::kernel::{InstanceKernel, KernelWatches};
use crate::listener::Listener;
use crate::mounts::{Mounts, Observed};
use crate::moves::{self, MoveTracker};
use crate::pacing::Pacing;
use crate::pairing;
use crate::peer_log::PeerLog;
use crate::pending::{PendingAdd, PendingPolicy, PolicyChange, ReplyTo, Stage};
use crate::place::{self, PlaceJob, Placed};
use crate::policy::{self, Origin, Policies, PolicyDefaults, ReloadPlan};
use crate::poller::{self, PollOutcome};
use crate::registry::Registry;
use crate::relocate;
use crate::scan::{ScanCounters, ScanIo};
use crate::schedule::{self, PollSchedule, Slot};
use crate::settling::{Settling, Step};
use crate::signals::{Signal, Signals};
use crate::slab::Slab;
use crate::status_line::{Serving, StatusLine};
use crate::usage::Object;
use crate::watch::{PollState, Source, Subscriber, WatchedObject, STAT_EVENTS};
use crate::wire::{self, RecvError};
use crate::workers::{Done, Job, PollJob, PollResult, ResolveJob, Workers, PATHS_WORKER};

const TOKEN_SHIFT: u32 = 56;
const LISTENER: u64 = 1 << TOKEN_SHIFT;
const TIMER: u64 = 2 << TOKEN_SHIFT;
const SIGNALS: u64 = 3 << TOKEN_SHIFT;
const KERNEL: u64 = 4 << TOKEN_SHIFT;
const CONNECTION: u64 = 5 << TOKEN_SHIFT;
pub(crate) const INSTANCE: u64 = 6 << TOKEN_SHIFT;
const WORKED: u64 = 7 << TOKEN_SHIFT;
const CHANNEL: u64 = 8 << TOKEN_SHIFT;
/// An instance's own inotify fd (`InstanceKernel`).
const INSTANCE_KERNEL: u64 = 9 << TOKEN_SHIFT;
/// A `[[feed]]`'s stdout, stderr or pidfd (`feeds.rs`).
const FEED: u64 = 10 << TOKEN_SHIFT;

/// A poll running longer than this is reported in `status` as a slow or hung mount.
const SLOW_SCAN: Duration = Duration::from_secs(1);
/// Polls in a row that may miss a directory before it counts as gone whatever the listings say,
/// unless less than `MIN_MISSING` passed since the first: pairing a rename across directories
/// takes a poll of each, which the worker of a busy device may run late, so short
/// intervals get that long.
const MAX_MISSES: u8 = 5;
const MIN_MISSING: Duration = Duration::from_secs(2);
const ID_MASK: u64 = (1 << TOKEN_SHIFT) - 1;
/// After a request the loop polls epoll without sleeping for this long: an application adding
/// many watches sends its next request within microseconds, and a loop still awake answers it
/// without a wake-up, a quarter of an `inotify_add_watch` on a 2-core VM (`just bench`). Idle,
/// the loop sleeps as before.
const BUSY_AFTER_REQUEST: Duration = Duration::from_micros(50);

/// Where a new object's events come from (`Server::placement`).
struct Placement {
    governance: policy::Governance,
    remote: Option<&'static str>,
    poll: bool,
}

/// The answer to a request that joined a polled object, and whether it made a new wd.
struct Joined {
    reply: Reply,
    new_wd: bool,
}

/// Queue bytes freed by closing instances after which the heap is trimmed ([`give_memory_back`]).
const TRIM_AFTER: u64 = 1 << 20;

/// `inotify_add_watch` requests of one uid that may wait on workers at once; past it they get
/// ENOSPC. An application adds its watches one at a time per thread.
const MAX_PENDING_PER_UID: usize = 64;

pub struct Server {
    pub(crate) epoll: OwnedFd,
    pub(crate) listener: Listener,
    timer: OwnedFd,
    /// The deadline the timer is armed for.
    armed: Option<Duration>,
    signals: Signals,
    kernel: KernelWatches,
    connections: Connections,
    /// Keyed by the inode of the application's end of the pair.
    pub(crate) instances: HashMap<u64, Instance>,
    /// The watched objects, by identity and by kernel wd.
    pub(crate) registry: Registry,
    schedule: PollSchedule,
    pub(crate) policies: Policies,
    pub(crate) settings: DaemonSettings,
    config_path: Option<PathBuf>,
    pub(crate) counters: ScanCounters,
    pub(crate) pacing: Pacing,
    next_cookie: u32,
    next_generation: u64,
    /// For the polls the loop makes itself (a baseline, a poll before a subscriber joins),
    /// with `statx` helpers of its own for slow mounts.
    scan_io: ScanIo,
    /// Instances with events queued since the last flush.
    dirty: BTreeSet<u64>,
    moves: MoveTracker,
    pub(crate) mounts: Mounts,
    /// The service manager's `STATUS=` line.
    status_line: StatusLine,
    workers: Workers,
    /// Receive buffer for request records, kept so a request costs no 60 KiB clear.
    recv_buf: Vec<u8>,
    /// Watches `(instance, wd)` whose next nameless IN_CLOSE_NOWRITE is the close of the fd
    /// that proved read access for them (`expect_own_close`).
    own_closes: HashSet<(u64, i32)>,
    /// Read buffer for instances' inotify fds.
    event_buf: Vec<u8>,
    pub(crate) running: bool,
    pub(crate) started: Duration,
    pub(crate) stats: Stats,
    /// Queued event bytes, metered per uid and for the whole daemon.
    pub(crate) queues: QueueMeters,
    /// The daemon's `RLIMIT_NOFILE`, from which each uid's share of fds is drawn.
    pub(crate) nofile: u64,
    /// Warnings about peers, rate-limited per uid.
    peer_log: PeerLog,
    /// Bytes of queues freed by closed instances since the heap was last trimmed.
    freed_since_trim: u64,
    /// Which received fds are served on the loop and which on a worker.
    pub(crate) intake: Intake,
    /// `inotify_add_watch` requests waiting for a worker.
    pub(crate) pending: Slab<PendingAdd>,
    /// Requests waiting for the next poll of an object before they join it, by object.
    joins: HashMap<usize, Vec<usize>>,
    /// Policy changes waiting for their paths, by ticket.
    pub(crate) policy_changes: HashMap<u64, PendingPolicy>,
    next_ticket: u64,
    /// Entries of all polled listings as last counted, and when that count was made.
    pub(crate) entries_total: Option<(Duration, u64)>,
    /// The `[[feed]]` commands and the polls their lines ask for.
    pub(crate) feeds: Feeds,
    /// What each device's polls found, on its way to the subscribers, in order.
    settling: Settling,
}

/// The jobs stuck on one worker, for `status`.
pub(crate) struct StuckJobs {
    pub worker: u64,
    /// What the oldest is: "poll", "add_watch", "policy paths", "relocation".
    pub job: &'static str,
    /// The object it is about, as its path when it is known.
    pub what: String,
    pub running: Duration,
    /// Jobs waiting there for longer than `SLOW_SCAN`, the oldest among them.
    pub count: u64,
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

fn reply(errno: Errno) -> Reply {
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

    /// Re-reads the configuration file; an invalid one is rejected and the old one stays. A
    /// valid one takes effect once a worker has found its policies' paths, and `reply_to` (a
    /// `ctl reload`) gets the answer then.
    pub(crate) fn reload(&mut self, reply_to: Option<usize>) -> Result<(), String> {
        let Some(path) = self.config_path.clone() else {
            info!("reload: no configuration file was given; nothing to re-read");
            return Err("no configuration file was given at start; nothing to re-read".into());
        };
        match Config::load(&path) {
            Ok(config) => {
                let plan = ReloadPlan::new(&config.watches, &self.policies.list);
                let summary = plan.summary();
                let unresolved = Policies {
                    list: plan
                        .watches
                        .into_iter()
                        .map(|(watch, origin)| policy::Policy { watch, root: None, origin })
                        .collect(),
                    defaults: PolicyDefaults::of(&config.daemon),
                };
                let change = PolicyChange::Reload { config: Box::new(config), path, summary };
                self.change_policies(unresolved, change, reply_to);
                Ok(())
            }
            Err(error) => {
                error!("reload rejected, keeping the running configuration: {error}");
                Err(format!("reload rejected, keeping the running configuration: {error}"))
            }
        }
    }

    /// Hands `policies` to a worker to find their paths; `change` is made when they come back
    /// (`policies_resolved`).
    pub(crate) fn change_policies(
        &mut self,
        policies: Policies,
        change: PolicyChange,
        reply_to: Option<usize>,
    ) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if let Err(job) =
            self.workers.dispatch(PATHS_WORKER, Job::Resolve(ResolveJob { ticket, policies }))
        {
            // No thread: the paths are found here, as before there were workers.
            let Job::Resolve(job) = *job else { return };
            let resolved = crate::workers::resolve(job.policies);
            let pending = PendingPolicy { change, reply_to, since: now() };
            return self.apply_policy_change(pending, resolved);
        }
        if let Some(id) = reply_to {
            if let Some(conn) = self.connections.get_mut(id) {
                conn.waiting = true;
            }
        }
        self.policy_changes.insert(ticket, PendingPolicy { change, reply_to, since: now() });
    }

    /// Waits a little for the configuration's policies at start, so that the first clients
    /// (and objects restored from the fd store) are placed by them. A path on a hung mount
    /// makes the daemon start without them; they apply once found.
    fn await_start_policies(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.policy_changes.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!("policy paths not found within 2s (a hung mount?); they apply once found");
                return;
            }
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let wake = self.workers.wake_fd();
            let mut fds = [rustix::event::PollFd::new(&wake, rustix::event::PollFlags::IN)];
            if let Err(errno) = rustix::event::poll(&mut fds, Some(&timeout)) {
                if errno != Errno::INTR {
                    return;
                }
            }
            self.on_worked();
        }
    }

    /// Makes a policy change whose paths a worker found, and answers who asked.
    fn apply_policy_change(&mut self, pending: PendingPolicy, resolved: Policies) {
        let answer = match pending.change {
            PolicyChange::Start => {
                warn_missing_policies(&resolved);
                self.set_policies(resolved);
                return;
            }
            PolicyChange::Reload { config, path, summary } => {
                crate::log::set_level(config.daemon.log_level);
                warn_missing_policies(&resolved);
                self.set_policies(resolved);
                self.queues.set_limits(&config.daemon.limits);
                self.feeds.reconfigure(&config.feeds);
                self.settings = config.daemon;
                let message = format!(
                    "reloaded {}: {} watch policies{summary}",
                    path.display(),
                    self.policies.list.len()
                );
                info!("reload: {}", message.trim_start_matches("reloaded "));
                Ok(message)
            }
            PolicyChange::Add { path, uid } => {
                let Some(added) = resolved.list.into_iter().next() else { return };
                let found = added.root.is_some();
                let mut list = self.policies.list.clone();
                let replaced = list.iter().position(|p| p.watch.path == path);
                match replaced {
                    Some(index) => list[index] = added,
                    None => list.push(added),
                }
                let verb = if replaced.is_some() { "replaced" } else { "added" };
                self.set_policies(Policies { list, defaults: self.policies.defaults });
                info!("policy {} {verb} by uid {uid}", path.display());
                let note = if found {
                    ""
                } else {
                    " (path not found: it applies once it exists and is re-added)"
                };
                Ok(format!("policy {} {verb}{note}", path.display()))
            }
        };
        if let Some(id) = pending.reply_to {
            self.answer_control(id, answer);
        }
    }

    /// Sends the answer to a control request that waited for a worker.
    fn answer_control(&mut self, id: usize, answer: Result<String, String>) {
        let response = match answer {
            Ok(message) => fakenotify_ctl::message::Response::Done(message),
            Err(message) => fakenotify_ctl::message::Response::Failed(message),
        };
        let Some(conn) = self.connections.get_mut(id) else { return };
        conn.waiting = false;
        conn.opened = now();
        let bytes = response.to_bytes();
        if wire::send_record(conn.fd.as_fd(), &Record::ControlReply(&bytes), &[]).is_err() {
            self.close_connection(id);
        }
    }

    /// Replaces the policies and applies them to every watched object.
    pub(crate) fn set_policies(&mut self, policies: Policies) {
        self.policies = policies;
        self.stats.reset_policies(self.policies.list.len());
        self.pacing.reset();
        self.regovern();
    }

    /// Applies the current policies to every watched object; intervals take effect at its next
    /// poll. Each polled object keeps its ancestry, so this makes no filesystem call.
    fn regovern(&mut self) {
        for (_, object) in self.registry.iter_mut() {
            // Kernel watches have no interval to change.
            let Source::Polled(state) = &object.source else { continue };
            let mode = object.governance.mode;
            object.governance = if state.ancestry.is_empty() {
                self.policies.govern(&[object.id])
            } else {
                self.policies.govern(&state.ancestry)
            };
            object.governance.mode = mode;
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

    fn accept(&mut self) {
        if self.connections.len() >= MAX_CONNECTIONS {
            self.close_oldest_connection("too many open request connections");
        }
        let listener = self.listener.path.display();
        let id = match self.connections.accept(self.listener.fd.as_fd(), now()) {
            Accepted::New(id) => id,
            Accepted::Drained => return,
            Accepted::OutOfFds(errno) => {
                // Refused rather than spin on a listener that stays readable.
                warn!("accept on {listener}: {errno}; refusing a connection");
                self.stats.error("accept: out of file descriptors");
                return self.close_oldest_connection("out of file descriptors");
            }
            Accepted::Failed(op, errno) => return warn!("{op} on {listener}: {errno}"),
        };
        let Some(conn) = self.connections.get(id) else { return };
        if let Err(errno) = epoll::add(
            &self.epoll,
            &conn.fd,
            EventData::new_u64(CONNECTION | id as u64),
            EventFlags::IN,
        ) {
            warn!("epoll_ctl for a connection: {errno}");
            self.connections.remove(id);
            return;
        }
        // A client sends its request right after connecting: it is usually there already,
        // and answering now saves a trip through epoll_wait. One per wake-up: the listener is
        // level-triggered and reports the next one, and a lone request costs no extra accept
        // that finds nothing.
        self.serve_connection(id);
    }

    fn close_oldest_connection(&mut self, why: &str) {
        if let Some((id, uid, pid)) = self.connections.to_evict() {
            self.warn_peer(
                uid,
                "oldest connection",
                format_args!("client pid {pid} uid {uid}: {why}; closing its oldest connection"),
            );
            self.stats.error(format!("connection closed: {why}"));
            self.close_connection(id);
        }
    }

    /// A warning about the peer `uid`, rate-limited per uid and `kind` (`peer_log`).
    pub(crate) fn warn_peer(
        &mut self,
        uid: u32,
        kind: &'static str,
        message: std::fmt::Arguments<'_>,
    ) {
        if !crate::log::enabled(crate::config::LogLevel::Warn) {
            return;
        }
        let verdict = self.peer_log.warn(uid, kind, now());
        if verdict.suppressed > 0 {
            warn_suppressed(uid, kind, verdict.suppressed);
        }
        if verdict.write {
            warn!("{message}");
        }
    }

    /// Summarises the warnings left out in peer-log windows that have ended.
    fn sweep_peer_log(&mut self) {
        for (uid, kind, count) in self.peer_log.sweep(now()) {
            warn_suppressed(uid, kind, count);
        }
    }

    /// Closes request connections that have not finished a request in `CONNECTION_IDLE`.
    fn close_idle_connections(&mut self) {
        for (id, uid, pid) in self.connections.idle(now()) {
            self.warn_peer(
                uid,
                "idle",
                format_args!(
                    "client pid {pid} uid {uid}: no request within {CONNECTION_IDLE:?}; \
                     closing its connection"
                ),
            );
            self.stats.error("connection closed: idle");
            self.close_connection(id);
        }
    }

    fn close_connection(&mut self, id: usize) {
        // Closing the fd (its only copy) takes it out of the epoll set.
        if self.connections.remove(id).is_some_and(|c| c.waiting) {
            self.cancel_pending(|to, _| to == ReplyTo::Connection(id));
            for pending in self.policy_changes.values_mut() {
                if pending.reply_to == Some(id) {
                    pending.reply_to = None;
                }
            }
        }
    }

    /// Drops the requests whose client went away: each is forgotten when its job comes back.
    fn cancel_pending(&mut self, gone: impl Fn(ReplyTo, u64) -> bool) {
        for (_, request) in self.pending.iter_mut() {
            if gone(request.reply_to, request.key) {
                request.cancelled = true;
            }
        }
    }

    /// Answers one request. The connection stays in the (level-triggered) epoll set, so a
    /// further request or the peer's close wakes the loop again.
    fn serve_connection(&mut self, id: usize) {
        let Some(conn) = self.connections.get(id) else { return };
        let (uid, pid) = (conn.uid, conn.pid);
        let mut received = match wire::recv_record(conn.fd.as_fd(), &mut self.recv_buf) {
            Ok(received) => received,
            Err(RecvError::WouldBlock) => return,
            Err(RecvError::Closed) => return self.close_connection(id),
            Err(error) => {
                self.warn_peer(
                    uid,
                    "protocol",
                    format_args!("client pid {pid} uid {uid}: {error}; closing its connection"),
                );
                self.stats.error("protocol");
                self.answer_bad_version(id, &error);
                return self.close_connection(id);
            }
        };
        let answer = match received.record() {
            Ok(Record::Register) => {
                let answer = self.register(uid, pid, &received.fds);
                drop(received);
                return self.bind_channel(id, answer);
            }
            // The application's end comes first, as proof of ownership; the object after it.
            Ok(record @ (Record::AddWatch { .. } | Record::RmWatch { .. })) => {
                match received.fds.first().and_then(|app_end| self.instance_key(app_end)) {
                    Some(key) => {
                        let record = detach(record);
                        // The object, if any, comes last.
                        let object = received.fds.pop().filter(|_| record.fds() == 2);
                        let to = ReplyTo::Connection(id);
                        self.watch_request(key, uid, record, object, to).unwrap_or_else(|| {
                            if let Some(conn) = self.connections.get_mut(id) {
                                conn.waiting = true;
                            }
                            Reply::IN_PROGRESS
                        })
                    }
                    None => reply(Errno::INVAL),
                }
            }
            Ok(Record::Control(body)) => {
                // The answer to a policy change comes once a worker has found its paths.
                let Some(response) = self.control(uid, pid, body, id) else {
                    let Some(conn) = self.connections.get(id) else { return };
                    let later = Record::Reply(Reply::IN_PROGRESS);
                    if wire::send_record(conn.fd.as_fd(), &later, &[]).is_err() {
                        self.close_connection(id);
                    }
                    return;
                };
                let Some(conn) = self.connections.get(id) else { return };
                let bytes = response.to_bytes();
                if wire::send_record(conn.fd.as_fd(), &Record::ControlReply(&bytes), &[]).is_err() {
                    return self.close_connection(id);
                }
                return;
            }
            Ok(record) => {
                let kind = record.kind();
                self.warn_peer(
                    uid,
                    "protocol",
                    format_args!(
                        "client pid {pid} uid {uid}: unexpected {kind:?} record; closing its \
                         connection"
                    ),
                );
                self.stats.error("protocol");
                return self.close_connection(id);
            }
            Err(error) => {
                self.warn_peer(
                    uid,
                    "protocol",
                    format_args!("client pid {pid} uid {uid}: {error}; closing its connection"),
                );
                self.stats.error("protocol");
                self.answer_bad_version(id, &error);
                return self.close_connection(id);
            }
        };
        // Events the request queued (IN_IGNORED of an rm_watch) are readable before its reply,
        // as with the kernel; the fds it carried are closed after the reply, off the client's
        // wait.
        self.flush_dirty();
        let Some(conn) = self.connections.get(id) else { return };
        if wire::send_record(conn.fd.as_fd(), &Record::Reply(answer), &[]).is_err() {
            self.close_connection(id);
        }
        drop(received);
    }

    /// Answers a Register. Once it succeeded, the connection leaves the pool of short request
    /// connections (no idle timeout, not counted against their cap) and becomes the instance's
    /// request channel, which lives as long as the instance or until its peer closes it.
    fn bind_channel(&mut self, id: usize, answer: Result<u64, Errno>) {
        let Some(conn) = self.connections.get(id) else { return };
        let reply = match answer {
            Ok(_) => Reply { errno: 0, value: 0 },
            Err(errno) => reply(errno),
        };
        if wire::send_record(conn.fd.as_fd(), &Record::Reply(reply), &[]).is_err() {
            return self.close_connection(id);
        }
        let Ok(key) = answer else { return };
        let Some(conn) = self.connections.remove(id) else { return };
        if let Err(errno) =
            epoll::modify(&self.epoll, &conn.fd, EventData::new_u64(CHANNEL | key), EventFlags::IN)
        {
            warn!("epoll_ctl for the request channel of instance {key}: {errno}");
            return;
        }
        if let Some(instance) = self.instances.get_mut(&key) {
            instance.channel = Some(conn.fd);
        }
    }

    /// Answers one request on an instance's channel: AddWatch carries the object's fd alone,
    /// RmWatch no fd, since the channel itself names the instance. A closed or misbehaving
    /// channel is dropped; the instance and its watches stay, and the process falls back to a
    /// short connection per request.
    fn serve_channel(&mut self, key: u64) {
        let Some(instance) = self.instances.get(&key) else { return };
        let Some(channel) = instance.channel.as_ref() else { return };
        let (uid, pid) = (instance.uid, instance.pid);
        let mut received = match wire::recv_record(channel.as_fd(), &mut self.recv_buf) {
            Ok(received) => received,
            Err(RecvError::WouldBlock) => return,
            Err(RecvError::Closed) => return self.drop_channel(key),
            Err(error) => return self.channel_misbehaved(key, uid, pid, &error),
        };
        let answer = match received.channel_record() {
            Ok(record) => {
                let record = detach(record);
                let object = received.fds.pop();
                self.watch_request(key, uid, record, object, ReplyTo::Channel(key))
                    .unwrap_or(Reply::IN_PROGRESS)
            }
            Err(error) => return self.channel_misbehaved(key, uid, pid, &error),
        };
        // As in `serve_connection`: queued events first, the carried fds closed after the reply.
        self.flush_dirty();
        let Some(channel) = self.instances.get(&key).and_then(|i| i.channel.as_ref()) else {
            return;
        };
        if wire::send_record(channel.as_fd(), &Record::Reply(answer), &[]).is_err() {
            self.drop_channel(key);
        }
        drop(received);
    }

    /// An AddWatch or RmWatch for instance `key`, from either way in; `object` is the fd to
    /// watch (the record's fd count was checked when it was received), taken so that it is
    /// closed before any kernel watch is added.
    /// None when the answer comes later, to `to`: the object lies on a remote mount, and the
    /// request waits for that device's worker.
    fn watch_request(
        &mut self,
        key: u64,
        uid: u32,
        record: Record<'_>,
        object: Option<OwnedFd>,
        to: ReplyTo,
    ) -> Option<Reply> {
        Some(match (record, object) {
            (Record::AddWatch { mask }, Some(object_fd)) => {
                if !watch_mask_is_valid(mask) {
                    return Some(reply(Errno::INVAL));
                }
                if let Reach::Remote { worker } = self.intake.reach(object_fd.as_fd()) {
                    return self.start_remote_add(key, uid, mask, object_fd, worker, to);
                }
                // The fd must prove read access for the peer.
                match grant::check(object_fd, uid) {
                    Ok(granted) => {
                        let answer = self.add_watch(key, uid, mask, &granted.fd);
                        if answer.errno == 0 && granted.opened {
                            self.expect_own_close(key, answer.value);
                        }
                        // The proof's open file may end here, after the watch exists.
                        drop(granted);
                        answer
                    }
                    Err(errno) => {
                        debug!("instance {key} (uid {uid}): add_watch refused: {errno}");
                        self.stats.error("refused: unproven read access");
                        reply(errno)
                    }
                }
            }
            (Record::RmWatch { wd }, _) => self.rm_watch(key, wd),
            _ => reply(Errno::INVAL),
        })
    }

    /// The client opened the object to prove read access, and that open file's last close, here
    /// or in the client, comes after the watch was added. A kernel watch that reports
    /// IN_CLOSE_NOWRITE will see it: the subscriber must not, as a real `inotify_add_watch`
    /// opens nothing. Another close of the object at the same moment is indistinguishable from
    /// it, so whichever comes first is the one held back.
    fn expect_own_close(&mut self, key: u64, wd: i32) {
        let Some(instance) = self.instances.get(&key) else { return };
        if let Some(events) = instance.kernel.as_ref().and_then(|k| k.events_of(wd)) {
            if events & IN_CLOSE_NOWRITE != 0 {
                self.own_closes.insert((key, wd));
            }
            return;
        }
        let Some(id) = instance.watches.get(&wd).map(|w| w.object) else { return };
        let Some(object) = self.registry.get(id) else { return };
        let reports_close = object
            .subscribers
            .iter()
            .any(|s| s.instance == key && s.wd == wd && s.wants(IN_CLOSE_NOWRITE));
        if matches!(object.source, Source::Kernel { .. }) && reports_close {
            self.own_closes.insert((key, wd));
        }
    }

    /// A malformed record on instance `key`'s channel: logged (rate-limited) and the channel
    /// dropped; the instance and its watches stay.
    fn channel_misbehaved(&mut self, key: u64, uid: u32, pid: i32, error: &dyn std::fmt::Display) {
        self.warn_peer(
            uid,
            "protocol",
            format_args!(
                "instance {key} (pid {pid} uid {uid}): {error}; closing its request channel"
            ),
        );
        self.stats.error("protocol");
        self.drop_channel(key);
    }

    fn drop_channel(&mut self, key: u64) {
        // Closing the fd (its only copy) takes it out of the epoll set.
        if let Some(instance) = self.instances.get_mut(&key) {
            instance.channel = None;
        }
        self.cancel_pending(|to, _| to == ReplyTo::Channel(key));
    }

    /// A peer of another protocol version gets a reply it can recognise before the close.
    fn answer_bad_version(&self, id: usize, error: &RecvError) {
        if let (
            RecvError::Decode(fakenotify_proto::record::DecodeError::Version { .. }),
            Some(conn),
        ) = (error, self.connections.get(id))
        {
            // The connection is closed next whether or not the peer takes this.
            let _ = wire::send_record(
                conn.fd.as_fd(),
                &Record::Reply(reply(Errno::PROTONOSUPPORT)),
                &[],
            );
        }
    }

    /// A new instance; its key is the inode of the application's end.
    fn register(&mut self, uid: u32, pid: i32, fds: &[OwnedFd]) -> Result<u64, Errno> {
        let [app_end, daemon_end] = fds else { return Err(Errno::INVAL) };
        for fd in fds {
            let is_seqpacket = rustix::net::sockopt::socket_type(fd)
                .map(|t| t == rustix::net::SocketType::SEQPACKET);
            if is_seqpacket != Ok(true) {
                return Err(Errno::INVAL);
            }
        }
        let Ok(key) = rustix::fs::fstat(app_end).map(|st| st.st_ino) else {
            return Err(Errno::BADF);
        };
        // Nothing is written to either socket before both peers are known to be the registering
        // process's own, or the two to be one pair.
        // The peers' credentials are two getsockopt calls; sock_diag, a netlink socket and two
        // round trips, is asked only when they do not settle it.
        let own_pair = pairing::both_peers_made_by(app_end.as_fd(), daemon_end.as_fd(), pid, uid);
        if !own_pair && pairing::are_one_pair(app_end.as_fd(), daemon_end.as_fd()) != Ok(true) {
            debug!("uid {uid} (pid {pid}): Register with two sockets that are no pair");
            self.stats.error("refused: register of no pair");
            return Err(Errno::INVAL);
        }
        if self.instances.contains_key(&key) {
            return Err(Errno::EXIST);
        }
        let owned = self.instances.values().filter(|i| i.uid == uid).count();
        if owned >= self.settings.limits.max_user_instances as usize {
            // Counted, not logged: a client looping on a limit must not flood the log.
            debug!(
                "uid {uid} (pid {pid}) reached max_user_instances {}",
                self.settings.limits.max_user_instances
            );
            self.stats.error("limit: max_user_instances");
            return Err(Errno::MFILE);
        }
        // An instance holds two fds: its socket and its request channel.
        if self.user_use(uid).fds + crate::usage::FDS_PER_INSTANCE > self.user_fd_share() {
            debug!("uid {uid} (pid {pid}) reached its share of the daemon's fds");
            self.stats.error("limit: max_user_fds");
            return Err(Errno::MFILE);
        }
        let Ok(socket) = daemon_end.try_clone() else { return Err(Errno::MFILE) };
        if let Err(errno) =
            epoll::add(&self.epoll, &socket, EventData::new_u64(INSTANCE | key), EventFlags::RDHUP)
        {
            warn!("epoll_ctl for an instance: {errno}");
            return Err(Errno::NOMEM);
        }
        let max_queued = self.settings.limits.max_queued_events as usize;
        let charge = self.queues.charge_for(uid);
        let mut instance = Instance::new(socket, uid, pid, max_queued, charge);
        // The kernel's own EMFILE when the user is at max_user_instances, as inotify_init1.
        instance.kernel = Some(self.instance_kernel(key, uid)?);
        self.instances.insert(key, instance);
        info!(
            "instance {key}: registered by pid {pid} ({}) uid {uid}",
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim_end()
                .escape_debug()
        );
        Ok(key)
    }

    /// An instance's inotify fd, charged to `uid`, in the epoll set.
    pub(crate) fn instance_kernel(&self, key: u64, uid: u32) -> Result<InstanceKernel, Errno> {
        let kernel = InstanceKernel::new_as(uid).inspect_err(|errno| {
            debug!("instance {key}: inotify_init1 as uid {uid}: {errno}");
        })?;
        let token = EventData::new_u64(INSTANCE_KERNEL | key);
        epoll::add(&self.epoll, kernel.fd(), token, EventFlags::IN).map_err(|errno| {
            warn!("epoll_ctl for an instance's inotify fd: {errno}");
            Errno::NOMEM
        })?;
        Ok(kernel)
    }

    fn instance_key(&self, fd: &OwnedFd) -> Option<u64> {
        let st = rustix::fs::fstat(fd).ok()?;
        (FileType::from_raw_mode(st.st_mode) == FileType::Socket
            && self.instances.contains_key(&st.st_ino))
        .then_some(st.st_ino)
    }

    /// `inotify_add_watch` for instance `key` on the object the client opened.
    fn add_watch(&mut self, key: u64, uid: u32, mask: u32, object_fd: &OwnedFd) -> Reply {
        if !watch_mask_is_valid(mask) {
            return reply(Errno::INVAL);
        }
        let st = match rustix::fs::fstat(object_fd) {
            Ok(st) => st,
            // Gone on the server since the application's path lookup.
            Err(errno) if poller::is_gone(errno) => return reply(Errno::NOENT),
            Err(_) => return reply(Errno::BADF),
        };
        let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
        if mask & IN_ONLYDIR != 0 && !is_dir {
            return reply(Errno::NOTDIR);
        }
        let identity = (st.st_dev, st.st_ino);
        let mut existing = self.registry.find(identity);
        if existing.is_some_and(|id| self.registry.get(id).is_some_and(WatchedObject::is_polled))
            && place::fd_is_stale(object_fd.as_fd(), identity.1, true)
        {
            // A path the server no longer has, opened through a dentry the kernel still
            // caches (FUSE keeps one for a second): the kernel would not find the path.
            return reply(Errno::NOENT);
        }
        if let Some(id) = existing.filter(|&id| self.is_stale(id)) {
            // The inode number was freed and reused by the object being added: the watched
            // object is gone, as the kernel would have said when the old inode died.
            self.object_gone(id);
            existing = None;
        }
        if let Some(id) = existing {
            if let Some(wd) = self.instances.get(&key).and_then(|i| i.wd_for(id)) {
                return self.update_watch(id, key, wd, mask, object_fd);
            }
        }
        let placement = match existing {
            Some(_) => None,
            None => Some(self.placement(object_fd, is_dir, identity)),
        };
        let local = placement.as_ref().is_some_and(|p| !p.poll);
        let instance_kernel = self.instances.get(&key).and_then(|i| i.kernel.as_ref());
        let rewatch = local && instance_kernel.is_some_and(|k| k.watches(identity));
        let watches: usize =
            self.instances.values().filter(|i| i.uid == uid).map(Instance::watch_count).sum();
        let limit = self.settings.limits.max_user_watches as usize;
        if local && (rewatch || watches < limit) {
            return self.add_kernel_watch(key, mask, object_fd, identity, placement.as_ref());
        }
        if watches >= limit {
            debug!("uid {uid} reached max_user_watches {}", self.settings.limits.max_user_watches);
            self.stats.error("limit: max_user_watches");
            return reply(Errno::NOSPC);
        }
        if let Some(id) =
            existing.filter(|&id| self.registry.get(id).is_some_and(|o| o.is_polled()))
        {
            if let Err(errno) = self.polled_budget(uid, id, Object::Joined) {
                return reply(errno);
            }
        }
        let (id, joined) = match existing {
            Some(id) => {
                self.poll_before_joining(id, mask);
                (id, true)
            }
            None => {
                let placement = placement.expect("a new object was placed above");
                match self.create_placed_object(object_fd, is_dir, identity, mask, placement) {
                    Ok(id) => (id, false),
                    Err(errno) => return reply(errno),
                }
            }
        };
        let answer = self.subscribe(key, uid, mask, id).reply;
        if answer.errno != 0 {
            // A new object over the uid's budget goes again at once.
            self.drop_if_unwatched(id);
        } else if joined {
            // A new kernel watch already has this mask.
            self.refresh_kernel_mask(id, object_fd);
        }
        answer
    }

    /// `inotify_add_watch` on an object of a remote mount: what needs its filesystem goes to the
    /// device's worker ([`place::place`]), and the request waits for it ([`Server::on_placed`]).
    fn start_remote_add(
        &mut self,
        key: u64,
        uid: u32,
        mask: u32,
        fd: OwnedFd,
        worker: u64,
        reply_to: ReplyTo,
    ) -> Option<Reply> {
        // What waits costs memory and a worker's time: each uid has a bound, as for watches.
        let waiting = self.pending.iter().filter(|(_, p)| p.uid == uid && !p.cancelled).count();
        if waiting >= MAX_PENDING_PER_UID {
            self.warn_peer(
                uid,
                "pending",
                format_args!(
                    "uid {uid}: {waiting} inotify_add_watch requests wait on slow mounts; \
                     refusing more with ENOSPC"
                ),
            );
            self.stats.error("limit: pending requests per uid");
            return Some(reply(Errno::NOSPC));
        }
        let request = self.pending.insert(PendingAdd {
            key,
            uid,
            mask,
            reply_to,
            since: now(),
            worker,
            stage: Stage::Placing,
            cancelled: false,
        });
        let watched = self.registry.watched();
        let job = PlaceJob { request, fd, uid, mask, watched };
        if self.workers.dispatch(worker, Job::Place(job)).is_err() {
            self.pending.remove(request);
            return Some(reply(Errno::NOMEM));
        }
        None
    }

    /// The worker examined the object of request `request`: it joins a polled object, or a new
    /// one is made, whose first listing runs on the worker too.
    fn on_placed(&mut self, request: usize, placed: Result<Placed, Errno>) {
        let Some(pending) = self.pending.get(request) else { return };
        if pending.cancelled {
            self.pending.remove(request);
            return;
        }
        let (key, uid, mask) = (pending.key, pending.uid, pending.mask);
        let placed = match placed {
            Ok(placed) => placed,
            Err(errno) => {
                if errno == Errno::ACCESS {
                    debug!("instance {key} (uid {uid}): add_watch refused: {errno}");
                    self.stats.error("refused: unproven read access");
                }
                self.answer_add(request, reply(errno));
                return;
            }
        };
        if mask & IN_ONLYDIR != 0 && !placed.is_dir {
            self.answer_add(request, reply(Errno::NOTDIR));
            return;
        }
        let existing = self.registry.find(placed.identity);
        let polled = existing.filter(|&id| self.registry.get(id).is_some_and(|o| o.is_polled()));
        if polled.is_some() && placed.stale {
            self.answer_add(request, reply(Errno::NOENT));
            return;
        }
        let governance = self.policies.govern(&placed.ancestry);
        let poll = match governance.mode {
            Mode::Poll => true,
            Mode::Inotify => false,
            Mode::Auto => placed.remote.is_some(),
        };
        if polled.is_none() && (existing.is_some() || !poll) {
            // A kernel watch: a policy asks for one on this mount, or the object is one the
            // shared inotify fd watches since a restart. Added here, as for a local object.
            let answer = self.add_watch(key, uid, mask, &placed.kept);
            {
                self.answer_add(request, answer);
                return;
            }
        }
        let rewatch = polled
            .is_some_and(|id| self.instances.get(&key).is_some_and(|i| i.wd_for(id).is_some()));
        if !rewatch {
            let watches: usize =
                self.instances.values().filter(|i| i.uid == uid).map(Instance::watch_count).sum();
            if watches >= self.settings.limits.max_user_watches as usize {
                debug!("uid {uid} reached max_user_watches");
                self.stats.error("limit: max_user_watches");
                {
                    self.answer_add(request, reply(Errno::NOSPC));
                    return;
                }
            }
        }
        match polled {
            Some(id) => {
                if rewatch && mask & IN_MASK_CREATE != 0 {
                    self.answer_add(request, reply(Errno::EXIST));
                    return;
                }
                if !rewatch {
                    if let Err(errno) = self.polled_budget(uid, id, Object::Joined) {
                        self.answer_add(request, reply(errno));
                        return;
                    }
                }
                self.join_after_poll(request, id);
            }
            None => self.create_remote_object(request, placed, governance),
        }
    }

    /// A new polled object for request `request`, in the registry at once (so that requests
    /// for the same object join it) and listed for the first time on its worker.
    fn create_remote_object(
        &mut self,
        request: usize,
        placed: Placed,
        governance: policy::Governance,
    ) {
        let Some(mask) = self.pending.get(request).map(|p| p.mask) else { return };
        let generation = self.next_generation;
        self.next_generation += 1;
        let Placed { identity, is_dir, remote, kept, parent, path, ancestry, .. } = placed;
        self.counters.add(&placed.counters);
        let first = match placed.first {
            Some(Err((op, errno))) => {
                warn!("{path}: {op}: {errno}");
                let errno = if poller::is_gone(errno) { Errno::NOENT } else { errno };
                self.answer_add(request, reply(errno));
                return;
            }
            Some(Ok(scan)) => Some(scan),
            None => None,
        };
        let parent = parent.filter(|&parent| self.registry.find_polled(parent).is_some());
        if let Some(scan) = first {
            // Listed by the worker that examined it: the request joins at once.
            let mut state = PollState::new(kept, scan, generation, ancestry);
            state.parent = parent;
            let id = self.insert_polled(identity, is_dir, path, governance, state, remote);
            self.schedule_first_poll(Slot { object: id, generation });
            if let Some(pending) = self.pending.get_mut(request) {
                pending.stage = Stage::Joining(id);
            }
            return self.finish_joins(id, vec![request]);
        }
        let Ok(fd) = kept.try_clone() else {
            self.answer_add(request, reply(Errno::MFILE));
            return;
        };
        let with_stats = mask & STAT_EVENTS != 0;
        let look = poller::Look {
            ino: identity.1,
            is_dir,
            needs_stats: with_stats,
            force_sync: governance.force_sync,
            reading: crate::mounts::Reading::EveryPoll,
        };
        let mut state = PollState::unlisted(kept, generation, with_stats, now());
        state.parent = parent;
        state.ancestry = ancestry;
        let id = self.insert_polled(identity, is_dir, path, governance, state, remote);
        if let Some(pending) = self.pending.get_mut(request) {
            pending.stage = Stage::Joining(id);
        }
        let job = PollJob {
            object: id,
            generation,
            scheduled: false,
            urgent: true,
            fd,
            look,
            state: None,
            joiners: vec![request],
            find_ancestry: false,
        };
        if let Err(job) = self.workers.dispatch(identity.0, Job::Poll(job)) {
            let Job::Poll(job) = *job else { return };
            for request in job.joiners {
                self.answer_add(request, reply(Errno::NOMEM));
            }
            self.drop_if_unwatched(id);
        }
    }

    /// A polled object restored from the fd store on a remote mount: in the registry at once,
    /// so that its watches are restored with it, and listed for the first time on its worker,
    /// which finds its ancestry (for policies) too. Until then it matches policies by itself.
    pub(crate) fn restore_remote_object(
        &mut self,
        fd: OwnedFd,
        is_dir: bool,
        identity: policy::Identity,
        mask: u32,
    ) -> usize {
        let generation = self.next_generation;
        self.next_generation += 1;
        let governance = self.policies.govern(&[identity]);
        let with_stats = mask & STAT_EVENTS != 0;
        let look = poller::Look {
            ino: identity.1,
            is_dir,
            needs_stats: with_stats,
            force_sync: governance.force_sync,
            reading: crate::mounts::Reading::EveryPoll,
        };
        let dup = fd.try_clone();
        let path = place::fd_path(fd.as_fd());
        let state = PollState::unlisted(fd, generation, with_stats, now());
        let id = self.insert_polled(identity, is_dir, path, governance, state, Some("remote"));
        let job = dup.map(|fd| PollJob {
            object: id,
            generation,
            scheduled: false,
            urgent: true,
            fd,
            look,
            state: None,
            joiners: Vec::new(),
            find_ancestry: true,
        });
        let dispatched =
            job.is_ok_and(|job| self.workers.dispatch(identity.0, Job::Poll(job)).is_ok());
        if !dispatched {
            warn!("restart: {}: no worker to list it", object_path(self.registry.objects(), id));
        }
        id
    }

    /// Puts a polled object in the registry and counts it on its mount (`remote`: what `statfs`
    /// named, where known).
    fn insert_polled(
        &mut self,
        identity: policy::Identity,
        is_dir: bool,
        path: String,
        governance: policy::Governance,
        state: PollState,
        remote: Option<&'static str>,
    ) -> usize {
        let object = WatchedObject {
            id: identity,
            is_dir,
            path,
            governance,
            subscribers: Vec::new(),
            source: Source::Polled(state),
        };
        let id = self.registry.insert(object);
        self.mounts.attach(identity.0, remote.unwrap_or("local"));
        id
    }

    /// Request `request` joins the polled object `id` after its next poll: changes made so far
    /// go to the current subscribers under their current masks, as the kernel would have
    /// delivered them, and the poll takes attributes if the new mask needs them.
    fn join_after_poll(&mut self, request: usize, id: usize) {
        if let Some(pending) = self.pending.get_mut(request) {
            pending.stage = Stage::Joining(id);
        }
        self.joins.entry(id).or_default().push(request);
        self.poll_out_of_turn(id);
    }

    /// The poll that `joiners` waited for came back (or the object is gone): each joins, or
    /// learns why not.
    fn finish_joins(&mut self, id: usize, joiners: Vec<usize>) {
        for request in joiners {
            let Some(pending) = self.pending.get(request) else { continue };
            if pending.cancelled {
                self.pending.remove(request);
                continue;
            }
            let (key, uid, mask) = (pending.key, pending.uid, pending.mask);
            let answer = match self.registry.get(id) {
                Some(object) if object.is_polled() => self.subscribe(key, uid, mask, id),
                _ => Joined { reply: reply(Errno::NOENT), new_wd: false },
            };
            if !self.answer_add(request, answer.reply) && answer.new_wd {
                // Nobody heard of the wd: the watch goes as if never made.
                self.forget_watch(key, answer.reply.value, id);
            }
        }
        self.drop_if_unwatched(id);
    }

    /// Subscribes instance `key` to the polled object `id` with `mask`, or changes the mask of
    /// its watch there (IN_MASK_ADD, IN_MASK_CREATE as inotify(7) says).
    fn subscribe(&mut self, key: u64, uid: u32, mask: u32, id: usize) -> Joined {
        let refused = |errno| Joined { reply: reply(errno), new_wd: false };
        let new_object = self.registry.get(id).is_some_and(|o| o.subscribers.is_empty());
        let Some(instance) = self.instances.get(&key) else { return refused(Errno::INVAL) };
        if let Some(wd) = instance.wd_for(id) {
            if mask & IN_MASK_CREATE != 0 {
                return refused(Errno::EXIST);
            }
            if let Some(sub) = self
                .registry
                .get_mut(id)
                .and_then(|o| o.subscribers.iter_mut().find(|s| s.instance == key && s.wd == wd))
            {
                sub.mask = sub.updated_mask(mask);
            }
            return Joined { reply: Reply { errno: 0, value: wd }, new_wd: false };
        }
        if new_object {
            // Its listing is known only now; over the uid's budget it goes again.
            if let Err(errno) = self.polled_budget(uid, id, Object::New) {
                return refused(errno);
            }
        }
        let Some(instance) = self.instances.get_mut(&key) else { return refused(Errno::INVAL) };
        let wd = instance.allocate_wd();
        instance.add_watch(wd, id);
        if let Some(object) = self.registry.get_mut(id) {
            object.subscribers.push(Subscriber { instance: key, wd, mask });
            debug!("instance {key}: wd {wd} watches {} (mask {mask:#x})", object.path);
        }
        Joined { reply: Reply { errno: 0, value: wd }, new_wd: true }
    }

    /// Ends a watch nobody heard of: no IN_IGNORED, since the application never had the wd.
    fn forget_watch(&mut self, key: u64, wd: i32, id: usize) {
        if let Some(instance) = self.instances.get_mut(&key) {
            instance.remove_watch(wd);
        }
        if let Some(object) = self.registry.get_mut(id) {
            object.subscribers.retain(|s| !(s.instance == key && s.wd == wd));
        }
        self.drop_if_unwatched(id);
    }

    /// Drops the object `id` if no watch and no request holds it.
    fn drop_if_unwatched(&mut self, id: usize) {
        let unwatched = self.registry.get(id).is_some_and(|o| o.subscribers.is_empty());
        let waited_for = self.joins.contains_key(&id)
            || self.pending.iter().any(|(_, p)| p.stage == Stage::Joining(id) && !p.cancelled);
        if unwatched && !waited_for {
            self.drop_object(id);
        }
    }

    /// Sends the answer to request `request` and forgets it; whether the client took it.
    fn answer_add(&mut self, request: usize, answer: Reply) -> bool {
        let Some(pending) = self.pending.remove(request) else { return false };
        if pending.cancelled {
            return false;
        }
        // Events the request queued are readable before its answer, as with the kernel.
        self.flush_dirty();
        match pending.reply_to {
            ReplyTo::Connection(id) => {
                let Some(conn) = self.connections.get_mut(id) else { return false };
                conn.waiting = false;
                conn.opened = now();
                let sent = wire::send_record(conn.fd.as_fd(), &Record::Reply(answer), &[]);
                if sent.is_err() {
                    self.close_connection(id);
                }
                sent.is_ok()
            }
            ReplyTo::Channel(key) => {
                let Some(channel) = self.instances.get(&key).and_then(|i| i.channel.as_ref())
                else {
                    return false;
                };
                let sent = wire::send_record(channel.as_fd(), &Record::Reply(answer), &[]);
                if sent.is_err() {
                    self.drop_channel(key);
                }
                sent.is_ok()
            }
        }
    }

    /// `inotify_add_watch` on a local object: a kernel watch on the instance's own inotify fd,
    /// charged to its user; the kernel answers as for the application itself (ENOSPC over the
    /// user's `max_user_watches`, EEXIST for IN_MASK_CREATE, the same wd for the same object).
    fn add_kernel_watch(
        &mut self,
        key: u64,
        mask: u32,
        object_fd: &OwnedFd,
        identity: policy::Identity,
        placement: Option<&Placement>,
    ) -> Reply {
        let Some(instance) = self.instances.get_mut(&key) else { return reply(Errno::INVAL) };
        let Some(mut kernel) = instance.kernel.take() else { return reply(Errno::NOSPC) };
        let added = kernel.add(object_fd.as_fd(), identity, mask, || instance.allocate_wd());
        instance.kernel = Some(kernel);
        match added {
            Ok((wd, _)) => {
                let forced = placement.is_some_and(|p| p.governance.mode == Mode::Inotify);
                let policy = if forced { ", by policy" } else { "" };
                debug!("instance {key}: wd {wd} is a kernel watch (mask {mask:#x}{policy})");
                Reply { errno: 0, value: wd }
            }
            Err(errno) => {
                debug!("instance {key} (uid {}): kernel watch: {errno}", instance.uid);
                reply(errno)
            }
        }
    }

    /// `inotify_add_watch` on an object the instance already watches: same wd, new mask.
    fn update_watch(
        &mut self,
        id: usize,
        key: u64,
        wd: i32,
        mask: u32,
        object_fd: &OwnedFd,
    ) -> Reply {
        if mask & IN_MASK_CREATE != 0 {
            return reply(Errno::EXIST);
        }
        self.poll_before_joining(id, mask);
        if let Some(object) = self.registry.get_mut(id) {
            if let Some(sub) =
                object.subscribers.iter_mut().find(|s| s.instance == key && s.wd == wd)
            {
                sub.mask = sub.updated_mask(mask);
            }
        }
        self.refresh_kernel_mask(id, object_fd);
        Reply { errno: 0, value: wd }
    }

    /// Before a subscriber joins a polled object or changes its mask, changes made so far go
    /// to the current subscribers under their current masks, as the kernel would have
    /// delivered them; the poll also takes attributes if the new mask needs them.
    fn poll_before_joining(&mut self, id: usize, mask: u32) {
        let Some(object) = self.registry.get(id) else { return };
        if object.is_polled() {
            let want_stats = mask & STAT_EVENTS != 0 && !object.needs_stats();
            self.poll_object(id, want_stats);
        }
    }

    /// A new watched object: a kernel watch for a local one, else a polled baseline. A kernel
    /// watch keeps no fd (an open fd would hold back IN_DELETE_SELF and pin the mount); a polled
    /// object keeps a copy of the client's fd in its poll state.
    pub(crate) fn create_object(
        &mut self,
        fd: &OwnedFd,
        is_dir: bool,
        identity: policy::Identity,
        mask: u32,
    ) -> Result<usize, Errno> {
        let placement = self.placement(fd, is_dir, identity);
        self.create_placed_object(fd, is_dir, identity, mask, placement)
    }

    /// Whether an object is polled or watched by the kernel, and the policy that governs it.
    fn placement(&self, fd: &OwnedFd, is_dir: bool, identity: policy::Identity) -> Placement {
        let ancestry = self.policies.ancestry(fd.as_fd(), identity, is_dir);
        let governance = self.policies.govern(&ancestry);
        // A filesystem that cannot say what it is gets polled, as a kernel watch there could
        // stay silent: a FUSE server without statfs, or a directory renamed behind a
        // path-based one (bindfs, rclone, sshfs), which answers for its old path no more while
        // the kernel's cached dentry still lets the client open it.
        let remote = match rustix::fs::fstatfs(fd) {
            Ok(statfs) => fstype::remote_name(fstype::magic(&statfs)),
            Err(_) => Some("unknown filesystem"),
        };
        let poll = match governance.mode {
            Mode::Poll => true,
            Mode::Inotify => false,
            Mode::Auto => remote.is_some(),
        };
        Placement { governance, remote, poll }
    }

    fn create_placed_object(
        &mut self,
        fd: &OwnedFd,
        is_dir: bool,
        identity: policy::Identity,
        mask: u32,
        placement: Placement,
    ) -> Result<usize, Errno> {
        let Placement { governance, remote, poll } = placement;
        // The path is only for people: status and log lines. A kernel watch names it only in
        // debug lines, so the common local add_watch skips the readlink.
        let id_text = || format!("(dev {} ino {})", identity.0, identity.1);
        let path = if poll || crate::log::enabled(crate::config::LogLevel::Debug) {
            std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| id_text())
        } else {
            id_text()
        };
        let mut object = WatchedObject {
            id: identity,
            is_dir,
            path,
            governance,
            subscribers: Vec::new(),
            source: Source::Kernel { wd: -1 },
        };
        if !poll {
            match self.kernel.watch(fd.as_fd(), mask) {
                Ok(kwd) => {
                    object.source = Source::Kernel { wd: kwd };
                    debug!("{}: kernel watch (local filesystem)", object.path);
                    return Ok(self.registry.insert(object));
                }
                Err(errno) => {
                    warn!("{}: kernel watch failed ({errno}); polling instead", object.path)
                }
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let with_stats = mask & STAT_EVENTS != 0;
        let own_fd = place::readable(fd, is_dir)
            .inspect_err(|errno| warn!("{}: reopening for polling: {errno}", object.path))?;
        let mut state = poller::baseline(
            own_fd,
            &object,
            with_stats,
            &mut self.scan_io,
            &mut self.counters,
            generation,
        )
        .map_err(|(op, errno)| {
            warn!("{}: {op}: {errno}", object.path);
            errno
        })?;
        // Kept, so that applying policies anew makes no filesystem call.
        state.ancestry = policy::ancestry(fd.as_fd(), identity, is_dir);
        if is_dir {
            // One `fstatat` of "..", not a search of every listing for this inode.
            state.parent = rustix::fs::statat(fd, c"..", rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .map(|st| (st.st_dev, st.st_ino))
                .filter(|&parent| self.registry.find_polled(parent).is_some());
        }
        object.source = Source::Polled(state);
        self.mounts.attach(identity.0, remote.unwrap_or("local"));
        let interval = object.governance.interval;
        debug!("{}: polled every {interval:?} ({})", object.path, remote.unwrap_or("policy"));
        let id = self.registry.insert(object);
        self.schedule_first_poll(Slot { object: id, generation });
        Ok(id)
    }

    /// Widens a kernel watch to the union of its subscribers' masks, through the fd of the
    /// request that changed them. Narrowing needs no syscall: events are filtered per subscriber.
    fn refresh_kernel_mask(&mut self, id: usize, fd: &OwnedFd) {
        let Some(object) = self.registry.get(id) else { return };
        if let Source::Kernel { wd } = object.source {
            if let Err(errno) = self.kernel.watch(fd.as_fd(), object.union_mask()) {
                warn!("{}: updating kernel watch {wd}: {errno}", object.path);
            }
        }
    }

    fn rm_watch(&mut self, key: u64, wd: i32) -> Reply {
        let Some(instance) = self.instances.get_mut(&key) else { return reply(Errno::INVAL) };
        let Some(object) = instance.watches.get(&wd).map(|w| w.object) else {
            return match instance.kernel.as_mut().map(|k| k.remove(wd)) {
                Some(Ok(())) => {
                    // The kernel queued IN_IGNORED: it goes out before the reply.
                    self.forward_instance_kernel(key);
                    Reply { errno: 0, value: 0 }
                }
                _ => reply(Errno::INVAL),
            };
        };
        self.unsubscribe(key, wd, object);
        Reply { errno: 0, value: 0 }
    }

    /// Ends one watch: IN_IGNORED to its instance, and the object goes once nobody watches it.
    fn unsubscribe(&mut self, key: u64, wd: i32, id: usize) {
        self.own_closes.remove(&(key, wd));
        if let Some(instance) = self.instances.get_mut(&key) {
            instance.remove_watch(wd);
            instance.push(QueuedEvent { wd, mask: IN_IGNORED, cookie: 0, name: Box::default() });
            self.dirty.insert(key);
        }
        let Some(object) = self.registry.get_mut(id) else { return };
        object.subscribers.retain(|s| !(s.instance == key && s.wd == wd));
        self.drop_if_unwatched(id);
    }

    pub(crate) fn drop_object(&mut self, id: usize) {
        let Some(object) = self.registry.remove(id) else { return };
        // Requests waiting to join it learn that it is gone; those whose poll is in flight learn
        // it when the poll comes back for an object that is no longer there.
        for request in self.joins.remove(&id).unwrap_or_default() {
            self.answer_add(request, reply(Errno::NOENT));
        }
        // Held halves for this object have nobody to go to; those for others go out now.
        self.release_held(id);
        match object.source {
            Source::Kernel { wd } => self.kernel.unwatch(wd),
            Source::Polled(_) => self.mounts.detach(object.id.0),
        }
        debug!("{}: no longer watched", object.path);
    }

    fn on_instance_ready(&mut self, key: u64, flags: EventFlags) {
        if flags.intersects(EventFlags::HUP | EventFlags::RDHUP | EventFlags::ERR) {
            return self.close_instance(key);
        }
        if flags.contains(EventFlags::OUT) {
            self.dirty.insert(key);
        }
    }

    /// The application closed its end: every watch of the instance ends.
    fn close_instance(&mut self, key: u64) {
        let Some(instance) = self.instances.remove(&key) else { return };
        let held = instance.queue_capacity_bytes() as u64 + instance.queued_bytes();
        self.stats.closed_delivered += instance.delivered;
        self.stats.closed_overflows += instance.overflows;
        // Closing the socket right after removes it from the epoll set anyway.
        let _ = epoll::delete(&self.epoll, &instance.socket);
        for (wd, watch) in &instance.watches {
            if let Some(object) = self.registry.get_mut(watch.object) {
                object.subscribers.retain(|s| !(s.instance == key && s.wd == *wd));
                self.drop_if_unwatched(watch.object);
            }
        }
        self.dirty.remove(&key);
        self.own_closes.retain(|&(instance, _)| instance != key);
        // Its requests still waiting are dropped; those on a short connection get their answer
        // now: the instance is gone, as if its fd had been closed before the call.
        for (_, pending) in self.pending.iter_mut().filter(|(_, p)| p.key == key) {
            pending.cancelled = true;
            let ReplyTo::Connection(id) = pending.reply_to else { continue };
            let Some(conn) = self.connections.get_mut(id) else { continue };
            conn.waiting = false;
            conn.opened = now();
            // The connection is closed next anyway if the peer is gone.
            let _ = wire::send_record(conn.fd.as_fd(), &Record::Reply(reply(Errno::BADF)), &[]);
        }
        debug!("instance {key}: closed by pid {}", instance.pid);
        drop(instance);
        self.freed_since_trim += held;
        if self.freed_since_trim > TRIM_AFTER {
            self.freed_since_trim = 0;
            give_memory_back();
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(key) = self.dirty.pop_first() {
            let Some(instance) = self.instances.get_mut(&key) else { continue };
            let interest = match instance.flush() {
                Flush::Done => EventFlags::RDHUP,
                Flush::Blocked => EventFlags::RDHUP | EventFlags::OUT,
                Flush::Closed => {
                    self.close_instance(key);
                    continue;
                }
            };
            if let Err(errno) = epoll::modify(
                &self.epoll,
                &instance.socket,
                EventData::new_u64(INSTANCE | key),
                interest,
            ) {
                warn!("epoll_ctl for instance {key}: {errno}");
            }
        }
    }

    fn poll_due(&mut self) {
        let mut expirations = [0u8; 8];
        // The count is not needed: the schedule says what is due.
        let _ = rustix::io::read(&self.timer, &mut expirations);
        // It fired, so it is disarmed: the next turn arms it whatever the deadline.
        self.armed = None;
        self.close_idle_connections();
        self.sweep_peer_log();
        let start = now();
        self.feeds.prune(start);
        self.pacing.refresh(start, self.registry.iter().map(|(_, o)| o));
        // Due within their slack: back on the schedule after this round.
        let mut not_yet = Vec::new();
        while let Some((deadline, slot)) = self.schedule.pop_due(start + schedule::MAX_SLACK) {
            let Some(object) = self.registry.get_mut(slot.object) else { continue };
            let Source::Polled(state) = &object.source else { continue };
            if state.generation != slot.generation {
                continue;
            }
            if deadline > start + schedule::slack(object.governance.interval) {
                not_yet.push((deadline, slot));
                continue;
            }
            // Under a healthy feed, only every safety interval; asked again at its own.
            if self.feeds.defers(slot, &object.path, start) {
                self.schedule.at(slot, start + object.governance.interval);
                continue;
            }
            if state.scan.is_none() {
                // An out-of-turn poll is in flight: this one comes round again.
                let interval = object.governance.interval;
                self.schedule.at(slot, start + interval);
                continue;
            }
            // Over its group's budget, the poll waits for its turn.
            if let Some(turn) = self.pacing.hold(object, start) {
                self.schedule.at(slot, turn);
                continue;
            }
            self.dispatch(slot.object, true);
        }
        for (deadline, slot) in not_yet {
            self.schedule.at(slot, deadline);
        }
    }

    /// Hands a poll of `id` to its device's worker, with the requests waiting to join
    /// the object. A scheduled poll is rescheduled when its result comes back
    /// ([`Server::on_polled`]).
    fn dispatch(&mut self, id: usize, scheduled: bool) {
        let joiners = self.joins.remove(&id).unwrap_or_default();
        let want_stats =
            joiners.iter().filter_map(|&r| self.pending.get(r)).any(|p| p.mask & STAT_EVENTS != 0);
        let Some(object) = self.registry.get_mut(id) else { return };
        let dev = object.id.0;
        let look = poller::Look::of(object, self.mounts.listing(dev), want_stats);
        let Source::Polled(state) = &mut object.source else { return };
        let Ok(fd) = state.fd.try_clone() else {
            warn!("poll {}: no fd left to hand to the worker", object.path);
            self.stats.error("poll: out of file descriptors");
            let next = now() + object.governance.interval;
            if scheduled {
                self.schedule.at(Slot { object: id, generation: state.generation }, next);
            }
            return self.finish_joins(id, joiners);
        };
        let Some(scan) = state.scan.take() else {
            self.joins.entry(id).or_default().extend(joiners);
            return;
        };
        let urgent = !joiners.is_empty();
        let job = PollJob {
            object: id,
            generation: state.generation,
            scheduled,
            urgent,
            fd,
            look,
            state: Some(scan),
            joiners,
            find_ancestry: false,
        };
        state.dispatched = Some(now());
        if let Err(job) = self.workers.dispatch(dev, Job::Poll(job)) {
            // No thread: the state comes back and the poll is retried at the next interval.
            let Job::Poll(job) = *job else { return };
            state.scan = job.state;
            state.dispatched = None;
            if scheduled {
                let next = now() + object.governance.interval;
                self.schedule.at(Slot { object: id, generation: state.generation }, next);
            }
            self.finish_joins(id, job.joiners);
        }
    }

    /// A poll of `id` out of turn, its state taken for the worker; None while a poll of it is
    /// in flight.
    fn take_poll_job(&mut self, id: usize) -> Option<PollJob> {
        let object = self.registry.get_mut(id)?;
        let look = poller::Look::of(object, self.mounts.listing(object.id.0), false);
        let Source::Polled(state) = &mut object.source else { return None };
        let fd = state.fd.try_clone().ok()?;
        let scan = state.scan.take()?;
        state.dispatched = Some(now());
        Some(PollJob {
            object: id,
            generation: state.generation,
            scheduled: false,
            urgent: true,
            fd,
            look,
            state: Some(scan),
            joiners: Vec::new(),
            find_ancestry: false,
        })
    }

    /// Takes back what the workers finished: polls, examined objects, resolved policies.
    fn on_worked(&mut self) {
        for done in self.workers.drain() {
            match done {
                Done::Poll(result) => match self.registry.get(result.object) {
                    Some(object) => {
                        let dev = object.id.0;
                        self.settling.push_back(dev, Step::Polled(Box::new(result)));
                        self.settle_device(dev);
                    }
                    // Gone while the poll ran: its requests learn it.
                    None => {
                        let steps = self.on_polled(result);
                        self.take_steps(steps);
                    }
                },
                Done::Relocated { relocated, poll } => self.on_relocated(relocated, poll),
                Done::Placed { request, placed } => self.on_placed(request, placed),
                Done::Resolved(job) => {
                    if let Some(pending) = self.policy_changes.remove(&job.ticket) {
                        self.apply_policy_change(pending, job.policies);
                    }
                }
            }
        }
    }

    /// Takes the steps of device `dev` that may be taken now: all of them, unless one needs
    /// a relocation on the worker ([`Settling`]).
    fn settle_device(&mut self, dev: u64) {
        while let Some(step) = self.settling.next(dev) {
            self.take_step(dev, step);
        }
    }

    /// Takes `steps` of an object no longer in the registry, whose device is not known.
    fn take_steps(&mut self, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Join { object, joiners } => self.finish_joins(object, joiners),
                Step::PollNow(object) => self.poll_out_of_turn(object),
                Step::Polled(_) | Step::Deliver { .. } | Step::Followed { .. } => {}
            }
        }
    }

    fn take_step(&mut self, dev: u64, step: Step) {
        match step {
            Step::Polled(result) => {
                let steps = self.on_polled(*result);
                self.settling.push_front(dev, steps);
            }
            Step::Deliver { object, change, paired } => {
                let moved_dir =
                    change.mask == IN_MOVED_TO | IN_ISDIR || change.mask == IN_CREATE | IN_ISDIR;
                if moved_dir && self.start_follow(object, &change, paired) {
                    self.settling.push_front(dev, vec![Step::Followed { object, change }]);
                } else {
                    self.deliver(object, std::slice::from_ref(&change));
                }
            }
            Step::Followed { object, change } => {
                self.deliver(object, std::slice::from_ref(&change));
            }
            Step::PollNow(object) => self.poll_out_of_turn(object),
            Step::Join { object, joiners } => {
                self.finish_joins(object, joiners);
                if self.joins.contains_key(&object) {
                    // Requests that came while this poll ran wait for one of their own.
                    self.poll_out_of_turn(object);
                }
            }
        }
    }

    /// A directory new under `parent` as `change.name` (a move in, or a create) whose inode a
    /// watch already holds has moved there: its watch follows it, as a kernel watch does, on
    /// the worker ([`relocate`]). Whether a relocation started, before which the change waits.
    ///
    /// Where the move was not paired (a lone IN_MOVED_TO, or an IN_CREATE because another
    /// rename took the old name within one poll, so that no delete of it was seen), the
    /// directory is polled there too before the event goes out. A client lists a directory
    /// that is new to it; had the directory's own poll come after that, it would tell the
    /// client of changes its listing already showed. After a paired IN_MOVED_TO the client
    /// moves what it knew of the subtree, and the directory's changes apply to that afterwards.
    fn start_follow(&mut self, parent: usize, change: &Change, paired: bool) -> bool {
        let Some(job) = relocate::plan_follow(&self.registry, parent, change.ino, &change.name)
        else {
            return false;
        };
        let child = job.task.object();
        let poll = if paired { None } else { self.take_poll_job(child) };
        self.start_relocation(job, poll)
    }

    /// Hands `job` to its device's worker; that device's steps wait for it. Whether it went.
    fn start_relocation(&mut self, job: relocate::RelocateJob, poll: Option<PollJob>) -> bool {
        let (dev, object) = (job.dev, job.task.object());
        match self.workers.dispatch(dev, Job::Relocate { job, poll }) {
            Ok(()) => {
                self.settling.relocating(dev, object, now());
                true
            }
            Err(job) => {
                // No thread: the poll's state goes back untouched.
                if let Job::Relocate { poll: Some(poll), .. } = *job {
                    let steps = self.on_polled(crate::workers::unrun(poll));
                    self.settling.push_front(dev, steps);
                }
                false
            }
        }
    }

    /// A relocation came back: the directories found take their new fds and paths, and the
    /// device's steps go on, the poll of a followed directory first.
    fn on_relocated(&mut self, relocated: relocate::Relocated, poll: Option<PollResult>) {
        let (dev, object) = (relocated.dev, relocated.task.object());
        let found_it = relocated.found_it();
        let task = relocated.task.clone();
        let same = self.registry.get(object).map(|o| o.id) == relocated.identity;
        relocate::apply(&mut self.registry, relocated.found);
        self.settling.relocated(dev);
        let steps = match task {
            relocate::Task::Follow { .. } => {
                if found_it {
                    let path = object_path(self.registry.objects(), object);
                    debug!("{path}: watch follows the renamed directory");
                }
                match poll {
                    Some(poll) => vec![Step::Polled(Box::new(poll))],
                    None => Vec::new(),
                }
            }
            // The directory was dropped meanwhile (its watches ended).
            relocate::Task::Refind { .. } if !same => Vec::new(),
            relocate::Task::Refind { .. } if found_it => {
                let path = object_path(self.registry.objects(), object);
                debug!("{path}: watch found its directory again after a rename above it");
                self.settle(object, Vec::new())
            }
            relocate::Task::Refind { .. } if self.may_have_moved(object) => {
                self.settle(object, Vec::new())
            }
            relocate::Task::Refind { .. } => {
                self.object_gone(object);
                Vec::new()
            }
        };
        self.settling.push_front(dev, steps);
        self.settle_device(dev);
    }

    /// Takes back a finished poll: its state, its counters; returns the steps that deliver its
    /// changes, then the requests that waited for it join.
    fn on_polled(&mut self, mut result: PollResult) -> Vec<Step> {
        let id = result.object;
        let joiners = std::mem::take(&mut result.joiners);
        let current = self.registry.get(id).and_then(|o| match &o.source {
            Source::Polled(state) => Some(state.generation),
            Source::Kernel { .. } => None,
        });
        if current != Some(result.generation) {
            // The object went (its slot may hold another by now) while the poll was in flight.
            for request in joiners {
                self.answer_add(request, reply(Errno::NOENT));
            }
            return Vec::new();
        }
        let Some(object) = self.registry.get_mut(id) else { return Vec::new() };
        let Source::Polled(state) = &mut object.source else { return Vec::new() };
        state.dispatched = None;
        let first = result.first;
        let Some(scan) = result.state else {
            // The first listing failed: the object cannot be polled.
            let why = match result.outcome {
                PollOutcome::Failed { op, errno } => {
                    warn!("{}: {op}: {errno}", object.path);
                    errno
                }
                _ => Errno::NOENT,
            };
            let errno = if poller::is_gone(why) { Errno::NOENT } else { why };
            for request in joiners {
                self.answer_add(request, reply(errno));
            }
            if self.registry.get(id).is_some_and(|o| !o.subscribers.is_empty()) {
                // A restored object that cannot be listed any more: its watches end.
                self.object_gone(id);
            } else {
                self.drop_if_unwatched(id);
            }
            return Vec::new();
        };
        if let Some(ancestry) = result.ancestry.take() {
            state.parent = ancestry.get(1).copied();
            let mode = object.governance.mode;
            object.governance = self.policies.govern(&ancestry);
            object.governance.mode = mode;
            state.ancestry = ancestry;
        }
        if first {
            state.pace =
                crate::watch::Pace::estimate(scan.snapshot.len(), scan.snapshot.has_stats());
        }
        state.scan = Some(scan);
        self.counters.add(&result.counters);
        let finished = now();
        if result.scheduled {
            self.stats.polls += 1;
            let index = object.governance.policy.unwrap_or(self.policies.list.len());
            if let Some(figures) = self.stats.per_policy.get_mut(index) {
                figures.polls += 1;
                figures.last = result.took;
                figures.worst = figures.worst.max(result.took);
                figures.time += result.took;
                figures.scan.add(&result.counters);
            }
            let generation = result.generation;
            let next = self.pacing.after_poll(object, &result.counters, finished);
            self.schedule.at(Slot { object: id, generation }, next);
        }
        let path = object.path.clone();
        if first {
            let interval = object.governance.interval;
            debug!("{path}: polled every {interval:?} (first listing on its worker)");
            self.schedule_first_poll(Slot { object: id, generation: result.generation });
        }
        self.observe_mount(id, result.observed);
        let mut steps = self.take_outcome(id, &path, result.outcome);
        steps.push(Step::Join { object: id, joiners });
        steps
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

    /// Takes what a poll of `id` told of its mount; the mount's turn to listing every poll is
    /// logged, once.
    fn observe_mount(&mut self, id: usize, observed: Observed) {
        let Some(object) = self.registry.get(id) else { return };
        if let Some(mount) = self.mounts.observe(object.id.0, observed) {
            let place = mount.mount_point.as_deref().unwrap_or(&object.path);
            warn!(
                "{place} ({}): directories there are listed at every poll from now on: {}",
                mount.fs_type,
                mount.reason.text()
            );
        }
    }

    /// The steps that deliver what a poll found and start the out-of-turn polls that rename
    /// pairing asks for. A directory the poll could not reach is looked for on its worker
    /// first ([`Server::on_relocated`]).
    fn take_outcome(&mut self, id: usize, path: &str, outcome: PollOutcome) -> Vec<Step> {
        if !matches!(outcome, PollOutcome::Gone) {
            if let Some(WatchedObject { source: Source::Polled(state), .. }) =
                self.registry.get_mut(id)
            {
                state.misses = 0;
                state.missing_since = None;
            }
        }
        let changes = match outcome {
            PollOutcome::Unchanged => Vec::new(),
            PollOutcome::Changes(changes) => changes,
            PollOutcome::Gone => {
                let job = relocate::plan_refind(&self.registry, id);
                if job.is_some_and(|job| self.start_relocation(job, None)) {
                    return Vec::new();
                }
                if !self.may_have_moved(id) {
                    self.object_gone(id);
                    return Vec::new();
                }
                Vec::new()
            }
            PollOutcome::Failed { op, errno } => {
                warn!("poll {path}: {op}: {errno}");
                self.stats.error(format!("poll {op}: {errno}"));
                Vec::new()
            }
        };
        self.settle(id, changes)
    }

    /// Feeds: their supervision, and the out-of-turn polls their lines and catch-ups ask for,
    /// inside each device's `max_ops` budget like any poll.
    fn step_feeds(&mut self) {
        let now = now();
        for (id, feed) in self.feeds.step(self.epoll.as_fd(), now, self.registry.objects()) {
            let Some(object) = self.registry.get_mut(id) else { continue };
            if let Some(turn) = self.pacing.hold(object, now) {
                self.feeds.held_back(id, feed, turn);
                continue;
            }
            self.poll_out_of_turn(id);
        }
    }

    /// Polls `id` now unless a poll of it is in flight already.
    fn poll_out_of_turn(&mut self, id: usize) {
        let idle = matches!(
            self.registry.get(id).map(|o| &o.source),
            Some(Source::Polled(state)) if state.scan.is_some()
        );
        if idle {
            self.dispatch(id, false);
        }
    }

    /// Jobs that have waited on a worker longer than `SLOW_SCAN`, by worker (device): the
    /// oldest, and how many wait there. A mount that stopped answering shows here (`status`)
    /// with what waits for it, until it comes back.
    pub(crate) fn slow_scans(&self) -> Vec<StuckJobs> {
        let now = now();
        let mut per_worker: HashMap<u64, StuckJobs> = HashMap::new();
        let mut note = |worker: u64, job: &'static str, what: String, since: Duration| {
            let running = now.saturating_sub(since);
            if running < SLOW_SCAN {
                return;
            }
            let entry = per_worker.entry(worker).or_insert_with(|| StuckJobs {
                worker,
                job,
                what: what.clone(),
                running,
                count: 0,
            });
            entry.count += 1;
            if running > entry.running {
                (entry.job, entry.what, entry.running) = (job, what, running);
            }
        };
        for (_, object) in self.registry.iter() {
            if let Source::Polled(PollState { dispatched: Some(at), .. }) = &object.source {
                note(object.id.0, "poll", object.path.clone(), *at);
            }
        }
        for (_, request) in self.pending.iter().filter(|(_, p)| p.stage == Stage::Placing) {
            let what = format!("an inotify_add_watch of uid {}", request.uid);
            note(request.worker, "add_watch", what, request.since);
        }
        for change in self.policy_changes.values() {
            note(PATHS_WORKER, "policy paths", "finding the policies' paths".into(), change.since);
        }
        for (dev, object, since) in self.settling.relocations() {
            let what = object_path(self.registry.objects(), object).to_owned();
            note(dev, "relocation", what, since);
        }
        let mut list: Vec<StuckJobs> = per_worker.into_values().collect();
        list.sort_by_key(|s| s.worker);
        list
    }

    /// The first poll of a new polled object, spread over its interval (stretched when its
    /// budget group needs it).
    fn schedule_first_poll(&mut self, slot: Slot) {
        let fraction = self.schedule.spread_fraction();
        if let Some(object) = self.registry.get(slot.object) {
            let first = self.pacing.first_poll(object, now(), fraction);
            self.schedule.at(slot, first);
        }
    }

    /// Polls `id` at once, on the event loop's thread: used when a subscriber that needs
    /// attributes joins, to deliver pending changes and take a baseline with attributes.
    fn poll_object(&mut self, id: usize, want_stats: bool) {
        let Some(object) = self.registry.get_mut(id) else { return };
        let listing = self.mounts.listing(object.id.0);
        let (outcome, observed) =
            poller::poll(object, listing, want_stats, &mut self.scan_io, &mut self.counters);
        let (path, dev) = (object.path.clone(), object.id.0);
        self.observe_mount(id, observed);
        let steps = self.take_outcome(id, &path, outcome);
        self.settling.push_front(dev, steps);
        self.settle_device(dev);
    }

    /// Pairs renames across polled directories of one device: the steps that deliver what is
    /// settled, then poll the directories pairing asks for.
    fn settle(&mut self, id: usize, changes: Vec<Change>) -> Vec<Step> {
        if changes.is_empty() && !self.moves.waits_on(id) {
            // The common poll: nothing found, nothing held. No walk over the other objects.
            return Vec::new();
        }
        let Some(object) = self.registry.get(id) else { return Vec::new() };
        let dev = object.id.0;
        let others = self.registry.polled_dirs_on(dev, id);
        let created: HashSet<u64> = changes
            .iter()
            .filter(|c| c.mask & IN_CREATE != 0 && c.ino != 0)
            .map(|c| c.ino)
            .collect();
        let mut elsewhere: HashMap<u64, usize> = HashMap::new();
        if !created.is_empty() {
            for &other in &others {
                let Some(Source::Polled(PollState { scan: Some(state), .. })) =
                    self.registry.get(other).map(|o| &o.source)
                else {
                    continue;
                };
                for entry in state.snapshot.entries().iter().filter(|e| created.contains(&e.ino)) {
                    elsewhere.entry(entry.ino).or_insert(other);
                }
            }
        }
        let context = moves::Context { hold_deletes: !others.is_empty(), elsewhere: &elsewhere };
        let next_cookie = &mut self.next_cookie;
        let mut cookie = || take_cookie(next_cookie);
        let settled = self.moves.settle(id, dev, changes, &context, &mut cookie);
        let deliveries = settled.deliveries;
        let mut steps: Vec<Step> = deliveries
            .iter()
            .map(|delivery| {
                // Both halves of a pair are settled together, so a MOVED_FROM elsewhere in
                // this list is the only sign of a paired move.
                let change = &delivery.change;
                let paired = change.mask & IN_MOVED_TO != 0
                    && deliveries.iter().any(|d| {
                        d.change.mask & IN_MOVED_FROM != 0 && d.change.pair == change.pair
                    });
                Step::Deliver { object: delivery.object, change: change.clone(), paired }
            })
            .collect();
        steps.extend(settled.poll_now.into_iter().map(Step::PollNow));
        steps
    }

    /// Whether a polled object's fd no longer reaches an inode of its identity.
    fn is_stale(&self, id: usize) -> bool {
        let Some(object) = self.registry.get(id) else { return false };
        let Source::Polled(state) = &object.source else { return false };
        place::fd_is_stale(state.fd.as_fd(), object.id.1, object.governance.force_sync)
    }

    /// Whether a polled directory that cannot be found (nor [`Server::refind`]) may only have
    /// moved, so that it waits for another poll rather than counting as gone. Behind a
    /// path-based FUSE server (bindfs, rclone, sshfs, mergerfs) a rename on the server of the
    /// directory or of any directory above it leaves the daemon's fd dangling until the poll
    /// of the listing that shows the rename hands it a fresh one. So it waits one poll, and
    /// then as long as a polled listing still holds it (that directory is polled at once to
    /// settle it) or such a listing may be in flight, up to `MAX_MISSES` polls in a row and at
    /// least `MIN_MISSING`.
    fn may_have_moved(&mut self, id: usize) -> bool {
        let Some(object) = self.registry.get(id) else { return false };
        if !object.is_dir || !object.is_polled() {
            return false;
        }
        let identity = object.id;
        let holders: Vec<usize> =
            self.registry.listed_in(identity).into_iter().map(|(holder, _)| holder).collect();
        let in_flight = self.registry.iter().any(|(other, o)| {
            other != id
                && o.id.0 == identity.0
                && o.is_dir
                && matches!(&o.source, Source::Polled(PollState { scan: None, .. }))
        });
        let Some(Source::Polled(state)) = self.registry.get_mut(id).map(|o| &mut o.source) else {
            return false;
        };
        state.misses = state.misses.saturating_add(1);
        let since = *state.missing_since.get_or_insert_with(now);
        let unsure = !holders.is_empty() || in_flight;
        let patient = state.misses < MAX_MISSES || now().saturating_sub(since) < MIN_MISSING;
        let wait = state.misses == 1 || (unsure && patient);
        if wait {
            for holder in holders {
                self.poll_out_of_turn(holder);
            }
        } else {
            let misses = state.misses;
            debug!(
                "{}: not found in {misses} polls ({} listings hold its inode)",
                object_path(self.registry.objects(), id),
                holders.len()
            );
        }
        wait
    }

    /// Sends `changes` of object `id` (cookies assigned) to each subscriber that asked for them.
    fn deliver(&mut self, id: usize, changes: &[Change]) {
        let events: Vec<fanout::Event<'_>> = changes
            .iter()
            .map(|c| fanout::Event { mask: c.mask, cookie: c.pair, name: &c.name })
            .collect();
        self.fan_out(id, &events);
    }

    /// The one fan-out path: queues each of `events` of object `id` for the subscribers that
    /// want it (`fanout`), and ends the IN_ONESHOT watches that got theirs.
    fn fan_out(&mut self, id: usize, events: &[fanout::Event<'_>]) {
        let Some(object) = self.registry.get(id) else { return };
        let own_closes = &mut self.own_closes;
        let fanned = fanout::fan_out(&object.subscribers, events, |instance, wd| {
            own_closes.remove(&(instance, wd))
        });
        for (key, wd, index) in fanned.deliveries {
            let event = &events[index];
            if let Some(instance) = self.instances.get_mut(&key) {
                instance.push(QueuedEvent {
                    wd,
                    mask: event.mask,
                    cookie: event.cookie,
                    name: event.name.into(),
                });
                self.dirty.insert(key);
            }
        }
        for (key, wd) in fanned.ended {
            self.unsubscribe(key, wd, id);
        }
    }

    /// Delivers what the move tracker held back for `id`, which is no longer polled.
    fn release_held(&mut self, id: usize) {
        let next_cookie = &mut self.next_cookie;
        for delivery in self.moves.release(id, &mut || take_cookie(next_cookie)) {
            self.deliver(delivery.object, std::slice::from_ref(&delivery.change));
        }
    }

    /// The watched object disappeared: IN_DELETE for what it held, IN_DELETE_SELF, IN_IGNORED.
    fn object_gone(&mut self, id: usize) {
        self.release_held(id);
        let Some(object) = self.registry.get(id) else { return };
        let mut changes = Vec::new();
        if let Source::Polled(PollState { scan: Some(state), .. }) = &object.source {
            for entry in state.snapshot.entries() {
                let isdir = if entry.is_dir { IN_ISDIR } else { 0 };
                changes.push(Change {
                    mask: IN_DELETE | isdir,
                    name: state.snapshot.name(entry).to_vec(),
                    ..Change::default()
                });
            }
        }
        if !object.is_dir {
            // Unlinking a watched file drops its link count first, as the kernel reports.
            changes.push(Change { mask: IN_ATTRIB, ..Change::default() });
        }
        changes.push(Change { mask: IN_DELETE_SELF, ..Change::default() });
        debug!("{}: gone", object.path);
        self.deliver(id, &changes);
        let subscribers: Vec<Subscriber> =
            self.registry.get(id).map(|o| o.subscribers.clone()).unwrap_or_default();
        for sub in subscribers {
            self.unsubscribe(sub.instance, sub.wd, id);
        }
    }

    fn forward_kernel_events(&mut self) {
        let mut events: Vec<(i32, u32, u32, Vec<u8>)> = Vec::new();
        if let Err(errno) =
            self.kernel.drain(|e| events.push((e.wd, e.mask, e.cookie, e.name.to_vec())))
        {
            error!("reading the daemon's inotify fd: {errno}");
        }
        for (kwd, mask, cookie, name) in events {
            if mask & IN_Q_OVERFLOW != 0 {
                self.overflow_kernel_subscribers();
                continue;
            }
            let Some(id) = self.registry.by_kernel_wd(kwd) else { continue };
            if mask & IN_IGNORED != 0 {
                // The kernel dropped the watch (object deleted or unmounted).
                self.registry.kernel_watch_gone(kwd);
                let subscribers: Vec<Subscriber> =
                    self.registry.get(id).map(|o| o.subscribers.clone()).unwrap_or_default();
                for sub in subscribers {
                    self.unsubscribe(sub.instance, sub.wd, id);
                }
                continue;
            }
            self.deliver_kernel_event(id, mask, cookie, name);
        }
    }

    /// Relays what the kernel queued on instance `key`'s own inotify fd, with its wds.
    fn forward_instance_kernel(&mut self, key: u64) {
        let Some(instance) = self.instances.get_mut(&key) else { return };
        let Some(kernel) = instance.kernel.as_mut() else { return };
        let mut events = Vec::new();
        let drained = kernel.drain(&mut self.event_buf, |wd, e| {
            events.push(QueuedEvent { wd, mask: e.mask, cookie: e.cookie, name: e.name.into() })
        });
        if let Err(errno) = drained {
            warn!("instance {key}: reading its inotify fd: {errno}");
        }
        for event in events {
            let own_close = event.mask & IN_CLOSE_NOWRITE != 0 && event.name.is_empty();
            if own_close && self.own_closes.remove(&(key, event.wd)) {
                // The close of the fd that proved read access for this watch.
                continue;
            }
            if event.mask & IN_IGNORED != 0 {
                self.own_closes.remove(&(key, event.wd));
            }
            instance.push(event);
            self.dirty.insert(key);
        }
    }

    fn deliver_kernel_event(&mut self, id: usize, mask: u32, cookie: u32, name: Vec<u8>) {
        self.fan_out(id, &[fanout::Event { mask, cookie, name: &name }]);
    }

    fn overflow_kernel_subscribers(&mut self) {
        let keys: BTreeSet<u64> = self
            .registry
            .iter()
            .filter(|(_, o)| !o.is_polled())
            .flat_map(|(_, o)| o.subscribers.iter().map(|s| s.instance))
            .collect();
        for key in keys {
            if let Some(instance) = self.instances.get_mut(&key) {
                instance.push(QueuedEvent {
                    wd: -1,
                    mask: IN_Q_OVERFLOW,
                    cookie: 0,
                    name: Box::default(),
                });
                self.dirty.insert(key);
            }
        }
    }
}

/// A fresh non-zero rename cookie.
fn take_cookie(next: &mut u32) -> u32 {
    let cookie = *next;
    *next = next.checked_add(1).unwrap_or(1);
    cookie
}

fn warn_suppressed(uid: u32, kind: &str, count: u64) {
    warn!(
        "uid {uid}: suppressed {count} more warnings ({kind}) in the last {}s",
        crate::peer_log::WINDOW.as_secs()
    );
}

/// Returns freed heap pages to the system. glibc keeps what a flood of events left freed in
/// its arenas (565 MB stayed after the instances closed, issue 14); musl's allocator returns
/// them by itself.
fn give_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An AddWatch or RmWatch record, no longer borrowing the bytes it was decoded from (neither
/// has a body to borrow), so that its fds can be taken from the received message.
fn detach(record: Record<'_>) -> Record<'static> {
    match record {
        Record::AddWatch { mask } => Record::AddWatch { mask },
        Record::RmWatch { wd } => Record::RmWatch { wd },
        Record::Register => Record::Register,
        Record::Reply(reply) => Record::Reply(reply),
        Record::Control(_) | Record::ControlReply(_) => Record::Control(&[]),
    }
}

fn warn_missing_policies(policies: &Policies) {
    for policy in policies.list.iter().filter(|p| p.root.is_none()) {
        warn!(
            "watch policy {}: path not found; it applies once it exists and the daemon reloads",
            policy.watch.path.display()
        );
    }
}

/// An object's path for a log line.
fn object_path(objects: &Slab<WatchedObject>, id: usize) -> &str {
    objects.get(id).map_or("(gone)", |o| o.path.as_str())
}
