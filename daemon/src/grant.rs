//! Whether the object fd a client sent earns it a watch. inotify_add_watch(2) needs read
//! permission on the object (MAY_READ); the daemon decides that from the fd itself, never from
//! the preload's good behaviour, since any local user can speak the protocol directly.
//!
//! An fd opened for reading (`O_RDONLY` or `O_RDWR`, not `O_PATH`) shows that its opener could
//! read the object. An `O_PATH` fd shows only that the path could be reached, so it earns a watch
//! where opening for reading would be wrong or impossible: a symlink watched itself
//! (IN_DONT_FOLLOW; every symlink grants read) and special files (FIFOs, devices, sockets), whose
//! open has side effects. Those get a conservative reading of their mode bits: the owner's read
//! bit for the owner, both the group's and others' read bits for anyone else (the peer's groups
//! are unknown), no POSIX ACL, or a root peer. Everything else is EACCES.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// What the daemon knows of a received object fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// `F_GETFL`: the open mode and `O_PATH`.
    pub flags: OFlags,
    pub kind: FileType,
    pub mode: Mode,
    pub owner: u32,
    /// Whether the object carries a POSIX access ACL (asked only where it matters).
    pub has_acl: bool,
}

/// The rule itself: Ok if `object` proves that `peer_uid` may read it.
pub fn decide(object: &Received, peer_uid: u32) -> Result<(), Errno> {
    if !object.flags.contains(OFlags::PATH) {
        let mode = object.flags & OFlags::RWMODE;
        return if mode == OFlags::RDONLY || mode == OFlags::RDWR {
            Ok(())
        } else {
            Err(Errno::ACCESS)
        };
    }
    match object.kind {
        // Read permission on a symlink's own inode is never refused.
        FileType::Symlink => Ok(()),
        FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice | FileType::Socket => {
            let granted = if peer_uid == 0 {
                true
            } else if object.has_acl {
                false
            } else if object.owner == peer_uid {
                object.mode.contains(Mode::RUSR)
            } else {
                object.mode.contains(Mode::RGRP | Mode::ROTH)
            };
            if granted {
                Ok(())
            } else {
                Err(Errno::ACCESS)
            }
        }
        // A directory or a regular file could have been opened for reading: O_PATH proves
        // nothing about them.
        _ => Err(Errno::ACCESS),
    }
}

/// A received fd that earned a watch.
pub struct Granted {
    /// The client's fd. Kept no longer than the request: the daemon keeps `O_PATH` handles
    /// (`o_path`) of what it polls.
    pub fd: OwnedFd,
    /// Whether it is open for reading. That open file's last close (the client's copy or this
    /// one) is an `IN_CLOSE_NOWRITE` on the object, which the caller keeps from the new watch:
    /// it holds `fd` until the watch exists, so that close comes after.
    pub opened: bool,
    /// What `fstat` said of it while checking, for callers that need its identity and type.
    pub stat: rustix::fs::Stat,
}

/// Checks what `fd` proves for `peer_uid`.
pub fn check(fd: OwnedFd, peer_uid: u32) -> Result<Granted, Errno> {
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(|_| Errno::BADF)?;
    let st = rustix::fs::fstat(&fd)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    let special = matches!(
        kind,
        FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice | FileType::Socket
    );
    let has_acl = flags.contains(OFlags::PATH) && special && peer_uid != 0 && has_access_acl(&fd);
    let received =
        Received { flags, kind, mode: Mode::from_raw_mode(st.st_mode), owner: st.st_uid, has_acl };
    decide(&received, peer_uid)?;
    Ok(Granted { fd, opened: !flags.contains(OFlags::PATH), stat: st })
}

/// An `O_PATH` handle of the object behind `fd`: a copy if it is one, else a reopen through
/// the magic link. An open file kept for as long as an object is polled would hold a deleted
/// NFS file as a `.nfs*` silly rename, and a FUSE server's file handle.
pub fn o_path(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    if flags.contains(OFlags::PATH) {
        return rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|_| Errno::MFILE);
    }
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::open(path.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
}

/// Whether the object has a `system.posix_acl_access` attribute. Unknown counts as yes.
fn has_access_acl(fd: &OwnedFd) -> bool {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut buf = [0u8; 0];
    match rustix::fs::lgetxattr(path.as_str(), "system.posix_acl_access", &mut buf) {
        Ok(_) | Err(Errno::RANGE) => true,
        Err(Errno::NODATA) | Err(Errno::OPNOTSUPP) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(flags: OFlags, kind: FileType, mode: u32, owner: u32) -> Received {
        Received { flags, kind, mode: Mode::from_raw_mode(mode), owner, has_acl: false }
    }

    #[test]
    fn an_fd_opened_for_reading_proves_read_access() {
        for kind in [FileType::Directory, FileType::RegularFile, FileType::Fifo] {
            assert_eq!(decide(&object(OFlags::RDONLY, kind, 0, 0), 1000), Ok(()));
            assert_eq!(decide(&object(OFlags::RDWR, kind, 0, 0), 1000), Ok(()));
            let nonblock = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::DIRECTORY;
            assert_eq!(decide(&object(nonblock, kind, 0, 0), 1000), Ok(()));
            assert_eq!(
                decide(&object(OFlags::WRONLY, kind, 0o777, 1000), 1000),
                Err(Errno::ACCESS)
            );
        }
    }

    #[test]
    fn o_path_proves_nothing_about_directories_and_files() {
        for kind in [FileType::Directory, FileType::RegularFile] {
            assert_eq!(decide(&object(OFlags::PATH, kind, 0o777, 1000), 1000), Err(Errno::ACCESS));
            assert_eq!(decide(&object(OFlags::PATH, kind, 0o700, 0), 0), Err(Errno::ACCESS));
        }
        assert_eq!(decide(&object(OFlags::PATH, FileType::Symlink, 0o777, 0), 1000), Ok(()));
    }

    #[test]
    fn special_files_go_by_their_mode_bits() {
        let fifo = |mode, owner| object(OFlags::PATH, FileType::Fifo, mode, owner);
        assert_eq!(decide(&fifo(0o600, 1000), 1000), Ok(()));
        assert_eq!(decide(&fifo(0o066, 1000), 1000), Err(Errno::ACCESS), "owner class only");
        assert_eq!(decide(&fifo(0o644, 0), 1000), Ok(()));
        assert_eq!(decide(&fifo(0o604, 0), 1000), Err(Errno::ACCESS), "group may lack read");
        assert_eq!(decide(&fifo(0o640, 0), 1000), Err(Errno::ACCESS));
        assert_eq!(decide(&fifo(0o600, 1000), 0), Ok(()), "root");
        let tty = object(OFlags::PATH, FileType::CharacterDevice, 0o620, 0);
        assert_eq!(decide(&tty, 1000), Err(Errno::ACCESS));
        let acl = Received { has_acl: true, ..fifo(0o644, 0) };
        assert_eq!(decide(&acl, 1000), Err(Errno::ACCESS));
    }
}
