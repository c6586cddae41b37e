//! FUSE mounts over fresh backing directories: bindfs, the stand-in for an NFS export, the FUSE
//! servers users run (rclone, sshfs, mergerfs) with their own quirks, and delayfs, whose every
//! request takes a set time.
//!
//! Changes made in `backing` reach the mount without passing through its VFS, so the kernel
//! sends no inotify event for them on `mount`, exactly as with a file changed by another NFS
//! client. Changes made through `mount` do produce kernel events (useful as markers).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{run, Background};
use crate::sshd::{Sshd, SSH_PACKAGES};
use crate::temp::TempDir;
use crate::WAIT;

/// A stopped FUSE server ([`FuseMount::freeze`]), continued on drop.
pub struct Frozen(i32);

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process `FuseMount::freeze` stopped.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// The bindfs process serving `mount` (bindfs puts itself in the background), found by its
/// command line.
fn bindfs_pid(mount: &Path) -> i32 {
    let wanted = mount.to_str().expect("UTF-8 temp path");
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.first().is_some_and(|a| a.ends_with("bindfs")) && args.iter().any(|a| a == wanted) {
            return pid;
        }
    }
    panic!("no bindfs process serves {wanted}");
}

/// `statfs` type of FUSE mounts.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
/// `statfs` type of tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A mounted FUSE filesystem; `Drop` unmounts it (`fusermount3 -u`, else `umount -l`), stops
/// the processes it needs and removes its directories.
pub struct FuseMount {
    /// Where a test makes the changes behind the mount: the backing directory, or the last
    /// branch of a mergerfs pool.
    pub backing: PathBuf,
    pub mount: PathBuf,
    /// Every directory the mount shows, in the server's order: `backing` alone but for
    /// mergerfs.
    pub branches: Vec<PathBuf>,
    /// The server when it runs in the foreground as our child (all but bindfs), stopped once
    /// unmounted (it normally exits by itself then).
    server: Option<Background>,
    /// The sshd an sshfs mount talks to; stopped after the server.
    sshd: Option<Sshd>,
    /// `None` once a mount that would not go away made us leave the directory in place.
    dir: Option<TempDir>,
}

impl FuseMount {
    /// Mounts bindfs; panics with what to install when bindfs or `/dev/fuse` is missing.
    // Mounting is a side effect, not a default value.
    #[allow(clippy::new_without_default)]
    pub fn new() -> FuseMount {
        FuseMount::with_options(&[])
    }

    /// Like [`FuseMount::new`], with more bindfs arguments (`["-o", "allow_other"]` lets other
    /// users than root reach the mount).
    pub fn with_options(options: &[&str]) -> FuseMount {
        FuseMount::mount_in(TempDir::new("fuse"), options)
    }

    /// Like [`FuseMount::new`], with the backing directory on tmpfs (`/dev/shm`), which never
    /// reuses an inode number while ext4 hands a freed one out again at once. Where
    /// `/dev/shm` is no tmpfs, under the temporary directory as `new` does.
    pub fn on_tmpfs() -> FuseMount {
        let shm = Path::new("/dev/shm");
        let dir = if fs_type(shm) == Some(TMPFS_MAGIC) {
            TempDir::new_in(shm, "fuse")
        } else {
            TempDir::new("fuse")
        };
        FuseMount::mount_in(dir, &[])
    }

    fn mount_in(dir: TempDir, options: &[&str]) -> FuseMount {
        const INSTALL: &str = "Debian/Ubuntu: apt-get install bindfs fuse3";
        require(&["bindfs"], INSTALL);
        let [backing, mount] = subdirectories(&dir, ["backing", "mount"]);
        // bindfs mounts, then goes to the background by itself.
        run(Command::new("bindfs").args(options).arg(&backing).arg(&mount), INSTALL);
        FuseMount::up(dir, vec![backing], mount, None, None)
    }

    /// A second bindfs mount of `backing` (another mount's backing directory): two client
    /// "hosts" of one file server. Its own `backing` is `backing`, which it does not remove.
    pub fn bindfs_of(backing: &Path) -> FuseMount {
        const INSTALL: &str = "Debian/Ubuntu: apt-get install bindfs fuse3";
        require(&["bindfs"], INSTALL);
        let dir = TempDir::new("fuse");
        let [mount] = subdirectories(&dir, ["mount"]);
        run(Command::new("bindfs").arg(backing).arg(&mount), INSTALL);
        FuseMount::up(dir, vec![backing.to_path_buf()], mount, None, None)
    }

    /// `rclone mount` of a local directory (the `:local:` backend, no configuration file),
    /// with caches short enough that a change behind the mount shows in a listing within
    /// about 100 ms: `--dir-cache-time 100ms` (5 min by default, which hides changes from
    /// every poller), `--attr-timeout 100ms`, and `--poll-interval 0` (the local backend
    /// cannot be polled for changes anyway).
    pub fn rclone() -> FuseMount {
        const INSTALL: &str = "Debian/Ubuntu: apt-get install rclone fuse3";
        let (dir, [backing, mount, cache]) =
            layout("rclone", &["rclone"], INSTALL, ["backing", "mount", "cache"]);
        let mut command = Command::new("rclone");
        command
            .args(["mount", "--config", "/dev/null", "--cache-dir"])
            .arg(&cache)
            .args(["--dir-cache-time", "100ms", "--attr-timeout", "100ms", "--poll-interval", "0"])
            .arg(format!(":local:{}", backing.display()))
            .arg(&mount);
        FuseMount::serve(dir, command, INSTALL, vec![backing], mount, None)
    }

    /// sshfs to root@127.0.0.1 on an sshd of its own ([`Sshd`]), with sshfs's directory cache
    /// off (`dir_cache=no`; else names are cached for `dcache_timeout`, 20 s).
    pub fn sshfs() -> FuseMount {
        let programs = ["sshfs", "ssh", "ssh-keygen"];
        let (dir, [backing, mount, ssh]) =
            layout("sshfs", &programs, SSH_PACKAGES, ["backing", "mount", "ssh"]);
        let sshd = Sshd::start(&ssh);
        let options = format!(
            "IdentityFile={},port={},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,\
             BatchMode=yes,LogLevel=ERROR,dir_cache=no",
            sshd.identity.display(),
            sshd.port
        );
        let mut command = Command::new("sshfs");
        command
            // -F: no ssh_config of the machine or the user (a ControlMaster, another key).
            .args(["-f", "-F", "/dev/null", "-o", &options])
            .arg(format!("root@127.0.0.1:{}", backing.display()))
            .arg(&mount);
        FuseMount::serve(dir, command, SSH_PACKAGES, vec![backing], mount, Some(sshd))
    }

    /// A mergerfs pool of two branches, `disk1` and `disk2`, with mergerfs's defaults (among
    /// them `func.getattr=ff`: a directory present in both shows `disk1`'s attributes).
    /// [`FuseMount::backing`] is `disk2`, where changes go unseen in the pool's attributes.
    pub fn mergerfs() -> FuseMount {
        const INSTALL: &str = "Debian/Ubuntu: apt-get install mergerfs fuse3";
        let (dir, [disk1, disk2, pool]) =
            layout("mergerfs", &["mergerfs"], INSTALL, ["disk1", "disk2", "pool"]);
        let mut command = Command::new("mergerfs");
        command.arg("-f").arg(format!("{}:{}", disk1.display(), disk2.display())).arg(&pool);
        FuseMount::serve(dir, command, INSTALL, vec![disk1, disk2], pool, None)
    }

    /// A latency-bound mount: `scripts/delayfs.py`, a read-only passthrough that answers every
    /// request after `delay_ms` and serves many at once, as NFS, SMB, sshfs or rclone across a
    /// network do. It runs on Debian's python3 with pyfuse3, whatever `python3` is on PATH.
    pub fn delayfs(delay_ms: f64) -> FuseMount {
        FuseMount::delayfs_with(delay_ms, &[])
    }

    /// A delayfs mount on which opening a directory whose name starts with `prefix` takes
    /// `slow_ms` more: a slow spot on the server a test can aim at.
    pub fn delayfs_with_slow_dirs(delay_ms: f64, prefix: &str, slow_ms: f64) -> FuseMount {
        FuseMount::delayfs_with(delay_ms, &[prefix.to_owned(), slow_ms.to_string()])
    }

    fn delayfs_with(delay_ms: f64, extra: &[String]) -> FuseMount {
        const INSTALL: &str = "Debian/Ubuntu: apt-get install python3-pyfuse3 python3-trio fuse3";
        const PYTHON: &str = "/usr/bin/python3";
        let usable = Command::new(PYTHON)
            .args(["-c", "import pyfuse3, trio"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(usable, "delayfs needs {PYTHON} with pyfuse3 and trio ({INSTALL})");
        let (dir, [backing, mount]) = layout("delayfs", &[], INSTALL, ["backing", "mount"]);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/delayfs.py");
        let mut command = Command::new(PYTHON);
        command.arg(script).arg(&backing).arg(&mount).arg(delay_ms.to_string()).args(extra);
        FuseMount::serve(dir, command, INSTALL, vec![backing], mount, None)
    }

    /// The pid of the FUSE server when it runs as our child (all but bindfs), to stop it as
    /// a hung server would be.
    pub fn server_pid(&self) -> Option<i32> {
        self.server.as_ref().map(|server| server.pid() as i32)
    }

    /// Stops the process serving the mount (SIGSTOP), as a server that goes away: every call
    /// on the mount that needs it waits until the returned guard is dropped (SIGCONT, also
    /// when the test fails, so the mount can be unmounted).
    pub fn freeze(&self) -> Frozen {
        let pid = self.server_pid().unwrap_or_else(|| bindfs_pid(&self.mount));
        // SAFETY: kill(2) on the FUSE server this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP {pid}");
        Frozen(pid)
    }

    /// Starts `command`, a FUSE server that stays in the foreground, and waits for its mount.
    fn serve(
        dir: TempDir,
        mut command: Command,
        install: &str,
        branches: Vec<PathBuf>,
        mount: PathBuf,
        sshd: Option<Sshd>,
    ) -> FuseMount {
        let program = command.get_program().to_string_lossy().into_owned();
        let log = dir.join(format!("{program}.log"));
        let server = Background::spawn(&program, &mut command, log, install);
        FuseMount::up(dir, branches, mount, Some(server), sshd)
    }

    /// The mount once it is up; panics (with the server's output) if it does not come up.
    fn up(
        dir: TempDir,
        branches: Vec<PathBuf>,
        mount: PathBuf,
        server: Option<Background>,
        sshd: Option<Sshd>,
    ) -> FuseMount {
        let backing = branches.last().expect("a mount has a branch").clone();
        let mut fuse = FuseMount { backing, mount, branches, server, sshd, dir: Some(dir) };
        fuse.wait_mounted();
        fuse
    }

    fn wait_mounted(&mut self) {
        let deadline = Instant::now() + WAIT;
        while !is_fuse(&self.mount) {
            let exited = self.server.as_mut().and_then(|s| s.exited());
            if exited.is_some() || Instant::now() > deadline {
                let (label, output) = self
                    .server
                    .as_ref()
                    .map_or(("bindfs".into(), String::new()), |s| (s.label().to_owned(), s.log()));
                let sshd = self.sshd.as_ref().map(|s| format!("\nsshd's log:\n{}", s.log()));
                let state = exited.map_or(format!("still not mounted {WAIT:?} after"), |status| {
                    format!("exited ({status}) before mounting, after")
                });
                panic!(
                    "{}: {state} starting {label}; it printed:\n{output}{}",
                    self.mount.display(),
                    sshd.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `backing/name`: where a test makes the changes the kernel will not report.
    pub fn backing(&self, name: impl AsRef<Path>) -> PathBuf {
        self.backing.join(name)
    }

    /// `mount/name`: where clients watch.
    pub fn mounted(&self, name: impl AsRef<Path>) -> PathBuf {
        self.mount.join(name)
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        let quiet = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .arg(&self.mount)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if is_fuse(&self.mount) && !quiet("fusermount3", &["-u"]) && !quiet("fusermount", &["-u"]) {
            // Busy (a process still holds a file open there): detach it now, free it later.
            quiet("umount", &["-l"]);
        }
        if is_fuse(&self.mount) {
            eprintln!(
                "warning: {} is still mounted; leaving its directory in place",
                self.mount.display()
            );
            // Removing the directory through a live mount would fail halfway.
            std::mem::forget(self.dir.take());
        }
    }
}

/// Panics naming what to install when FUSE, fusermount3 or one of `programs` is missing.
fn require(programs: &[&str], install: &str) {
    if let Err(missing) = check_prerequisites(programs, install) {
        panic!("cannot make a FUSE mount: {missing}");
    }
}

/// `Err(what to install)` when FUSE, fusermount3 or one of `programs` (installed as `install`
/// says) is missing.
pub fn check_prerequisites(programs: &[&str], install: &str) -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err(
            "/dev/fuse is missing: load the fuse module (modprobe fuse), or give the container \
                    --device /dev/fuse --cap-add SYS_ADMIN"
                .into(),
        );
    }
    let found = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
    };
    if let Some(missing) = programs.iter().find(|p| !found(p)) {
        return Err(format!("{missing} is not installed ({install})"));
    }
    if !found("fusermount3") && !found("fusermount") {
        return Err("fusermount3 is not installed (Debian/Ubuntu: apt-get install fuse3)".into());
    }
    Ok(())
}

/// Checks for `programs` ([`require`]), then makes a temporary directory labelled `label` with
/// the subdirectories `names`.
fn layout<const N: usize>(
    label: &str,
    programs: &[&str],
    install: &str,
    names: [&str; N],
) -> (TempDir, [PathBuf; N]) {
    require(programs, install);
    let dir = TempDir::new(label);
    let paths = subdirectories(&dir, names);
    (dir, paths)
}

/// Creates `names` in `dir` and returns their paths.
fn subdirectories<const N: usize>(dir: &TempDir, names: [&str; N]) -> [PathBuf; N] {
    names.map(|name| {
        let path = dir.join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    })
}

fn is_fuse(path: &Path) -> bool {
    fs_type(path) == Some(FUSE_SUPER_MAGIC)
}

/// The `statfs` type of the filesystem holding `path`.
fn fs_type(path: &Path) -> Option<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain data; all-zero is valid.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    let ok = unsafe { libc::statfs(c_path.as_ptr(), &mut stats) } == 0;
    ok.then_some(stats.f_type as i64)
}
