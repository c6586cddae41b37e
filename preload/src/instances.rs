//! What the preload keeps for each instance it registered, in a fixed table of atomics (no lock,
//! no allocation, right after fork):
//!
//! - **The held daemon end** (design, data path item 5). The preload keeps its CLOEXEC copy of
//!   the daemon's end of the socketpair: while it is open, the application's end never reads
//!   EOF or ECONNRESET, even if the daemon exits; the stream just goes quiet, as inotify on NFS
//!   does. It is released once the application has closed its end, which the copy sees as
//!   POLLHUP; every `inotify_init1` sweeps for those.
//! - **The request channel**: the connection that carried the Register, which the daemon keeps
//!   bound to the instance. The process's later add_watch and rm_watch go over it, without a
//!   connect, accept and close each. One call uses it at a time: a call that finds it busy
//!   (another thread, or a signal handler interrupting a hook) takes a short connection of its
//!   own, as every call did before. A forked child shares the socket with its parent, so only
//!   the process that registered uses it: the slot's key holds its pid.
//!
//! Every fd in the table is stored with the inode of the socket it was, and checked before use,
//! so an fd number that the application closed and reused is never touched. If the table is
//! full, the 129th instance of a process keeps neither: it would see EOF if the daemon died,
//! and its requests take short connections.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use rustix::fs::FileType;

const SLOTS: usize = 128;
const FREE: u64 = 0;
/// A slot being filled or emptied by one thread.
const CLAIMED: u64 = u64::MAX;

struct Slot {
    /// `Owner::pack` of the instance, `FREE` or `CLAIMED`.
    owner: AtomicU64,
    /// `Kept::pack` of the held daemon end.
    held: AtomicU64,
    /// `Kept::pack` of the request channel, or `FREE` once it failed.
    channel: AtomicU64,
    /// 0, or the pid of the process one of whose threads is using or emptying the slot. After
    /// fork the child's copy may say its parent's pid: nobody in the child holds it then.
    busy: AtomicU32,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        owner: AtomicU64::new(FREE),
        held: AtomicU64::new(FREE),
        channel: AtomicU64::new(FREE),
        busy: AtomicU32::new(0),
    }
}; SLOTS];

/// Which instance a slot serves: the registering process and the inode of the application's
/// end. Socket inodes come from the kernel's 32-bit get_next_ino(), so both fit one u64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    pid: u32,
    app_ino: u32,
}

impl Owner {
    /// Never `FREE` (a pid is never 0) nor `CLAIMED` (pids stay below 2^22).
    fn pack(self) -> u64 {
        u64::from(self.pid) << 32 | u64::from(self.app_ino)
    }
}

/// A kept fd and the inode of the socket it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Kept {
    fd: RawFd,
    ino: u32,
}

impl Kept {
    /// Never `FREE`: the fd is stored plus one.
    fn pack(self) -> u64 {
        ((self.fd as u32 as u64) + 1) << 32 | u64::from(self.ino)
    }

    fn unpack(slot: u64) -> Option<Kept> {
        if slot == CLAIMED {
            return None;
        }
        let fd = (slot >> 32).checked_sub(1)?;
        Some(Kept { fd: fd as RawFd, ino: slot as u32 })
    }

    /// Takes ownership of `fd` for the table, or gives it back if it is no socket we can record.
    fn new(fd: OwnedFd) -> Result<Kept, OwnedFd> {
        match socket_ino(&fd) {
            Some(ino) => Ok(Kept { fd: fd.into_raw_fd(), ino }),
            None => Err(fd),
        }
    }

    /// The fd, if it still is the socket we stored.
    fn borrow(self) -> Option<BorrowedFd<'static>> {
        // SAFETY: the number was ours; if the application closed it, fstat on it fails with
        // EBADF or sees another file, which the inode check rejects before any other use.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        (socket_ino(&fd) == Some(self.ino)).then_some(fd)
    }

    /// Closes the fd if it still is the socket we stored; the caller owns the slot it was in.
    fn close(self) {
        if self.borrow().is_some() {
            // SAFETY: the table owned this fd, it is still the socket stored (same inode), and
            // the caller emptied the slot, so no other thread closes it.
            drop(unsafe { OwnedFd::from_raw_fd(self.fd) });
        }
    }
}

fn socket_ino(fd: &impl rustix::fd::AsFd) -> Option<u32> {
    let st = rustix::fs::fstat(fd).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return None;
    }
    u32::try_from(st.st_ino).ok()
}

fn my_pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// Keeps `daemon_end` open while the application's end `app` is, and `channel` for this
/// process's requests on the instance.
pub fn keep(app: BorrowedFd<'_>, daemon_end: OwnedFd, channel: OwnedFd) {
    let Some(app_ino) = socket_ino(&app) else { return };
    let owner = Owner { pid: my_pid(), app_ino }.pack();
    let Ok(held) = Kept::new(daemon_end) else { return };
    let channel = Kept::new(channel).ok();
    let Some(slot) = TABLE.iter().find(|slot| {
        slot.owner.compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }) else {
        held.close();
        if let Some(channel) = channel {
            channel.close();
        }
        return;
    };
    slot.held.store(held.pack(), Ordering::Relaxed);
    slot.channel.store(channel.map_or(FREE, Kept::pack), Ordering::Relaxed);
    slot.busy.store(0, Ordering::Relaxed);
    slot.owner.store(owner, Ordering::Release);
}

/// How a request over the channel ended, as far as the channel is concerned.
pub enum Used<T> {
    /// The channel did its job; keep it.
    Kept(T),
    /// The channel failed (the daemon closed it or restarted): close it, and later requests
    /// take short connections.
    Broken(T),
}

/// Runs `request` on the channel of the instance whose application end has inode `app_ino`,
/// if this process registered it and nobody else is using the channel now; else None.
pub fn with_channel<T>(app_ino: u64, request: impl FnOnce(BorrowedFd<'_>) -> Used<T>) -> Option<T> {
    let app_ino = u32::try_from(app_ino).ok()?;
    let pid = my_pid();
    let owner = Owner { pid, app_ino }.pack();
    let slot = TABLE.iter().find(|slot| slot.owner.load(Ordering::Acquire) == owner)?;
    slot.busy.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).ok()?;
    let result = (|| {
        // Emptied and reused between the search and the claim: not ours any more.
        if slot.owner.load(Ordering::Acquire) != owner {
            return None;
        }
        let kept = Kept::unpack(slot.channel.load(Ordering::Acquire))?;
        let Some(channel) = kept.borrow() else {
            // The application closed our fd (or dup2'd over it): forget it, never close it.
            slot.channel.store(FREE, Ordering::Release);
            return None;
        };
        match request(channel) {
            Used::Kept(result) => Some(result),
            Used::Broken(result) => {
                slot.channel.store(FREE, Ordering::Release);
                kept.close();
                Some(result)
            }
        }
    })();
    slot.busy.store(0, Ordering::Release);
    result
}

/// Empties every slot whose application end is closed, closing what it kept, and forgets slots
/// whose held fd no longer is the socket that was held.
pub fn sweep() {
    let pid = my_pid();
    for slot in &TABLE {
        let owner = slot.owner.load(Ordering::Acquire);
        if owner == FREE || owner == CLAIMED {
            continue;
        }
        let Some(held) = Kept::unpack(slot.held.load(Ordering::Acquire)) else { continue };
        let close_held = match state(held) {
            State::InUse => continue,
            State::PeerClosed => true,
            State::Gone => false,
        };
        // A slot busy in this process is in use; one busy in another (a parent before fork)
        // is not, in this process's copy of the table.
        let busy = slot.busy.load(Ordering::Acquire);
        if busy == pid
            || slot.busy.compare_exchange(busy, pid, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            continue;
        }
        // Only the thread that claims the slot closes its fds, so each is closed once.
        if slot.owner.compare_exchange(owner, CLAIMED, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            if close_held {
                held.close();
            }
            if let Some(channel) = Kept::unpack(slot.channel.load(Ordering::Acquire)) {
                channel.close();
            }
            slot.held.store(FREE, Ordering::Relaxed);
            slot.channel.store(FREE, Ordering::Relaxed);
            slot.owner.store(FREE, Ordering::Release);
        }
        slot.busy.store(0, Ordering::Release);
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

fn state(held: Kept) -> State {
    let Some(fd) = held.borrow() else { return State::Gone };
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
    use rustix::fd::{AsFd, AsRawFd};
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};

    #[test]
    fn packing_round_trips_and_never_looks_free_or_claimed() {
        for kept in
            [Kept { fd: 0, ino: 0 }, Kept { fd: 3, ino: 77 }, Kept { fd: i32::MAX, ino: u32::MAX }]
        {
            assert_ne!(kept.pack(), FREE);
            assert_ne!(kept.pack(), CLAIMED);
            assert_eq!(Kept::unpack(kept.pack()), Some(kept));
        }
        assert_eq!(Kept::unpack(FREE), None);
        assert_eq!(Kept::unpack(CLAIMED), None);
        let owner = Owner { pid: 4_194_304, app_ino: u32::MAX }.pack();
        assert!(owner != FREE && owner != CLAIMED);
    }

    /// Whether `fd` still is the socket with inode `ino` (other tests may reuse the number).
    fn is_open(fd: RawFd, ino: u64) -> bool {
        // SAFETY: only probing the number in this test.
        rustix::fs::fstat(unsafe { BorrowedFd::borrow_raw(fd) }).is_ok_and(|st| st.st_ino == ino)
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap()
    }

    // The table is global, so the whole life cycle is one test.
    #[test]
    fn an_instance_keeps_its_end_and_channel_until_the_application_end_closes() {
        let (app, daemon) = pair();
        let (channel, daemon_side) = pair();
        let (daemon_fd, channel_fd) = (daemon.as_raw_fd(), channel.as_raw_fd());
        let daemon_ino = rustix::fs::fstat(&daemon).unwrap().st_ino;
        let channel_ino = rustix::fs::fstat(&channel).unwrap().st_ino;
        let app_ino = rustix::fs::fstat(&app).unwrap().st_ino;
        keep(app.as_fd(), daemon, channel);
        sweep();
        assert!(is_open(daemon_fd, daemon_ino), "swept while the application end is open");
        // The daemon's own copy is not the held one: the app end must not see EOF.
        let mut fds = [PollFd::new(&app, PollFlags::IN)];
        assert_eq!(
            rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).unwrap(),
            0
        );

        // The channel serves this process, one call at a time.
        let used = with_channel(app_ino, |fd| {
            assert_eq!(fd.as_raw_fd(), channel_fd);
            let nested = with_channel(app_ino, |_| Used::Kept(()));
            assert!(nested.is_none(), "a busy channel was handed out twice");
            Used::Kept(7)
        });
        assert_eq!(used, Some(7));
        assert_eq!(with_channel(app_ino + 1, |_| Used::Kept(0)), None, "another instance");

        // A broken channel is closed, and later calls get none.
        assert_eq!(with_channel(app_ino, |_| Used::Broken(1)), Some(1));
        assert!(!is_open(channel_fd, channel_ino), "a broken channel stays open");
        assert_eq!(with_channel(app_ino, |_| Used::Kept(2)), None);
        drop(daemon_side);

        drop(app);
        sweep();
        assert!(!is_open(daemon_fd, daemon_ino), "not released after the application end closed");
        assert!(TABLE.iter().all(|slot| slot.owner.load(Ordering::Relaxed) == FREE));
    }
}
