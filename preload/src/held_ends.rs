//! The preload's copies of daemon ends (design, data path item 5). After a Register the preload
//! keeps its CLOEXEC copy of the daemon's end of the socketpair instead of closing it: while
//! that copy is open, the application's end never reads EOF or ECONNRESET, even if the daemon
//! exits, and the stream just goes quiet as inotify on NFS does. Each copy is released once the
//! application has closed its end, which the copy sees as POLLHUP; every `inotify_init1` sweeps
//! for those. The record is a fixed table of atomics (fd and socket inode packed in one u64,
//! claimed and released with compare_exchange), so it needs no lock and no allocation and stays
//! right after fork. If the table is full the copy is closed: that instance would then see EOF
//! if the daemon died, which is acceptable for the 129th instance of one process.

use core::sync::atomic::{AtomicU64, Ordering};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use rustix::fs::FileType;

const SLOTS: usize = 128;
const FREE: u64 = 0;

static HELD: [AtomicU64; SLOTS] = [const { AtomicU64::new(FREE) }; SLOTS];

/// A held fd and the inode of the socket it was, so a sweep never touches an fd number that the
/// application has closed and reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    fd: RawFd,
    ino: u32,
}

impl Held {
    /// Never `FREE`: the fd is stored plus one.
    fn pack(self) -> u64 {
        ((self.fd as u32 as u64) + 1) << 32 | u64::from(self.ino)
    }

    fn unpack(slot: u64) -> Option<Held> {
        let fd = (slot >> 32).checked_sub(1)?;
        Some(Held { fd: fd as RawFd, ino: slot as u32 })
    }
}

/// Keeps `daemon_end` open for as long as its peer, the application's end, is open.
pub fn hold(daemon_end: OwnedFd) {
    // Socket inodes come from the kernel's 32-bit get_next_ino(); a larger one cannot be packed.
    let Some(ino) =
        rustix::fs::fstat(&daemon_end).ok().and_then(|st| u32::try_from(st.st_ino).ok())
    else {
        return;
    };
    let fd = daemon_end.into_raw_fd();
    let packed = Held { fd, ino }.pack();
    if HELD.iter().any(|slot| {
        slot.compare_exchange(FREE, packed, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }) {
        return;
    }
    // SAFETY: `fd` came from `into_raw_fd` above and no slot took it: we still own it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// Closes every held copy whose application end is closed, and forgets entries whose fd no
/// longer is the socket that was held.
pub fn sweep() {
    for slot in &HELD {
        let packed = slot.load(Ordering::Acquire);
        let Some(held) = Held::unpack(packed) else { continue };
        match state(held) {
            State::InUse => {}
            State::Gone => {
                let _ = slot.compare_exchange(packed, FREE, Ordering::AcqRel, Ordering::Relaxed);
            }
            State::PeerClosed => {
                // Only the thread that frees the slot closes the fd, so it is closed once.
                if slot.compare_exchange(packed, FREE, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    // SAFETY: the slot owned this fd, it is still the socket we stored (same
                    // inode), and freeing the slot handed ownership to this thread alone.
                    drop(unsafe { OwnedFd::from_raw_fd(held.fd) });
                }
            }
        }
    }
}

enum State {
    /// The application's end is still open.
    InUse,
    /// The application's end is closed: release the copy.
    PeerClosed,
    /// The fd was closed or now is something else (the application closed it, or dup2'd over
    /// it); not ours to close.
    Gone,
}

fn state(held: Held) -> State {
    // SAFETY: `held.fd` was ours; if the application closed it, fstat and poll on the number
    // only fail with EBADF or see another file, which the inode check below rejects.
    let fd = unsafe { BorrowedFd::borrow_raw(held.fd) };
    match rustix::fs::fstat(fd) {
        Ok(st)
            if FileType::from_raw_mode(st.st_mode) == FileType::Socket
                && st.st_ino == u64::from(held.ino) => {}
        _ => return State::Gone,
    }
    let mut fds = [PollFd::new(&fd, PollFlags::empty())];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(1) if fds[0].revents().contains(PollFlags::HUP) => State::PeerClosed,
        Ok(_) => State::InUse,
        Err(_) => State::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsRawFd;
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    #[test]
    fn packing_round_trips_and_is_never_free() {
        for held in
            [Held { fd: 0, ino: 0 }, Held { fd: 3, ino: 77 }, Held { fd: i32::MAX, ino: u32::MAX }]
        {
            assert_ne!(held.pack(), FREE);
            assert_eq!(Held::unpack(held.pack()), Some(held));
        }
        assert_eq!(Held::unpack(FREE), None);
    }

    /// Whether `fd` still is the socket with inode `ino` (other tests may reuse the number).
    fn is_open(fd: RawFd, ino: u64) -> bool {
        // SAFETY: only probing the number in this test.
        rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(fd) }).is_ok_and(|st| st.st_ino == ino)
    }

    // The table is global, so the whole life cycle is one test.
    #[test]
    fn a_copy_lives_until_the_application_end_closes() {
        let (app, daemon) =
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .unwrap();
        let daemon_fd = daemon.as_raw_fd();
        let ino = rustix::fs::fstat(&daemon).unwrap().st_ino;
        hold(daemon);
        sweep();
        assert!(is_open(daemon_fd, ino), "swept while the application end is open");
        // The daemon's own copy is not the held one: the app end must not see EOF.
        let mut fds = [PollFd::new(&app, PollFlags::IN)];
        assert_eq!(
            rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).unwrap(),
            0
        );
        drop(app);
        sweep();
        assert!(!is_open(daemon_fd, ino), "not released after the application end closed");
        let held = Held { fd: daemon_fd, ino: ino as u32 }.pack();
        assert!(HELD.iter().all(|slot| slot.load(Ordering::Relaxed) != held));
    }
}
