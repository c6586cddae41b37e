//! A latency-bound mount: `scripts/delayfs.py`, a FUSE passthrough that answers every request
//! after a fixed delay and serves many at once, over a fresh backing directory. It stands in
//! for NFS, SMB, sshfs or rclone across a network, where each `statx` is a round trip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::temp::TempDir;
use crate::WAIT;

/// The interpreter with Debian's pyfuse3 (python3-pyfuse3), whatever `python3` is on PATH.
const PYTHON: &str = "/usr/bin/python3";

/// A mounted delayfs; `Drop` unmounts it and ends its server.
pub struct DelayMount {
    pub backing: PathBuf,
    pub mount: PathBuf,
    server: Child,
    _dir: TempDir,
}

impl DelayMount {
    /// Mounts delayfs answering each request after `delay_ms`; panics with what to install
    /// when pyfuse3 or FUSE is missing.
    pub fn new(delay_ms: f64) -> DelayMount {
        let usable = Command::new(PYTHON)
            .args(["-c", "import pyfuse3, trio"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(usable, "delayfs needs {PYTHON} with pyfuse3 and trio (python3-pyfuse3)");
        let dir = TempDir::new("delayfs");
        let (backing, mount) = (dir.join("backing"), dir.join("mount"));
        for d in [&backing, &mount] {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/delayfs.py");
        let server = Command::new(PYTHON)
            .arg(&script)
            .arg(&backing)
            .arg(&mount)
            .arg(delay_ms.to_string())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        let mut delayfs = DelayMount { backing, mount, server, _dir: dir };
        let deadline = Instant::now() + WAIT;
        while !delayfs.is_mounted() {
            if let Ok(Some(status)) = delayfs.server.try_wait() {
                panic!("delayfs exited ({status}) before mounting");
            }
            assert!(Instant::now() < deadline, "delayfs did not mount within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        delayfs
    }

    /// The pid of the FUSE server, to stop it as a hung server would be.
    pub fn server_pid(&self) -> i32 {
        self.server.id() as i32
    }

    /// `backing/name`: where a test makes the changes the kernel will not report.
    pub fn backing(&self, name: impl AsRef<Path>) -> PathBuf {
        self.backing.join(name)
    }

    /// `mount/name`: where clients watch.
    pub fn mounted(&self, name: impl AsRef<Path>) -> PathBuf {
        self.mount.join(name)
    }

    fn is_mounted(&self) -> bool {
        let wanted = format!(" {} ", self.mount.display());
        std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|text| text.contains(&wanted))
    }
}

impl Drop for DelayMount {
    fn drop(&mut self) {
        let unmounted = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mount)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
            let _ = self.server.kill();
        }
        let _ = self.server.wait();
    }
}
