//! The real `fakenotifyd` on a temporary socket, and what the bench reads of it: the per-policy
//! counters of `status`, and its resident memory from `/proc/PID/status`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fakenotify_ctl::message::{PolicyInfo, Response, Status};
use fakenotify_ctl::transport::Connection;
use fakenotify_proto::control::ControlRequest;

pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    dir: PathBuf,
}

/// Resident memory of `pid` in bytes (`VmRSS`).
pub fn rss(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// Its private anonymous part (`RssAnon`): the heap and stacks, without the mapped binary and
/// shared libraries.
pub fn rss_anon(pid: u32) -> u64 {
    proc_status(pid, "RssAnon:")
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl Daemon {
    /// Starts `fakenotifyd start` with `config` (TOML) in a fresh directory under `work`.
    pub fn start(binary: &Path, work: &Path, name: &str, config: &str) -> Daemon {
        let dir = work.join(format!("daemon-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("daemon directory");
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).expect("daemon config");
        let socket = dir.join("fn.sock");
        let log = std::fs::File::create(dir.join("daemon.log")).expect("daemon log");
        let child = Command::new(binary)
            .arg("start")
            .arg("--config")
            .arg(&config_path)
            .arg("--socket")
            .arg(&socket)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let daemon = Daemon { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while daemon.try_status().is_none() {
            assert!(Instant::now() < deadline, "fakenotifyd did not answer; see {}", daemon.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss(&self) -> u64 {
        rss(self.pid())
    }

    pub fn rss_anon(&self) -> u64 {
        rss_anon(self.pid())
    }

    fn log(&self) -> String {
        self.dir.join("daemon.log").display().to_string()
    }

    fn try_status(&self) -> Option<Status> {
        match Connection::connect(&self.socket).ok()?.control(&ControlRequest::Status).ok()? {
            Response::Status(status) => Some(*status),
            _ => None,
        }
    }

    pub fn status(&self) -> Status {
        self.try_status()
            .unwrap_or_else(|| panic!("no status from fakenotifyd; see {}", self.log()))
    }

    /// The counters of the policy for `root`.
    pub fn policy(&self, root: &Path) -> PolicyInfo {
        let root = root.display().to_string();
        self.status()
            .policies
            .into_iter()
            .find(|p| p.path == root)
            .unwrap_or_else(|| panic!("no policy {root} in status"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `[daemon]` and `[[watch]]` configuration: `roots` in `mode`, polled every `interval`, their
/// directories listed as `listing` says. The limits are out of the way, the share of fds too:
/// with `RLIMIT_NOFILE` at 20 000 a uid's share (an eighth) would refuse most of the 10 000
/// polled files of the add_watch figures.
pub fn config(
    roots: &[&Path],
    interval: &str,
    max_ops: Option<u32>,
    mode: &str,
    listing: &str,
) -> String {
    let mut text = format!(
        "[daemon]\nlog_level = \"warn\"\ndefault_poll_interval = \"{interval}\"\n\
         max_user_watches = 4000000\nmax_queued_events = 1000000\nmax_user_polled = 4000000\n\
         max_user_entries = 4000000\nmax_entries = 4000000\nmax_user_fds = 4000000\n"
    );
    for root in roots {
        text.push_str(&format!(
            "\n[[watch]]\npath = \"{}\"\npoll_interval = \"{interval}\"\nmode = \"{mode}\"\n\
             listing = \"{listing}\"\n",
            root.display()
        ));
        if let Some(max_ops) = max_ops {
            text.push_str(&format!("max_ops = {max_ops}\n"));
        }
    }
    text
}
