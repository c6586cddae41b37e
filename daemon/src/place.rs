//! The filesystem half of an `inotify_add_watch` on a remote mount, run on the worker of the
//! mount's device so that a slow or hung server holds up only this request: what the client's
//! fd proves, what it is, where it lies, and the fd the daemon keeps of it. The event loop
//! decides the rest (a new object or a join, limits, budgets) from the answer.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::FileType;
use rustix::io::Errno;

use crate::fstype;
use crate::grant;
use crate::mounts::Reading;
use crate::policy::{self, Identity};
use crate::poller::{self, Look};
use crate::registry::{is_watched, Watched};
use crate::scan::{self, ScanCounters, ScanIo};
use crate::watch::{ScanState, STAT_EVENTS};

/// One `inotify_add_watch` handed to a worker: the client's fd, moved, so that its last close
/// (a FUSE `FLUSH` for a file opened for reading) happens on the worker too.
pub struct PlaceJob {
    /// The request waiting on the loop (`Server::pending`).
    pub request: usize,
    pub fd: OwnedFd,
    pub uid: u32,
    /// The request's mask: whether a first listing takes attributes.
    pub mask: u32,
    /// What the registry holds: an object not in it is listed here at once.
    pub watched: Watched,
}

/// What a worker found out about the object of a request.
pub struct Placed {
    pub identity: Identity,
    pub is_dir: bool,
    /// The filesystem `statfs` names, when it is one the kernel cannot watch.
    pub remote: Option<&'static str>,
    /// The fd reaches a path the server no longer has, through a dentry the kernel still
    /// caches (FUSE keeps one for a second): the kernel would not find the path.
    pub stale: bool,
    /// The object and its ancestors on its device, for matching `[[watch]]` policies.
    pub ancestry: Vec<Identity>,
    /// The fd the daemon keeps (`readable`).
    pub kept: OwnedFd,
    /// For a directory: the identity of its parent.
    pub parent: Option<Identity>,
    /// For people: status and log lines.
    pub path: String,
    /// The object's first listing (or why it failed), taken here when it was not watched yet.
    pub first: Option<Result<ScanState, (&'static str, Errno)>>,
    /// What that listing cost.
    pub counters: ScanCounters,
}

/// Checks and examines the object fd of `job`; lists it too if it is new.
pub fn place(job: PlaceJob, io: &mut ScanIo) -> Result<Placed, Errno> {
    let granted = match grant::check(job.fd, job.uid) {
        Ok(granted) => granted,
        // Gone on the server since the application's path lookup.
        Err(errno) if poller::is_gone(errno) => return Err(Errno::NOENT),
        Err(errno) => return Err(errno),
    };
    let fd = granted.fd.as_fd();
    let st = granted.stat;
    let identity = (st.st_dev, st.st_ino);
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    let stale = fd_is_stale(fd, identity.1, true);
    // A filesystem that cannot say what it is gets polled, as a kernel watch there could stay
    // silent: a FUSE server without statfs, or a directory renamed behind a path-based one.
    let remote = match rustix::fs::fstatfs(fd) {
        Ok(statfs) => fstype::remote_name(fstype::magic(&statfs)),
        Err(_) => Some("unknown filesystem"),
    };
    let ancestry = policy::ancestry(fd, identity, is_dir);
    let kept = readable(&granted.fd, is_dir)?;
    let parent = if is_dir {
        rustix::fs::statat(fd, c"..", rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| (st.st_dev, st.st_ino))
    } else {
        None
    };
    let mut counters = ScanCounters::default();
    let first = (!stale && !is_watched(&job.watched, identity)).then(|| {
        let look = Look {
            ino: identity.1,
            is_dir,
            needs_stats: job.mask & STAT_EVENTS != 0,
            force_sync: true,
            reading: Reading::EveryPoll,
        };
        poller::first_state(kept.as_fd(), look, io, &mut counters)
    });
    let path = fd_path(fd);
    Ok(Placed { identity, is_dir, remote, stale, ancestry, kept, parent, path, first, counters })
}

/// The path of `fd` as this process sees it, or its identity when the kernel cannot say.
pub fn fd_path(fd: std::os::fd::BorrowedFd<'_>) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "(path unknown)".into())
}

/// The fd a polled object keeps: a directory's opened for reading, to list it; a file's
/// `O_PATH` (`grant::o_path`), to stat it. Reopening `.` relative to the fd (or, failing that,
/// through `/proc/self/fd`) reaches the very inode the client opened, after its fd proved read
/// access.
pub fn readable(fd: &OwnedFd, is_dir: bool) -> Result<OwnedFd, Errno> {
    if !is_dir {
        return grant::o_path(fd.as_fd());
    }
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC;
    rustix::fs::openat(fd, c".", flags, rustix::fs::Mode::empty()).or_else(|_| {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        rustix::fs::open(path.as_str(), flags, rustix::fs::Mode::empty())
    })
}

/// Whether `fd` no longer reaches inode `ino` on the server: gone, unlinked, or another inode
/// behind it. Past the attribute cache when `force_sync`: a FUSE `fstat` answers from it for a
/// second after the directory went, and a path renamed on a path-based FUSE server opens that
/// long through the dentry the kernel caches.
pub fn fd_is_stale(fd: std::os::fd::BorrowedFd<'_>, ino: u64, force_sync: bool) -> bool {
    match scan::stat_object(fd, force_sync, &mut ScanCounters::default()) {
        Ok(st) => st.stx_nlink == 0 || st.stx_ino != ino,
        Err(errno) => poller::is_gone(errno),
    }
}
