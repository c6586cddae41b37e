//! A bindfs FUSE mount over a fresh backing directory: the stand-in for an NFS export.
//!
//! Changes made in `backing` reach the mount without passing through its VFS, so the kernel
//! sends no inotify event for them on `mount`, exactly as with a file changed by another NFS
//! client. Changes made through `mount` do produce kernel events (useful as markers).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::temp::TempDir;
use crate::WAIT;

/// `statfs` type of FUSE mounts.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
/// `statfs` type of tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A mounted bindfs; `Drop` unmounts it (`fusermount3 -u`, else `umount -l`) and removes both
/// directories.
pub struct FuseMount {
    pub backing: PathBuf,
    pub mount: PathBuf,
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
        if let Err(missing) = check_prerequisites() {
            panic!("cannot make a FUSE mount: {missing}");
        }
        let backing = dir.join("backing");
        let mount = dir.join("mount");
        for d in [&backing, &mount] {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        let output = Command::new("bindfs")
            .args(options)
            .arg(&backing)
            .arg(&mount)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run bindfs: {e}"));
        if !output.status.success() {
            panic!(
                "bindfs {} {} failed ({}): {}",
                backing.display(),
                mount.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let fuse = FuseMount { backing, mount, dir: Some(dir) };
        fuse.wait_mounted();
        fuse
    }

    fn wait_mounted(&self) {
        let deadline = Instant::now() + WAIT;
        while !is_fuse(&self.mount) {
            if Instant::now() > deadline {
                panic!(
                    "{} is not a FUSE mount {WAIT:?} after bindfs returned",
                    self.mount.display()
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

/// `Err(what to install)` when bindfs or FUSE is missing.
pub fn check_prerequisites() -> Result<(), String> {
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
    if !found("bindfs") {
        return Err("bindfs is not installed (Debian/Ubuntu: apt-get install bindfs fuse3)".into());
    }
    if !found("fusermount3") && !found("fusermount") {
        return Err("fusermount3 is not installed (Debian/Ubuntu: apt-get install fuse3)".into());
    }
    Ok(())
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
