//! Where a received fd lies, learned without a filesystem call: the event loop must not wait on
//! a mount to decide whether a request may wait on it.
//!
//! `/proc/self/fdinfo/N` names the fd's mount (`mnt_id`) and `/proc/self/mountinfo` that mount's
//! device and type; both are the kernel's own tables, read without asking the filesystem. An fd
//! on a kernel filesystem backed by local storage or memory is served on the loop, as before:
//! its calls answer from memory or a local disk in microseconds, and a hop to a thread would
//! double a local `inotify_add_watch`. Every other fd (NFS, SMB, FUSE, 9p, Ceph, a mount this
//! daemon's namespace does not show) goes to the worker of its device.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::mountinfo;

/// Filesystem types whose calls never leave the machine.
const LOCAL_TYPES: &[&str] = &[
    "ext2",
    "ext3",
    "ext4",
    "xfs",
    "btrfs",
    "bcachefs",
    "f2fs",
    "jfs",
    "reiserfs",
    "nilfs2",
    "zfs",
    "vfat",
    "msdos",
    "exfat",
    "ntfs",
    "ntfs3",
    "hfs",
    "hfsplus",
    "udf",
    "iso9660",
    "squashfs",
    "erofs",
    "tmpfs",
    "ramfs",
    "devtmpfs",
    "overlay",
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "hugetlbfs",
    "debugfs",
    "tracefs",
    "securityfs",
    "configfs",
    "bpf",
    "pstore",
    "efivarfs",
    "binfmt_misc",
    "fusectl",
];

/// Where a request about an fd is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// On the event loop: a local filesystem.
    Local,
    /// On the worker thread keyed `worker`: the mount's device number (`st_dev`) when this
    /// daemon's mount table shows it, else a key of its own for that mount.
    Remote { worker: u64 },
}

/// The worker of fds whose mount cannot be told at all.
const UNKNOWN_MOUNT: u64 = u64::MAX;
/// Keys of mounts outside this daemon's mount namespace (a container's), by mount id.
const FOREIGN_MOUNT: u64 = 1 << 63;

/// What each mount id was found to be; mount ids are not reused while the mount stands, and
/// a mount gone leaves an entry of a few bytes.
#[derive(Default)]
pub struct Intake {
    by_mount: HashMap<u64, Reach>,
}

impl Intake {
    pub fn reach(&mut self, fd: BorrowedFd<'_>) -> Reach {
        let Some(mount) = mount_id(fd) else { return Reach::Remote { worker: UNKNOWN_MOUNT } };
        if let Some(&reach) = self.by_mount.get(&mount) {
            return reach;
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let reach = classify(&text, mount);
        self.by_mount.insert(mount, reach);
        reach
    }
}

/// The reach of mount `mount` by the text of a `mountinfo` file.
fn classify(text: &str, mount: u64) -> Reach {
    match mountinfo::find_id(text, mount) {
        Some((_, entry)) if LOCAL_TYPES.contains(&entry.fs_type.as_str()) => Reach::Local,
        Some(((major, minor), _)) => Reach::Remote { worker: rustix::fs::makedev(major, minor) },
        None => Reach::Remote { worker: FOREIGN_MOUNT | mount },
    }
}

/// The `mnt_id` line of `/proc/self/fdinfo/N`.
fn mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    parse_mount_id(&text)
}

fn parse_mount_id(fdinfo: &str) -> Option<u64> {
    fdinfo.lines().find_map(|line| line.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /tmp rw - tmpfs tmpfs rw
45 27 0:40 / /tmp/bt/m rw,nosuid,nodev,relatime - fuse /tmp/bt/b rw,user_id=0,group_id=0
50 22 0:52 / /mnt/nas rw - nfs4 nas:/volume1 rw
";

    #[test]
    fn local_filesystems_stay_on_the_loop_and_others_go_to_their_device() {
        assert_eq!(classify(MOUNTS, 22), Reach::Local);
        assert_eq!(classify(MOUNTS, 30), Reach::Local);
        assert_eq!(classify(MOUNTS, 45), Reach::Remote { worker: rustix::fs::makedev(0, 40) });
        assert_eq!(classify(MOUNTS, 50), Reach::Remote { worker: rustix::fs::makedev(0, 52) });
    }

    #[test]
    fn a_mount_this_namespace_does_not_show_gets_a_worker_of_its_own() {
        assert_eq!(classify(MOUNTS, 99), Reach::Remote { worker: FOREIGN_MOUNT | 99 });
    }

    #[test]
    fn reads_the_mount_id_of_an_fdinfo() {
        let text = "pos:\t0\nflags:\t02100000\nmnt_id:\t45\nino:\t1234\n";
        assert_eq!(parse_mount_id(text), Some(45));
        assert_eq!(parse_mount_id("pos:\t0\n"), None);
    }

    #[test]
    fn an_fd_of_this_process_is_classified() {
        let fd = rustix::fs::open("/proc", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty())
            .expect("open /proc");
        assert_eq!(Intake::default().reach(std::os::fd::AsFd::as_fd(&fd)), Reach::Local);
    }
}
