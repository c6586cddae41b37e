//! Kernel watches for objects on local filesystems, whose events the daemon forwards.
//!
//! Each instance has an inotify fd of its own, created as the instance's user
//! (`InstanceKernel`), so the kernel charges its watches to that user. An object is watched
//! through `/proc/self/fd/N` of the daemon's handle of the fd the client sent, so it needs no
//! path of its own and watches exactly the inode the client opened. `KernelWatches`, the
//! daemon's one shared inotify fd of before, charged every user's watches to root.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use fakenotify_proto::inotify::{
    Event, EventError, Events, IN_ALL_EVENTS, IN_EXCL_UNLINK, IN_IGNORED, IN_MASK_ADD,
    IN_MASK_CREATE, IN_ONESHOT, IN_ONLYDIR, IN_Q_OVERFLOW,
};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::io::Errno;

pub struct KernelWatches {
    fd: OwnedFd,
    buf: Box<[u8; 64 * 1024]>,
}

impl KernelWatches {
    pub fn new() -> Result<KernelWatches, Errno> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(KernelWatches { fd, buf: Box::new([0; 64 * 1024]) })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Watches (or re-masks) the object behind `object` for the events in `mask`.
    pub fn watch(&self, object: BorrowedFd<'_>, mask: u32) -> Result<i32, Errno> {
        let path = format!("/proc/self/fd/{}", object.as_raw_fd());
        let flags = WatchFlags::from_bits_retain(mask & (IN_ALL_EVENTS | IN_EXCL_UNLINK));
        inotify::add_watch(&self.fd, path, flags)
    }

    pub fn unwatch(&self, wd: i32) {
        // EINVAL means the kernel already dropped the watch (object gone): nothing to undo.
        let _ = inotify::remove_watch(&self.fd, wd);
    }

    /// Reads what the kernel has queued and hands each event to `each`.
    pub fn drain(&mut self, mut each: impl FnMut(Event<'_>)) -> Result<(), Errno> {
        loop {
            let n = match rustix::io::read(&self.fd, &mut self.buf[..]) {
                Ok(n) => n,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            };
            for event in Events::new(&self.buf[..n]) {
                match event {
                    Ok(event) => each(event),
                    Err(EventError::Truncated | EventError::BadName | EventError::NoRoom) => break,
                }
            }
        }
    }
}

/// The kernel watches of one instance, on an inotify fd of its own that was created as the
/// instance's user: the kernel charges an inotify instance and every watch on it to the
/// effective uid that created the instance (`inotify_new_group` takes `current_euid()`'s
/// ucounts; `inotify_new_watch` counts against them), whoever adds the watches later. So a
/// user's local watches count against that user's `max_user_instances` and `max_user_watches`,
/// never root's, and over its limit the user gets the kernel's own ENOSPC. The kernel also
/// does the rest of inotify_add_watch(2) itself (IN_MASK_ADD, IN_MASK_CREATE, IN_ONESHOT,
/// IN_EXCL_UNLINK); the daemon maps its wds to the instance's.
pub struct InstanceKernel {
    fd: OwnedFd,
    /// Kernel wd → (the instance's wd, the events the watch reports, the object's identity).
    by_kwd: HashMap<i32, (i32, u32, (u64, u64))>,
    /// The instance's wd → kernel wd.
    by_wd: HashMap<i32, i32>,
    /// The objects watched, by `(st_dev, st_ino)`.
    by_identity: HashMap<(u64, u64), i32>,
}

impl InstanceKernel {
    /// A new inotify fd charged to `uid`. The daemon's thread takes `uid` as its effective uid
    /// for the one call (raw `setresuid` changes only the calling thread's ids). A daemon that
    /// is not root cannot, and then creates it as itself: it has no root's watches to spend. A
    /// root daemon without CAP_SETUID (a unit or container that dropped it) does the same, and
    /// says once that users' local watches then count against its own limits.
    pub fn new_as(uid: u32) -> Result<InstanceKernel, Errno> {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let own = rustix::process::geteuid().as_raw();
        let create = || inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC);
        let fd = if uid == own || own != 0 {
            create()?
        } else if let Err(errno) = set_thread_euid(uid) {
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                warn!(
                    "cannot take a user's uid to create its inotify fd ({errno}; the daemon \
                     needs CAP_SETUID): local watches count against the daemon's own limits"
                );
            }
            create()?
        } else {
            let fd = create();
            if set_thread_euid(own).is_err() {
                // Going on as another user would be worse than stopping.
                std::process::abort();
            }
            fd?
        };
        Ok(InstanceKernel {
            fd,
            by_kwd: HashMap::new(),
            by_wd: HashMap::new(),
            by_identity: HashMap::new(),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Watches the object behind `object` for this instance; `new_wd` hands out the instance's
    /// wd if the kernel made a new watch (else the object's existing wd is answered). Returns
    /// the wd and the events the watch now reports.
    pub fn add(
        &mut self,
        object: BorrowedFd<'_>,
        identity: (u64, u64),
        mask: u32,
        new_wd: impl FnOnce() -> i32,
    ) -> Result<(i32, u32), Errno> {
        let path = format!("/proc/self/fd/{}", object.as_raw_fd());
        // IN_DONT_FOLLOW was applied when the client opened the object; here it would watch
        // the magic link itself.
        let passed = IN_ALL_EVENTS | IN_EXCL_UNLINK | IN_ONESHOT | IN_MASK_ADD | IN_MASK_CREATE;
        let flags = WatchFlags::from_bits_retain(mask & (passed | IN_ONLYDIR));
        let kwd = inotify::add_watch(&self.fd, path, flags)?;
        let events = mask & IN_ALL_EVENTS;
        let (wd, events) = match self.by_kwd.get(&kwd) {
            Some(&(wd, old, _)) if mask & IN_MASK_ADD != 0 => (wd, old | events),
            Some(&(wd, _, _)) => (wd, events),
            None => (new_wd(), events),
        };
        self.by_kwd.insert(kwd, (wd, events, identity));
        self.by_wd.insert(wd, kwd);
        self.by_identity.insert(identity, kwd);
        Ok((wd, events))
    }

    /// Whether the object with this `(st_dev, st_ino)` is watched here.
    pub fn watches(&self, identity: (u64, u64)) -> bool {
        self.by_identity.contains_key(&identity)
    }

    /// inotify_rm_watch(2) of the instance's `wd`: EINVAL if it is not one of these. The
    /// kernel queues the IN_IGNORED, which `drain` delivers.
    pub fn remove(&mut self, wd: i32) -> Result<(), Errno> {
        let kwd = *self.by_wd.get(&wd).ok_or(Errno::INVAL)?;
        inotify::remove_watch(&self.fd, kwd)
    }

    /// The events the instance's `wd` reports, if it is one of these watches.
    pub fn events_of(&self, wd: i32) -> Option<u32> {
        self.by_kwd.get(self.by_wd.get(&wd)?).map(|&(_, events, _)| events)
    }

    pub fn len(&self) -> usize {
        self.by_wd.len()
    }

    /// Reads what the kernel has queued, with the instance's wds (-1 for IN_Q_OVERFLOW), and
    /// forgets watches the kernel ended (IN_IGNORED).
    pub fn drain(
        &mut self,
        buf: &mut [u8],
        mut each: impl FnMut(i32, Event<'_>),
    ) -> Result<(), Errno> {
        loop {
            let n = match rustix::io::read(&self.fd, &mut *buf) {
                Ok(n) => n,
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e),
            };
            for event in Events::new(&buf[..n]) {
                let Ok(event) = event else { break };
                if event.mask & IN_Q_OVERFLOW != 0 {
                    each(-1, event);
                    continue;
                }
                let Some(&(wd, _, _)) = self.by_kwd.get(&event.wd) else { continue };
                if event.mask & IN_IGNORED != 0 {
                    if let Some((_, _, identity)) = self.by_kwd.remove(&event.wd) {
                        self.by_identity.remove(&identity);
                    }
                    self.by_wd.remove(&wd);
                }
                each(wd, event);
            }
        }
    }
}

/// Sets the calling thread's effective uid (real and saved uids unchanged), with the raw
/// syscall: libc's `setresuid` would change every thread's.
fn set_thread_euid(uid: u32) -> Result<(), Errno> {
    const UNCHANGED: libc::c_long = -1;
    // SAFETY: setresuid takes three integers and touches no memory.
    let ret = unsafe {
        libc::syscall(libc::SYS_setresuid, UNCHANGED, libc::c_long::from(uid), UNCHANGED)
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::PERM))
    }
}
