//! A `fakenotifyd start` on a temporary socket with a given configuration, stopped on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::terminate;
use crate::temp::TempDir;
use crate::{artifacts, seqpacket, WAIT};

/// Polls every 200 ms: the configuration most tests use.
pub const FAST_CONFIG: &str = "[daemon]\ndefault_poll_interval = \"200ms\"\n";

/// A running daemon. Its stderr goes to a file ([`Daemon::log`]); `Drop` sends SIGTERM, waits,
/// and kills it if it does not stop. When the test is panicking, `Drop` prints the log.
pub struct Daemon {
    child: Option<Child>,
    socket: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

impl Daemon {
    /// Starts `fakenotifyd start --socket DIR/fakenotify.sock --config DIR/config.toml` and
    /// waits until the socket accepts a connection. Panics (with the log) if it exits instead.
    pub fn start(config_toml: &str) -> Daemon {
        Daemon::start_with_fd_limit(config_toml, None)
    }

    /// Like [`Daemon::start`], with the daemon's `RLIMIT_NOFILE` (soft and hard) set to `limit`
    /// (`prlimit`), as on a host with a low limit. [`Daemon::restart`] does not keep it.
    pub fn start_with_fd_limit(config_toml: &str, limit: Option<u64>) -> Daemon {
        let dir = TempDir::new("daemon");
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml).expect("write the daemon's config");
        let socket = dir.join("fakenotify.sock");
        let log_path = dir.join("daemon.log");
        let log = File::create(&log_path).expect("create the daemon's log file");
        let child = spawn(&socket, &config, log, limit);
        let mut daemon = Daemon { child: Some(child), socket, log_path, dir };
        daemon.wait_ready();
        daemon
    }

    /// SIGKILL, as a crash or the OOM killer would end it, and waits for the process to go.
    /// The socket file stays behind, as after a real crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new daemon on the same socket and configuration (the log goes on in the same
    /// file) once this one is gone ([`Daemon::kill`], [`Daemon::stop`]); waits until it serves.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                panic!("restart: fakenotifyd (pid {}) is still running", child.id());
            }
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .expect("reopen the daemon's log file");
        self.child = Some(spawn(&self.socket, &self.dir.join("config.toml"), log, None));
        self.wait_ready();
    }

    /// A daemon with [`FAST_CONFIG`].
    pub fn fast() -> Daemon {
        Daemon::start(FAST_CONFIG)
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if seqpacket::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "fakenotifyd exited ({status}) before serving {}; log:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "fakenotifyd did not accept connections on {} within {WAIT:?}; log:\n{}",
                    self.socket.display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The directory holding the socket, config and log; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until a log line satisfies `pred` and returns it; `None` after `timeout`.
    pub fn wait_for_log(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|l| pred(l)) {
                return Some(line.to_owned());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits up to `timeout` for the daemon to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status; panics if the daemon does not exit within [`WAIT`].
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(WAIT) {
            Some(status) => status,
            None => {
                panic!("fakenotifyd did not exit within {WAIT:?} of SIGTERM; log:\n{}", self.log())
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        if std::thread::panicking() {
            eprintln!(
                "---- fakenotifyd log ({}) ----\n{}---- end of log ----",
                self.socket.display(),
                self.log()
            );
        }
    }
}

/// `fakenotifyd start --socket SOCKET --config CONFIG`, its stderr to `log`; under
/// `prlimit --nofile=N:N` when `fd_limit` is given (the pid is the daemon's: prlimit execs it).
fn spawn(socket: &Path, config: &Path, log: File, fd_limit: Option<u64>) -> Child {
    let mut command = match fd_limit {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(artifacts().fakenotifyd());
            c
        }
        None => Command::new(artifacts().fakenotifyd()),
    };
    command
        .arg("start")
        .arg("--socket")
        .arg(socket)
        .arg("--config")
        .arg(config)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn fakenotifyd")
}

/// The outcome of a `fakenotifyd` run that ends by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `fakenotifyd ARGS...` to completion (killed after [`WAIT`], which panics): for usage and
/// configuration errors, which must exit at once.
pub fn run_fakenotifyd(args: &[&str]) -> Finished {
    let dir = TempDir::new("run");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(artifacts().fakenotifyd())
        .args(args)
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("create stdout file"))
        .stderr(File::create(&err).expect("create stderr file"))
        .spawn()
        .expect("spawn fakenotifyd");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for fakenotifyd") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "fakenotifyd {args:?} still running after {WAIT:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    Finished { status, stdout: read(&out), stderr: read(&err) }
}

/// The part of `fakenotify-ctl status --json` the tests read (unknown keys are skipped).
#[derive(Clone, Debug, Default, nanoserde::DeJson)]
pub struct Status {
    pub uptime_ms: u64,
    pub watches: u64,
    pub objects_polled: u64,
    pub objects_kernel: u64,
    pub polls: u64,
    pub overflows: u64,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Clone, Debug, Default, nanoserde::DeJson)]
pub struct InstanceStatus {
    pub pid: i32,
    pub uid: u32,
    pub watches: u64,
    pub queued: u64,
    pub delivered: u64,
    pub overflows: u64,
}

impl Daemon {
    /// Asks the daemon for its status through `fakenotify-ctl status --json`.
    pub fn status(&self) -> Status {
        let output = Command::new(artifacts().fakenotify_ctl())
            .arg("status")
            .arg("--json")
            .arg("--socket")
            .arg(&self.socket)
            .env_remove("LD_PRELOAD")
            .output()
            .expect("run fakenotify-ctl status");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            panic!(
                "fakenotify-ctl status failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        nanoserde::DeJson::deserialize_json(&stdout).unwrap_or_else(|e| {
            panic!("fakenotify-ctl status --json printed unreadable JSON ({e}):\n{stdout}")
        })
    }
}

impl Daemon {
    /// How long a `status` request takes from this process: connect, ask, read the answer,
    /// without starting a `fakenotify-ctl` process (which is most of `full_status`'s time on
    /// a busy machine).
    pub fn status_round_trip(&self) -> Duration {
        use fakenotify_ctl::message::Response;
        use fakenotify_ctl::transport::Connection;
        use fakenotify_proto::control::ControlRequest;
        let began = Instant::now();
        let conn = Connection::connect(&self.socket).expect("connect to the daemon");
        let answer = conn.control(&ControlRequest::Status).expect("status");
        assert!(matches!(answer, Response::Status(_)), "status answered {answer:?}");
        began.elapsed()
    }

    /// The whole of `fakenotify-ctl status --json`, and how long the daemon took to answer.
    pub fn full_status(&self) -> (fakenotify_ctl::message::Status, Duration) {
        let began = Instant::now();
        let output = run_ctl(&self.socket, &["status", "--json"], false);
        let took = began.elapsed();
        assert!(output.status.success(), "status: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout);
        let status = nanoserde::DeJson::deserialize_json(&text)
            .unwrap_or_else(|e| panic!("status JSON {e}: {text}"));
        (status, took)
    }
}

/// Runs `fakenotify-ctl ARGS --socket SOCKET`, as uid 65534 when `as_nobody`.
pub fn run_ctl(socket: &Path, args: &[&str], as_nobody: bool) -> Output {
    let ctl = artifacts().fakenotify_ctl();
    let mut command = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(ctl);
        c
    } else {
        Command::new(ctl)
    };
    command.args(args).arg("--socket").arg(socket).env_remove("LD_PRELOAD");
    command.output().unwrap_or_else(|e| panic!("run fakenotify-ctl {args:?}: {e}"))
}

/// The resident memory of process `pid` in KiB, from /proc.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}
