//! One inotify instance of an application: the daemon's end of its socket pair, its watch
//! descriptors and the events not yet written.
//!
//! Events are packed into messages of whole events of at most `MAX_EVENT_LEN` bytes, so any
//! read buffer real inotify accepts receives them unsplit. A socket that is full keeps the rest
//! queued (up to the instance's limit, then one IN_Q_OVERFLOW) until EPOLLOUT. Queued bytes
//! are charged to the instance's uid and to the daemon (`budget`): past either budget the
//! instance overflows too, as the kernel's does at its own limit.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};

use fakenotify_proto::inotify::{Event, IN_Q_OVERFLOW, MAX_EVENT_LEN};
use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::budget::{event_cost, QueueCharge};
use crate::kernel::InstanceKernel;
use crate::wds::Wds;

/// An event waiting to be written to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedEvent {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    pub name: Box<[u8]>,
}

pub struct Instance {
    /// The daemon's end of the pair; the application reads the other.
    pub socket: OwnedFd,
    /// The connection that registered the instance, kept as its request channel: the
    /// registering process sends its add_watch and rm_watch records here, without a connection
    /// each. None once the peer closed it, and for instances restored after a restart.
    pub channel: Option<OwnedFd>,
    pub uid: u32,
    pub pid: i32,
    /// The wds of polled objects (local objects are watched on `kernel`, whose wds come from
    /// the same sequence).
    pub wds: Wds,
    /// The instance's own kernel watches (local objects), charged to its user.
    pub kernel: Option<InstanceKernel>,
    queue: VecDeque<QueuedEvent>,
    max_queued: usize,
    /// The uid's and the daemon's meters of queued bytes, and what this queue holds of them.
    charge: QueueCharge,
    charged: u64,
    pub delivered: u64,
    pub overflows: u64,
}

/// The result of writing queued events.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything was written.
    Done,
    /// The socket is full; wait for EPOLLOUT.
    Blocked,
    /// The application's end is gone.
    Closed,
}

impl Instance {
    pub fn new(
        socket: OwnedFd,
        uid: u32,
        pid: i32,
        max_queued: usize,
        charge: QueueCharge,
    ) -> Instance {
        Instance {
            socket,
            channel: None,
            uid,
            pid,
            wds: Wds::default(),
            kernel: None,
            queue: VecDeque::new(),
            max_queued: max_queued.max(1),
            charge,
            charged: 0,
            delivered: 0,
            overflows: 0,
        }
    }

    /// Every watch of the instance, polled and kernel.
    pub fn watch_count(&self) -> usize {
        self.wds.len() + self.kernel.as_ref().map_or(0, InstanceKernel::len)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Queues one event. An event identical to the last unread one is merged into it, as the
    /// kernel does; past the limit, or past its uid's budget of queued bytes and its own share
    /// of it, or past the daemon's ceiling, one IN_Q_OVERFLOW stands for everything dropped
    /// (charged even past the budget: there is at most one at the end of a queue).
    pub fn push(&mut self, event: QueuedEvent) {
        if self.queue.back() == Some(&event) {
            return;
        }
        let cost = event_cost(event.name.len());
        if self.queue.len() + 1 >= self.max_queued || !self.charge.try_take(cost, self.charged) {
            let overflow =
                QueuedEvent { wd: -1, mask: IN_Q_OVERFLOW, cookie: 0, name: Box::default() };
            if self.queue.back() != Some(&overflow) {
                self.overflows += 1;
                self.queue.push_back(overflow);
                let cost = event_cost(0);
                self.charge.take(cost);
                self.charged += cost;
            }
            return;
        }
        self.charged += cost;
        self.queue.push_back(event);
    }

    /// Bytes of events this instance holds, as charged.
    pub fn queued_bytes(&self) -> u64 {
        self.charged
    }

    /// Gives back what the first `count` queued events were charged.
    fn release(&mut self, count: usize) {
        let cost: u64 = self.queue.iter().take(count).map(|e| event_cost(e.name.len())).sum();
        let cost = cost.min(self.charged);
        self.charged -= cost;
        self.charge.give_back(cost);
    }

    /// Writes as many queued events as the socket takes, without blocking.
    pub fn flush(&mut self) -> Flush {
        let mut message = [0u8; MAX_EVENT_LEN];
        while !self.queue.is_empty() {
            let (mut len, mut count) = (0, 0);
            for queued in &self.queue {
                let event = Event {
                    wd: queued.wd,
                    mask: queued.mask,
                    cookie: queued.cookie,
                    name: &queued.name,
                };
                match event.encode(&mut message[len..]) {
                    Ok(n) => {
                        len += n;
                        count += 1;
                    }
                    Err(_) => break,
                }
            }
            if count == 0 {
                // Unencodable (a name no directory can hold): drop it rather than stall.
                self.release(1);
                self.queue.pop_front();
                continue;
            }
            match rustix::net::send(
                self.socket.as_fd(),
                &message[..len],
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(_) => {
                    self.release(count);
                    self.queue.drain(..count);
                    self.delivered += count as u64;
                }
                Err(Errno::AGAIN) | Err(Errno::NOBUFS) => return Flush::Blocked,
                Err(Errno::INTR) => continue,
                Err(_) => return Flush::Closed,
            }
        }
        // A queue that once held a flood gives its memory back once read.
        if self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
        Flush::Done
    }

    /// Heap bytes the queue holds now (its slots), for deciding to return memory to the system.
    pub fn queue_capacity_bytes(&self) -> usize {
        self.queue.capacity() * std::mem::size_of::<QueuedEvent>()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.charge.give_back(self.charged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::QueueMeters;
    use crate::config::Limits;
    use fakenotify_proto::inotify::{Events, IN_CREATE, IN_MODIFY};
    use rustix::net::{socketpair, AddressFamily, RecvFlags, SocketFlags, SocketType};

    fn pair(max: usize) -> (Instance, OwnedFd) {
        let (ours, theirs) =
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .expect("socketpair");
        let charge = QueueMeters::new(&Limits::default()).charge_for(0);
        (Instance::new(ours, 0, 0, max, charge), theirs)
    }

    fn event(wd: i32, mask: u32, name: &str) -> QueuedEvent {
        QueuedEvent { wd, mask, cookie: 0, name: name.as_bytes().into() }
    }

    fn read_all(fd: &OwnedFd) -> Vec<(i32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = [0u8; MAX_EVENT_LEN];
        while let Ok((n, _)) = rustix::net::recv(fd, &mut buf, RecvFlags::DONTWAIT) {
            assert!(n <= MAX_EVENT_LEN);
            for e in Events::new(&buf[..n]) {
                let e = e.expect("whole events");
                out.push((e.wd, e.mask, e.name.to_vec()));
            }
        }
        out
    }

    #[test]
    fn packs_whole_events_and_merges_identical_neighbours() {
        let (mut i, peer) = pair(1000);
        for n in 0..20 {
            i.push(event(1, IN_CREATE, &format!("file-{n}")));
        }
        i.push(event(1, IN_MODIFY, "x"));
        i.push(event(1, IN_MODIFY, "x"));
        i.push(event(2, IN_MODIFY, &"n".repeat(255)));
        assert_eq!(i.flush(), Flush::Done);
        let got = read_all(&peer);
        assert_eq!(got.len(), 22);
        assert_eq!(got[20], (1, IN_MODIFY, b"x".to_vec()));
        assert_eq!(got[21].2.len(), 255);
    }

    #[test]
    fn overflow_is_reported_once() {
        let (mut i, peer) = pair(4);
        for n in 0..10 {
            i.push(event(1, IN_CREATE, &n.to_string()));
        }
        assert_eq!(i.queued(), 4);
        assert_eq!(i.flush(), Flush::Done);
        let got = read_all(&peer);
        assert_eq!(got.last(), Some(&(-1, IN_Q_OVERFLOW, Vec::new())));
        assert_eq!(i.overflows, 1);
    }

    #[test]
    fn the_uids_byte_budget_overflows_each_of_its_instances_and_is_given_back() {
        let limits = Limits { max_user_queued_bytes: 4096, ..Limits::default() };
        let mut meters = QueueMeters::new(&limits);
        let mut make = |uid| {
            let (ours, theirs) =
                socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                    .expect("socketpair");
            (Instance::new(ours, uid, 0, 16384, meters.charge_for(uid)), theirs)
        };
        let ((mut a, a_peer), (mut b, _b_peer), (mut c, c_peer)) = (make(7), make(7), make(8));
        let long = "n".repeat(255);
        for n in 0..40 {
            a.push(event(1, IN_CREATE, &format!("{long:.250}{n}")));
            b.push(event(1, IN_CREATE, &format!("{long:.250}{n}")));
            c.push(event(1, IN_CREATE, &format!("{n}")));
        }
        assert!(a.queued() < 40 && b.queued() < 40, "uid 7's budget ran out");
        assert_eq!((a.overflows, b.overflows, c.overflows), (1, 1, 0));
        assert_eq!(c.queued(), 40, "uid 8 is not charged for uid 7");
        assert!(meters.user_bytes(7) <= 4096 + 2 * event_cost(0), "one overflow each past it");
        assert_eq!(a.flush(), Flush::Done);
        drop(b);
        assert_eq!(meters.user_bytes(7), 0, "read or closed, the bytes are given back");
        assert_eq!(read_all(&a_peer).last().map(|e| e.1), Some(IN_Q_OVERFLOW));
        assert_eq!(c.flush(), Flush::Done);
        assert_eq!(read_all(&c_peer).len(), 40);
        assert_eq!(meters.total_bytes(), 0);
    }
}
