//! Inotify clients under test, run as child processes with or without the preload: the C test
//! client (`tests/clients/inotify_client.c`), `inotifywait -m` and Node's `fs.watch`.
//!
//! Each client's stdout and stderr lines arrive on a channel from two reader threads and are kept
//! in order; the tests wait for the line or event they expect (always with a bound) and, on
//! timeout, panic with everything the client printed.

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::masks::{mask_from_names, mask_names};
use crate::{artifacts, Daemon, Libc, WAIT};

/// `$FAKENOTIFY_SOCKET` for clients that must find no daemon: a path that cannot exist.
pub const NO_DAEMON_SOCKET: &str = "/nonexistent/fakenotify-tests/no-daemon.sock";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line a client printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
}

/// One event as a client printed it: `EVENT <wd> <NAMES> <cookie> <name or ->`.
///
/// The C client prints all four fields. inotifywait prints neither wd nor cookie, so its lines
/// (see [`Client::inotifywait`]) carry 0 for both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLine {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// The name inside the watched directory; empty for the watched object itself.
    pub name: String,
}

impl EventLine {
    pub fn parse(text: &str) -> Option<EventLine> {
        let rest = text.strip_prefix("EVENT ")?;
        let mut fields = rest.splitn(4, ' ');
        let wd = fields.next()?.parse().ok()?;
        let mask = mask_from_names(fields.next()?)?;
        let cookie = fields.next()?.parse().ok()?;
        let name = match fields.next().unwrap_or("") {
            "-" => String::new(),
            name => name.to_owned(),
        };
        Some(EventLine { wd, mask, cookie, name })
    }

    /// Whether every bit of `bits` is set.
    pub fn is(&self, bits: u32) -> bool {
        self.mask & bits == bits
    }

    /// Whether this is exactly `mask` (all bits, no others) for `name`.
    pub fn matches(&self, mask: u32, name: &str) -> bool {
        self.mask == mask && self.name == name
    }
}

impl fmt::Display for EventLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() { "-" } else { &self.name };
        write!(f, "wd {} {} cookie {} {}", self.wd, mask_names(self.mask), self.cookie, name)
    }
}

/// A running client. `Drop` kills it.
pub struct Client {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    seen: Vec<Line>,
    /// Waits look at lines from here on; see [`Client::mark`].
    cursor: usize,
    closed: bool,
    /// A panic already showed the transcript.
    reported: bool,
}

impl Client {
    /// Spawns `program ARGS...`. With `preload`, `LD_PRELOAD` names `libfakenotify.so`;
    /// `$FAKENOTIFY_SOCKET` names `daemon`'s socket, or a path where no daemon can be.
    pub fn spawn<S: AsRef<OsStr>>(
        program: impl AsRef<OsStr>,
        args: &[S],
        daemon: Option<&Daemon>,
        preload: bool,
    ) -> Client {
        let socket = daemon.map_or(Path::new(NO_DAEMON_SOCKET), |d| d.socket());
        Client::spawn_with_socket(program, args, socket, preload)
    }

    /// Like [`Client::spawn`], with `$FAKENOTIFY_SOCKET` set to `socket`.
    pub fn spawn_with_socket<S: AsRef<OsStr>>(
        program: impl AsRef<OsStr>,
        args: &[S],
        socket: &Path,
        preload: bool,
    ) -> Client {
        Client::spawn_socket_env(program, args, Some(socket), preload)
    }

    /// Spawns `program ARGS...` with `$FAKENOTIFY_SOCKET` set to `socket`, or unset for `None`
    /// (the preload then looks where it does by default).
    fn spawn_socket_env<S: AsRef<OsStr>>(
        program: impl AsRef<OsStr>,
        args: &[S],
        socket: Option<&Path>,
        preload: bool,
    ) -> Client {
        let program = program.as_ref();
        let mut command = Command::new(program);
        match socket {
            Some(socket) => command.env("FAKENOTIFY_SOCKET", socket),
            None => command.env_remove("FAKENOTIFY_SOCKET"),
        };
        command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if preload {
            command.env("LD_PRELOAD", artifacts().preload());
        } else {
            command.env_remove("LD_PRELOAD");
        }
        let mut child =
            command.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.to_string_lossy()));
        let (tx, rx) = mpsc::channel();
        forward_lines(child.stdout.take().expect("stdout is piped"), Stream::Stdout, tx.clone());
        forward_lines(child.stderr.take().expect("stderr is piped"), Stream::Stderr, tx);
        let name = Path::new(program).file_name().unwrap_or(program).to_string_lossy().into_owned();
        let label = format!("{name}{}", if preload { " (preloaded)" } else { "" });
        Client {
            label,
            stdin: child.stdin.take(),
            child,
            lines: rx,
            seen: Vec::new(),
            cursor: 0,
            closed: false,
            reported: false,
        }
    }

    /// The C test client built against `libc`, with `ARGS` (`-n`, `MASK:PATH`...); returns once
    /// it printed READY, i.e. once its watches are in place.
    pub fn inotify_client(
        libc: Libc,
        args: &[&str],
        daemon: Option<&Daemon>,
        preload: bool,
    ) -> Client {
        let mut client = Client::spawn(artifacts().inotify_client(libc), args, daemon, preload);
        client.label =
            format!("inotify_client-{libc:?}{}", if preload { " (preloaded)" } else { "" });
        client.expect_line("READY", |l| l.text == "READY");
        client
    }

    /// The preloaded C test client built against glibc, without `$FAKENOTIFY_SOCKET`, so the
    /// preload finds the daemon where it looks by default; returns once it printed READY. Only
    /// inside a private mount namespace (see `tests/defaults.rs`): the host's `/run` is not ours.
    pub fn inotify_client_on_default_socket(args: &[&str]) -> Client {
        let program = artifacts().inotify_client(Libc::Glibc);
        let mut client = Client::spawn_socket_env(program, args, None, true);
        client.label = "inotify_client-Glibc (preloaded, default socket)".to_owned();
        client.expect_line("READY", |l| l.text == "READY");
        client
    }

    /// `inotifywait -m` on `paths`, printing `EVENT 0 <NAMES> 0 <name>`; returns once it
    /// reported its watches established.
    pub fn inotifywait(paths: &[&Path], daemon: Option<&Daemon>, preload: bool) -> Client {
        let mut args: Vec<&OsStr> =
            ["-m", "--format", "EVENT 0 %|e 0 %f"].iter().map(OsStr::new).collect();
        args.extend(paths.iter().map(|p| p.as_os_str()));
        let mut client = Client::spawn("inotifywait", &args, daemon, preload);
        client.expect_line("Watches established.", |l| l.text.contains("Watches established"));
        client
    }

    /// `node tests/clients/watch.js PATHS...`, printing `<rename|change> <filename>` per event;
    /// returns once it printed READY.
    pub fn node_watch(paths: &[&Path], daemon: Option<&Daemon>, preload: bool) -> Client {
        let mut args = vec![artifacts().node_watch_script().into_os_string()];
        args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        let mut client = Client::spawn("node", &args, daemon, preload);
        client.expect_line("READY", |l| l.text == "READY");
        client
    }

    /// Writes one command line to the client's stdin (the C client's `rm 1`, `pause`...).
    pub fn command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("the client's stdin is open");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: write {command:?}: {e}", self.label));
    }

    /// An ordering barrier for the C client in `-n` mode: asks it to remove a wd that cannot
    /// exist and waits for the answer. Its single thread reads the inotify fd before stdin when
    /// both are ready, so every event written to its fd before this call is printed by then.
    pub fn barrier(&mut self) {
        self.command("rm 2147483647");
        self.expect_line("RM 2147483647 EINVAL (barrier)", |l| l.text == "RM 2147483647 EINVAL");
    }

    /// Waits up to `timeout` for a line at or after the mark that satisfies `pred`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Line) -> bool,
    ) -> Option<Line> {
        let deadline = Instant::now() + timeout;
        let mut checked = self.cursor;
        loop {
            if let Some(line) = self.seen[checked..].iter().find(|l| pred(l)) {
                return Some(line.clone());
            }
            checked = self.seen.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.receive(left) {
                return None;
            }
        }
    }

    /// Like [`Client::wait_for`] with [`WAIT`]; panics with the transcript if nothing matches.
    pub fn expect_line(&mut self, what: &str, pred: impl FnMut(&Line) -> bool) -> Line {
        match self.wait_for(WAIT, pred) {
            Some(line) => line,
            None => self.fail(&format!("no line {what} within {WAIT:?}")),
        }
    }

    /// Waits (up to [`WAIT`]) for an event at or after the mark that satisfies `pred`; panics
    /// with the transcript if none comes.
    pub fn expect_event(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&EventLine) -> bool,
    ) -> EventLine {
        let found = self.wait_for(WAIT, |l| EventLine::parse(&l.text).is_some_and(|e| pred(&e)));
        match found.and_then(|l| EventLine::parse(&l.text)) {
            Some(event) => event,
            None => self.fail(&format!("no event {what} within {WAIT:?}")),
        }
    }

    /// Collects lines for `duration` and returns those that came in that time.
    pub fn collect_for(&mut self, duration: Duration) -> Vec<Line> {
        let start = self.seen.len();
        let deadline = Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.receive(left) {
                // Once both streams ended, `receive` returns at once: wait out what is left,
                // as measured now (after a timeout nothing is).
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                return self.seen[start..].to_vec();
            }
        }
    }

    /// Later waits ignore what was printed so far.
    pub fn mark(&mut self) {
        self.drain();
        self.cursor = self.seen.len();
    }

    /// Every event printed so far (marks do not apply).
    pub fn events(&mut self) -> Vec<EventLine> {
        self.drain();
        self.seen.iter().filter_map(|l| EventLine::parse(&l.text)).collect()
    }

    /// Events printed since the last [`Client::mark`].
    pub fn events_since_mark(&mut self) -> Vec<EventLine> {
        self.drain();
        self.seen[self.cursor..].iter().filter_map(|l| EventLine::parse(&l.text)).collect()
    }

    /// Every line printed so far, stdout and stderr.
    pub fn lines(&mut self) -> Vec<Line> {
        self.drain();
        self.seen.clone()
    }

    /// The wd of the C client's `WATCH <wd> <path>` line for `path`.
    pub fn wd_of(&mut self, path: &Path) -> i32 {
        let wanted = path.to_string_lossy();
        let found = self.lines().iter().find_map(|l| {
            let rest = l.text.strip_prefix("WATCH ")?;
            let (wd, p) = rest.split_once(' ')?;
            (p == wanted).then(|| wd.parse().ok()).flatten()
        });
        found.unwrap_or_else(|| self.fail(&format!("no WATCH line for {wanted}")))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything printed so far, one line each, prefixed by the stream.
    pub fn transcript(&mut self) -> String {
        self.drain();
        let mut out = String::new();
        for line in &self.seen {
            let stream = if line.stream == Stream::Stdout { "out" } else { "err" };
            out.push_str(&format!("  {stream}| {}\n", line.text));
        }
        out
    }

    /// Panics with `message`, the process state and the transcript.
    pub fn fail(&mut self, message: &str) -> ! {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited: {status}"),
            _ => "running".to_owned(),
        };
        let transcript = self.transcript();
        self.reported = true;
        panic!("{}: {message} ({state}); it printed:\n{transcript}", self.label)
    }

    /// Takes every line already received without waiting.
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits up to `timeout` for one more line; false on timeout or once both streams ended.
    fn receive(&mut self, timeout: Duration) -> bool {
        if self.closed {
            return false;
        }
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                false
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() && !self.reported {
            let transcript = self.transcript();
            eprintln!("---- {} printed ----\n{transcript}---- end ----", self.label);
        }
    }
}

fn forward_lines(stream: impl Read + Send + 'static, which: Stream, tx: Sender<Line>) {
    std::thread::spawn(move || {
        for text in BufReader::new(stream).lines() {
            let Ok(text) = text else { return };
            if tx.send(Line { stream: which, text }).is_err() {
                return;
            }
        }
    });
}
