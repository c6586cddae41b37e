//! One `[[feed]]`: its command as a supervised child whose standard output the event loop
//! reads line by line. The child runs without a shell, stdin from /dev/null; its stderr (over
//! ssh, the server's) is logged, a few lines per 10 s at most; its stdout is a nonblocking
//! CLOEXEC pipe and its exit shows on a pidfd, both in
//! the daemon's epoll set. A pidfd rather than SIGCHLD on the signalfd: each child brings its own
//! fd, the loop reaps exactly that child (`waitpid` on its pid), no process-wide signal state
//! changes, and nothing else's exit status is taken. Health and restarts are decided by
//! [`Supervision`], pure and tested here; the lines by [`LineSplitter`] and `feed_line`.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;

use crate::config::FeedConfig;
use crate::feed_line::{self, FeedLine, LineError, MAX_LINE};

/// First restart delay; it doubles after each failed run up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run healthy this long sets the delay back to [`FIRST_BACKOFF`].
const STABLE_RUN: Duration = Duration::from_secs(60);
/// Bytes read from one feed per readiness, so a flooding feed cannot hold up the loop.
const READ_PER_TURN: usize = 64 * 1024;
/// Bad lines are logged at most this often per feed (with the count in between).
const BAD_LINE_LOG_EVERY: Duration = Duration::from_secs(10);
/// Lines of a feed's stderr logged per [`BAD_LINE_LOG_EVERY`]; the rest are counted.
const STDERR_LINES_LOGGED: u32 = 5;
/// Bytes read from one feed's stderr per readiness.
const STDERR_PER_TURN: usize = 16 * 1024;

/// Where the child is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedState {
    Running,
    /// Killed for being quiet; waiting for its exit.
    Stopping,
    /// Exited (or could not start); restarts at `until`.
    Backoff {
        until: Duration,
    },
}

impl FeedState {
    pub fn name(self) -> &'static str {
        match self {
            FeedState::Running => "running",
            FeedState::Stopping => "stopping",
            FeedState::Backoff { .. } => "backoff",
        }
    }
}

/// What [`Supervision::tick`] asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Quiet past the timeout: kill it.
    Kill,
    /// The backoff is over: start it again.
    Spawn,
}

/// The life of one feed as times in, decisions out.
#[derive(Debug)]
pub struct Supervision {
    pub state: FeedState,
    timeout: Duration,
    backoff: Duration,
    /// When the current run started.
    started: Duration,
    /// The last valid line (heartbeat or hint) of the current run.
    pub last_line: Option<Duration>,
    /// When the current run first became healthy.
    healthy_since: Option<Duration>,
}

impl Supervision {
    /// A feed to be started at once.
    pub fn new(timeout: Duration) -> Supervision {
        Supervision {
            state: FeedState::Backoff { until: Duration::ZERO },
            timeout,
            backoff: FIRST_BACKOFF,
            started: Duration::ZERO,
            last_line: None,
            healthy_since: None,
        }
    }

    /// Lines (or heartbeats) keep coming: only then are the feed's objects on the long interval.
    pub fn healthy(&self, now: Duration) -> bool {
        self.state == FeedState::Running
            && self.last_line.is_some_and(|at| now.saturating_sub(at) < self.timeout)
    }

    pub fn spawned(&mut self, now: Duration) {
        self.state = FeedState::Running;
        self.started = now;
        self.last_line = None;
        self.healthy_since = None;
    }

    pub fn spawn_failed(&mut self, now: Duration) {
        self.exited(now);
    }

    pub fn line(&mut self, now: Duration) {
        if self.state == FeedState::Running {
            self.last_line = Some(now);
            self.healthy_since.get_or_insert(now);
        }
    }

    /// The child is gone: restart after the current delay, which doubles unless the run was
    /// healthy long enough to count as stable.
    pub fn exited(&mut self, now: Duration) {
        let stable =
            self.healthy_since.is_some_and(|since| now.saturating_sub(since) >= STABLE_RUN);
        if stable {
            self.backoff = FIRST_BACKOFF;
        }
        self.state = FeedState::Backoff { until: now + self.backoff };
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.last_line = None;
        self.healthy_since = None;
    }

    pub fn tick(&mut self, now: Duration) -> Action {
        match self.state {
            FeedState::Running => {
                let since = self.last_line.unwrap_or(self.started);
                if now.saturating_sub(since) >= self.timeout {
                    self.state = FeedState::Stopping;
                    Action::Kill
                } else {
                    Action::Nothing
                }
            }
            FeedState::Stopping => Action::Nothing,
            FeedState::Backoff { until } if now >= until => Action::Spawn,
            FeedState::Backoff { .. } => Action::Nothing,
        }
    }

    /// When [`Supervision::tick`] next has something to decide.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.state {
            FeedState::Running => Some(self.last_line.unwrap_or(self.started) + self.timeout),
            FeedState::Stopping => None,
            FeedState::Backoff { until } => Some(until),
        }
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes; a longer line is reported
/// once as too long and its bytes are dropped as they come, so memory stays bounded.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// Inside a line already found too long: dropping until its newline.
    skipping: bool,
}

/// One line out of the splitter.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    Line(Vec<u8>),
    TooLong,
}

impl LineSplitter {
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Split>) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|&b| b == b'\n');
            let (chunk, rest) = match newline {
                Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
                None => (bytes, None),
            };
            if !self.skipping {
                if self.partial.len() + chunk.len() > MAX_LINE {
                    self.partial = Vec::new();
                    self.skipping = true;
                    out.push(Split::TooLong);
                } else {
                    self.partial.extend_from_slice(chunk);
                }
            }
            match rest {
                Some(rest) => {
                    if !self.skipping {
                        out.push(Split::Line(std::mem::take(&mut self.partial)));
                    }
                    self.skipping = false;
                    bytes = rest;
                }
                None => break,
            }
        }
    }

    /// A new run starts with an empty line.
    pub fn reset(&mut self) {
        *self = LineSplitter::default();
    }
}

/// A running child and its fds.
struct Running {
    child: Child,
    stdout: OwnedFd,
    stderr: OwnedFd,
    pidfd: OwnedFd,
}

/// How much of a feed's stderr reaches the log: [`STDERR_LINES_LOGGED`] lines per window, then
/// a count of those dropped. Pure: times come in.
#[derive(Debug, Default)]
pub struct StderrLog {
    window_start: Option<Duration>,
    logged: u32,
    dropped: u64,
}

impl StderrLog {
    /// Whether to log a line at `now`; when a new window starts, also how many lines the last
    /// one dropped.
    pub fn admit(&mut self, now: Duration) -> (bool, u64) {
        let mut dropped_before = 0;
        if self.window_start.is_none_or(|at| now.saturating_sub(at) >= BAD_LINE_LOG_EVERY) {
            self.window_start = Some(now);
            self.logged = 0;
            dropped_before = std::mem::take(&mut self.dropped);
        }
        if self.logged < STDERR_LINES_LOGGED {
            self.logged += 1;
            (true, dropped_before)
        } else {
            self.dropped += 1;
            (false, dropped_before)
        }
    }
}

/// Counters for `status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FeedCounters {
    pub lines: u64,
    pub bad_lines: u64,
    pub heartbeats: u64,
    /// Times the command was started (the first start included).
    pub starts: u64,
}

/// What a feed's readiness produced for the feeds' owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Hint {
    Change { dir: String, name: Option<String> },
    Overflow { root: String },
}

pub struct Feed {
    pub config: FeedConfig,
    pub supervision: Supervision,
    running: Option<Running>,
    splitter: LineSplitter,
    pub counters: FeedCounters,
    /// When the last heartbeat line came.
    pub last_heartbeat: Option<Duration>,
    /// Bad lines not yet logged, and when one was last logged.
    unlogged_bad: u64,
    last_bad_log: Option<Duration>,
    /// Its stderr, split into lines and rate-limited into the log.
    stderr_lines: LineSplitter,
    stderr_log: StderrLog,
    /// This feed's epoll tokens: `token` for stdout, `token + 1` for the pidfd, `token + 2` for
    /// stderr ([`TOKENS_PER_FEED`]).
    token: u64,
}

/// Epoll tokens each feed takes.
pub const TOKENS_PER_FEED: u64 = 3;

impl Feed {
    pub fn new(config: FeedConfig, token: u64) -> Feed {
        let supervision = Supervision::new(config.heartbeat_timeout);
        Feed {
            config,
            supervision,
            running: None,
            splitter: LineSplitter::default(),
            counters: FeedCounters::default(),
            last_heartbeat: None,
            unlogged_bad: 0,
            last_bad_log: None,
            stderr_lines: LineSplitter::default(),
            stderr_log: StderrLog::default(),
            token,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// The command as one line for the log.
    pub fn command_text(&self) -> String {
        self.config.command.join(" ")
    }

    /// Acts on the supervision's decision for `now`.
    pub fn tick(&mut self, epoll: BorrowedFd<'_>, now: Duration) {
        match self.supervision.tick(now) {
            Action::Nothing => {}
            Action::Kill => {
                warn!(
                    "feed {}: no line for {}; restarting it",
                    self.command_text(),
                    fakenotify_ctl::duration::format_duration(self.config.heartbeat_timeout)
                );
                if let Some(running) = &mut self.running {
                    // Its exit shows on the pidfd, where it is reaped.
                    let _ = running.child.kill();
                } else {
                    self.supervision.exited(now);
                }
            }
            Action::Spawn => match self.spawn(epoll) {
                Ok(()) => {
                    self.supervision.spawned(now);
                    self.counters.starts += 1;
                    info!("feed {}: started, pid {}", self.command_text(), self.pid().unwrap_or(0));
                }
                Err(error) => {
                    warn!("feed {}: {error}", self.command_text());
                    self.supervision.spawn_failed(now);
                }
            },
        }
    }

    fn spawn(&mut self, epoll: BorrowedFd<'_>) -> Result<(), SpawnError> {
        let Some((program, args)) = self.config.command.split_first() else {
            return Err(SpawnError::Spawn(std::io::Error::other("empty command")));
        };
        let mut child = Command::new(program)
            .args(args)
            // A preloaded daemon's environment is no reason to preload its feeds.
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(SpawnError::Spawn)?;
        let started = (|| {
            let stdout: OwnedFd =
                child.stdout.take().ok_or(SpawnError::Setup("stdout", Errno::BADF))?.into();
            let stderr: OwnedFd =
                child.stderr.take().ok_or(SpawnError::Setup("stderr", Errno::BADF))?.into();
            for fd in [&stdout, &stderr] {
                rustix::io::ioctl_fionbio(fd, true)
                    .map_err(|e| SpawnError::Setup("ioctl FIONBIO", e))?;
            }
            let pid = rustix::process::Pid::from_child(&child);
            let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
                .map_err(|e| SpawnError::Setup("pidfd_open", e))?;
            epoll::add(epoll, &stdout, EventData::new_u64(self.token), EventFlags::IN)
                .map_err(|e| SpawnError::Setup("epoll_ctl stdout", e))?;
            if let Err(e) =
                epoll::add(epoll, &pidfd, EventData::new_u64(self.token + 1), EventFlags::IN)
            {
                let _ = epoll::delete(epoll, &stdout);
                return Err(SpawnError::Setup("epoll_ctl pidfd", e));
            }
            if let Err(e) =
                epoll::add(epoll, &stderr, EventData::new_u64(self.token + 2), EventFlags::IN)
            {
                let _ = epoll::delete(epoll, &stdout);
                let _ = epoll::delete(epoll, &pidfd);
                return Err(SpawnError::Setup("epoll_ctl stderr", e));
            }
            Ok((stdout, stderr, pidfd))
        })();
        match started {
            Ok((stdout, stderr, pidfd)) => {
                self.splitter.reset();
                self.stderr_lines.reset();
                self.running = Some(Running { child, stdout, stderr, pidfd });
                Ok(())
            }
            Err(error) => {
                let _ = child.kill();
                // Killed, it exits at once: no wait on a hung filesystem here.
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// Reads what the child wrote (up to [`READ_PER_TURN`]), counts good and bad lines and
    /// returns the hints.
    pub fn read(&mut self, epoll: BorrowedFd<'_>, now: Duration) -> Vec<Hint> {
        let mut hints = Vec::new();
        let Some(running) = &self.running else { return hints };
        let mut buf = [0u8; 8192];
        let mut splits = Vec::new();
        let mut total = 0;
        let mut closed = false;
        while total < READ_PER_TURN {
            match rustix::io::read(&running.stdout, &mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    self.splitter.push(&buf[..n], &mut splits);
                }
                Err(Errno::INTR) => continue,
                Err(_) => break,
            }
        }
        for split in splits {
            let parsed = match split {
                Split::Line(line) => feed_line::parse(&line),
                Split::TooLong => Err(LineError::TooLong),
            };
            match parsed {
                Ok(line) => {
                    self.counters.lines += 1;
                    self.supervision.line(now);
                    match line {
                        FeedLine::Heartbeat(_) => {
                            self.counters.heartbeats += 1;
                            self.last_heartbeat = Some(now);
                        }
                        FeedLine::Change { dir, name } => hints.push(Hint::Change { dir, name }),
                        FeedLine::Overflow { root } => hints.push(Hint::Overflow { root }),
                    }
                }
                Err(error) => self.bad_line(&error.to_string(), now),
            }
        }
        if closed {
            // EOF: the child closed its stdout; stop reading, the pidfd tells of its exit.
            if let Some(running) = &self.running {
                let _ = epoll::delete(epoll, &running.stdout);
            }
        }
        hints
    }

    /// Logs what the child wrote to stderr (up to [`STDERR_PER_TURN`]), a few lines per window.
    pub fn read_stderr(&mut self, epoll: BorrowedFd<'_>, now: Duration) {
        let Some(running) = &self.running else { return };
        let mut buf = [0u8; 4096];
        let mut splits = Vec::new();
        let mut total = 0;
        while total < STDERR_PER_TURN {
            match rustix::io::read(&running.stderr, &mut buf) {
                Ok(0) => {
                    let _ = epoll::delete(epoll, &running.stderr);
                    break;
                }
                Ok(n) => {
                    total += n;
                    self.stderr_lines.push(&buf[..n], &mut splits);
                }
                Err(Errno::INTR) => continue,
                Err(_) => break,
            }
        }
        for split in splits {
            let text = match &split {
                Split::Line(line) => fakenotify_ctl::render::escape_bytes(line),
                Split::TooLong => format!("(a line longer than {MAX_LINE} bytes)"),
            };
            let (log, dropped) = self.stderr_log.admit(now);
            if dropped > 0 {
                warn!("feed {}: {dropped} stderr lines not logged", self.command_text());
            }
            if log {
                warn!("feed {}: stderr: {text}", self.command_text());
            }
        }
    }

    /// Counts a bad line and logs it, rate-limited.
    pub fn bad_line(&mut self, why: &str, now: Duration) {
        self.counters.bad_lines += 1;
        self.unlogged_bad += 1;
        let due = self.last_bad_log.is_none_or(|at| now.saturating_sub(at) >= BAD_LINE_LOG_EVERY);
        if due {
            warn!(
                "feed {}: {} bad line(s) dropped, the last: {why}",
                self.command_text(),
                self.unlogged_bad
            );
            self.unlogged_bad = 0;
            self.last_bad_log = Some(now);
        }
    }

    /// The pidfd is readable: the child exited. Reaps it and schedules the restart.
    pub fn exited(&mut self, epoll: BorrowedFd<'_>, now: Duration) {
        let Some(mut running) = self.running.take() else { return };
        let _ = epoll::delete(epoll, &running.stdout);
        let _ = epoll::delete(epoll, &running.stderr);
        let _ = epoll::delete(epoll, &running.pidfd);
        let status = match running.child.try_wait() {
            Ok(Some(status)) => status.to_string(),
            Ok(None) => {
                // The pidfd said it exited; a wait cannot block long.
                let _ = running.child.kill();
                running.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string())
            }
            Err(error) => error.to_string(),
        };
        self.supervision.exited(now);
        let FeedState::Backoff { until } = self.supervision.state else { return };
        warn!(
            "feed {}: exited ({status}); restarting in {}",
            self.command_text(),
            fakenotify_ctl::duration::format_duration(until.saturating_sub(now))
        );
    }

    /// Whether `token` is this feed's (its stdout's, pidfd's or stderr's).
    pub fn owns(&self, token: u64) -> bool {
        (self.token..self.token + TOKENS_PER_FEED).contains(&token)
    }

    pub fn is_stderr(&self, token: u64) -> bool {
        token == self.token + 2
    }

    pub fn is_pidfd(&self, token: u64) -> bool {
        token == self.token + 1
    }

    pub fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Why a feed's command could not be started.
#[derive(Debug)]
pub enum SpawnError {
    Spawn(std::io::Error),
    Setup(&'static str, Errno),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Spawn(error) => write!(f, "cannot start: {error}"),
            SpawnError::Setup(op, errno) => write!(f, "cannot start: {op}: {errno}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_feed_is_healthy_only_while_lines_come() {
        let mut sup = Supervision::new(s(15));
        assert_eq!(sup.tick(s(0)), Action::Spawn);
        sup.spawned(s(0));
        assert!(!sup.healthy(s(1)), "no line yet");
        sup.line(s(2));
        assert!(sup.healthy(s(2)));
        assert!(sup.healthy(s(16)));
        assert!(!sup.healthy(s(17)), "quiet for the timeout");
        assert_eq!(sup.tick(s(16)), Action::Nothing);
        assert_eq!(sup.next_deadline(), Some(s(17)));
        assert_eq!(sup.tick(s(17)), Action::Kill);
        assert_eq!(sup.state, FeedState::Stopping);
        assert!(!sup.healthy(s(17)));
    }

    #[test]
    fn a_feed_that_never_speaks_is_killed_after_the_timeout() {
        let mut sup = Supervision::new(s(15));
        sup.spawned(s(100));
        assert_eq!(sup.tick(s(114)), Action::Nothing);
        assert_eq!(sup.tick(s(115)), Action::Kill);
    }

    #[test]
    fn restarts_back_off_from_one_second_to_a_minute() {
        let mut sup = Supervision::new(s(15));
        let mut now = s(0);
        let mut delays = Vec::new();
        for _ in 0..9 {
            assert_eq!(sup.tick(now), Action::Spawn);
            sup.spawned(now);
            sup.line(now);
            sup.exited(now);
            let FeedState::Backoff { until } = sup.state else { panic!("{:?}", sup.state) };
            delays.push((until - now).as_secs());
            assert_eq!(sup.tick(until - Duration::from_millis(1)), Action::Nothing);
            now = until;
        }
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // A run healthy for a minute counts as stable: the next delay is a second again.
        sup.spawned(now);
        sup.line(now);
        sup.line(now + s(61));
        sup.exited(now + s(61));
        assert_eq!(sup.state, FeedState::Backoff { until: now + s(62) });
    }

    #[test]
    fn stderr_is_logged_a_few_lines_per_window() {
        let mut log = StderrLog::default();
        let admitted: Vec<bool> =
            (0..8).map(|i| log.admit(s(100) + Duration::from_millis(i)).0).collect();
        assert_eq!(admitted, [true, true, true, true, true, false, false, false]);
        assert_eq!(log.admit(s(110)), (true, 3), "a new window says how many were dropped");
        assert_eq!(log.admit(s(111)), (true, 0));
    }

    #[test]
    fn lines_are_split_and_bounded() {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        splitter.push(b"ab\ncd", &mut out);
        splitter.push(b"e\n\nf", &mut out);
        assert_eq!(
            out,
            vec![Split::Line(b"ab".to_vec()), Split::Line(b"cde".to_vec()), Split::Line(vec![])]
        );
        out.clear();
        // A line longer than MAX_LINE in pieces: one TooLong, nothing kept, the next line whole.
        for _ in 0..10 {
            splitter.push(&[b'x'; 1000], &mut out);
        }
        assert!(splitter.partial.len() <= MAX_LINE);
        splitter.push(b"x\nok\n", &mut out);
        assert_eq!(out, vec![Split::TooLong, Split::Line(b"ok".to_vec())]);
        out.clear();
        let exact = vec![b'y'; MAX_LINE];
        splitter.push(&exact, &mut out);
        splitter.push(b"\n", &mut out);
        assert_eq!(out, vec![Split::Line(exact)]);
    }
}
