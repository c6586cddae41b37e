//! Helper processes: those a test keeps running in the background (a FUSE server in the
//! foreground, sshd), their output in a log file, stopped on drop (SIGTERM, then SIGKILL if
//! they linger), and those it runs to completion (bindfs, ssh-keygen).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process gets to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(5);

/// A running child whose stdout and stderr go to a log file; `Drop` stops it ([`terminate`]).
#[derive(Debug)]
pub struct Background {
    label: String,
    child: Child,
    log: PathBuf,
}

impl Background {
    /// Spawns `command` (stdin from /dev/null, stdout and stderr to `log`); panics naming
    /// `label` and `install` (what to install) when the program cannot be started.
    pub fn spawn(label: &str, command: &mut Command, log: PathBuf, install: &str) -> Background {
        let file = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let copy = file.try_clone().unwrap_or_else(|e| panic!("dup {}: {e}", log.display()));
        let child = command
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(copy)
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e} ({install})"));
        Background { label: label.to_owned(), child, log }
    }

    /// The exit status once the process has ended by itself.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Runs `command` to completion (stdin from /dev/null); panics with its stderr if it fails, or
/// naming `install` (what to install) if it cannot be started.
pub fn run(command: &mut Command, install: &str) {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} ({install})"));
    if !output.status.success() {
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
        panic!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Stops `child` if it still runs: SIGTERM, up to [`GRACE`] to exit, then SIGKILL; reaps it.
pub fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + GRACE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
