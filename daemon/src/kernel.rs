//! Kernel watches for objects on local filesystems, whose events the daemon forwards.
//!
//! The daemon owns one inotify fd. It watches an object through `/proc/self/fd/N` of the fd the
//! client sent, so it needs no path of its own and watches exactly the inode the client opened.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use fakenotify_proto::inotify::{Event, EventError, Events, IN_ALL_EVENTS, IN_EXCL_UNLINK};
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
