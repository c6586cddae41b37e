//! Short request connections: accepted from the listener, each with its peer's credentials
//! (`SO_PEERCRED`, fixed when it connected), kept until its request is answered or it idles.
//! The pool is bounded; past its bound the oldest connection makes room, and one whose request
//! waits for a worker is exempt from the idle timeout but the first to go when the pool is
//! full. Deciding what a request means is the event loop's; this holds the fds.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::io::Errno;

use crate::slab::Slab;
use crate::wire;

/// Request connections open at once; past it the oldest is closed. A client's request takes
/// milliseconds, so only idle or hostile peers are ever evicted.
pub const MAX_CONNECTIONS: usize = 256;
/// A request connection that has not finished within this time is closed.
pub const CONNECTION_IDLE: Duration = Duration::from_secs(3);

/// A short-lived request connection and the credentials of its peer.
pub struct Connection {
    pub fd: OwnedFd,
    pub uid: u32,
    pub pid: i32,
    pub opened: Duration,
    /// Its request waits for a worker (`pending`): no idle timeout, no further reads.
    pub waiting: bool,
}

/// What one `accept` on the listener gave.
pub enum Accepted {
    /// A new connection, in the pool under this id.
    New(usize),
    /// Nothing more is waiting on the listener.
    Drained,
    /// The daemon is out of fds: one peer was refused (accepted with the spare fd's room and
    /// closed, so that the listener does not stay readable), and room must be made.
    OutOfFds(Errno),
    /// `accept` or `SO_PEERCRED` failed otherwise.
    Failed(&'static str, Errno),
}

pub struct Connections {
    pool: Slab<Connection>,
    /// Held open so that, out of fds, a connection can still be accepted and closed.
    spare_fd: Option<OwnedFd>,
}

impl Default for Connections {
    fn default() -> Connections {
        Connections { pool: Slab::default(), spare_fd: spare_fd() }
    }
}

impl Connections {
    /// Accepts one connection from `listener`, opened at `now`.
    pub fn accept(&mut self, listener: BorrowedFd<'_>, now: Duration) -> Accepted {
        let flags = rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC;
        let fd = loop {
            match rustix::net::accept_with(listener, flags) {
                Ok(fd) => break fd,
                Err(Errno::INTR) | Err(Errno::CONNABORTED) => continue,
                Err(Errno::AGAIN) => return Accepted::Drained,
                Err(errno @ (Errno::MFILE | Errno::NFILE)) => {
                    self.spare_fd = None;
                    drop(rustix::net::accept(listener));
                    self.spare_fd = spare_fd();
                    return Accepted::OutOfFds(errno);
                }
                Err(errno) => return Accepted::Failed("accept", errno),
            }
        };
        match wire::peer_cred(fd.as_fd()) {
            Ok((uid, pid)) => {
                let connection = Connection { fd, uid, pid, opened: now, waiting: false };
                Accepted::New(self.pool.insert(connection))
            }
            Err(errno) => Accepted::Failed("SO_PEERCRED", errno),
        }
    }

    pub fn len(&self) -> usize {
        self.pool.len()
    }

    pub fn get(&self, id: usize) -> Option<&Connection> {
        self.pool.get(id)
    }

    pub fn get_mut(&mut self, id: usize) -> Option<&mut Connection> {
        self.pool.get_mut(id)
    }

    /// Takes connection `id` out; dropping it closes it (and takes it out of the epoll set).
    pub fn remove(&mut self, id: usize) -> Option<Connection> {
        self.pool.remove(id)
    }

    /// The connection to close to make room: a waiting one first (a request on a hung mount
    /// must not keep others out), else the oldest.
    pub fn to_evict(&self) -> Option<(usize, u32, i32)> {
        self.pool
            .iter()
            .min_by_key(|(_, c)| (!c.waiting, c.opened))
            .map(|(id, c)| (id, c.uid, c.pid))
    }

    /// The connections that have not finished a request within `CONNECTION_IDLE` of `now`.
    pub fn idle(&self, now: Duration) -> Vec<(usize, u32, i32)> {
        let cutoff = now.saturating_sub(CONNECTION_IDLE);
        self.pool
            .iter()
            .filter(|(_, c)| c.opened <= cutoff && !c.waiting)
            .map(|(id, c)| (id, c.uid, c.pid))
            .collect()
    }

    /// When the oldest connection times out, rounded up to the next whole second, so that a
    /// stream of short requests does not re-arm the timer for each connection.
    pub fn next_idle_deadline(&self) -> Option<Duration> {
        let oldest = self
            .pool
            .iter()
            .filter(|(_, c)| !c.waiting)
            .map(|(_, c)| c.opened + CONNECTION_IDLE)
            .min()?;
        Some(Duration::from_secs(oldest.as_secs() + 1))
    }
}

fn spare_fd() -> Option<OwnedFd> {
    rustix::fs::open(
        "/",
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (OwnedFd, OwnedFd) {
        rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair")
    }

    fn add(pool: &mut Connections, opened: u64, waiting: bool) -> (usize, OwnedFd) {
        let (fd, peer) = pair();
        let connection =
            Connection { fd, uid: 1, pid: 1, opened: Duration::from_secs(opened), waiting };
        (pool.pool.insert(connection), peer)
    }

    #[test]
    fn idle_connections_time_out_unless_their_request_waits() {
        let mut pool = Connections::default();
        let (old, _a) = add(&mut pool, 10, false);
        let (_waiting, _b) = add(&mut pool, 10, true);
        let (_fresh, _c) = add(&mut pool, 12, false);
        let idle: Vec<usize> =
            pool.idle(Duration::from_secs(13)).into_iter().map(|c| c.0).collect();
        assert_eq!(idle, vec![old]);
        assert_eq!(pool.next_idle_deadline(), Some(Duration::from_secs(14)));
    }

    #[test]
    fn a_full_pool_evicts_a_waiting_connection_first_then_the_oldest() {
        let mut pool = Connections::default();
        let (oldest, _a) = add(&mut pool, 1, false);
        let (waiting, _b) = add(&mut pool, 5, true);
        assert_eq!(pool.to_evict().map(|c| c.0), Some(waiting));
        pool.remove(waiting);
        assert_eq!(pool.to_evict().map(|c| c.0), Some(oldest));
    }
}
