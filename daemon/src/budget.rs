//! What the daemon holds for each uid, charged to that uid: the bytes of its queued events
//! (metered for the uid and for the whole daemon, whose total is the queues' ceiling), and the
//! share of the daemon's file descriptors one uid may hold. Watches, polled objects and listed
//! entries are counted from the instances themselves, in `server`.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use crate::config::Limits;

/// What one queued event costs: its slot in the queue (twice, since a queue may hold twice
/// its length), and its name on the heap with the allocator's header.
pub fn event_cost(name_len: usize) -> u64 {
    let slot = 2 * std::mem::size_of::<crate::instance::QueuedEvent>();
    let name = if name_len == 0 { 0 } else { name_len + 16 };
    (slot + name) as u64
}

/// Bytes in use against a limit.
#[derive(Debug)]
pub struct Meter {
    used: Cell<u64>,
    limit: Cell<u64>,
    /// What one instance may hold even past the limit: its fair share of it.
    share: Cell<u64>,
}

impl Meter {
    fn new(limit: u64, share: u64) -> Rc<Meter> {
        Rc::new(Meter { used: Cell::new(0), limit: Cell::new(limit), share: Cell::new(share) })
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }
}

/// The queue meters of one instance: its uid's and the daemon's.
#[derive(Debug, Clone)]
pub struct QueueCharge {
    user: Rc<Meter>,
    daemon: Rc<Meter>,
}

impl QueueCharge {
    /// Takes `bytes` for an instance that holds `held` from both meters, or nothing if either
    /// would pass its limit. Past its uid's limit an instance may still fill its fair share of
    /// it (the limit over `max_user_instances`): the instances that hold the backlog overflow,
    /// not one of the same uid that reads. So a uid holds at most twice its budget. The
    /// daemon's limit, the ceiling, has no such share.
    pub fn try_take(&self, bytes: u64, held: u64) -> bool {
        let (user, daemon) = (self.user.used.get() + bytes, self.daemon.used.get() + bytes);
        let within_share = held + bytes <= self.user.share.get();
        if (user > self.user.limit.get() && !within_share) || daemon > self.daemon.limit.get() {
            return false;
        }
        self.user.used.set(user);
        self.daemon.used.set(daemon);
        true
    }

    /// Takes `bytes` whatever the limits say.
    pub fn take(&self, bytes: u64) {
        self.user.used.set(self.user.used.get() + bytes);
        self.daemon.used.set(self.daemon.used.get() + bytes);
    }

    pub fn give_back(&self, bytes: u64) {
        self.user.used.set(self.user.used.get().saturating_sub(bytes));
        self.daemon.used.set(self.daemon.used.get().saturating_sub(bytes));
    }
}

/// The daemon's queue meter and one per uid that has instances; an instance holds its uid's.
#[derive(Debug)]
pub struct QueueMeters {
    daemon: Rc<Meter>,
    users: HashMap<u32, Weak<Meter>>,
    user_limit: u64,
    user_share: u64,
}

/// An instance's fair share of its uid's queue budget.
fn instance_share(limits: &Limits) -> u64 {
    limits.max_user_queued_bytes / u64::from(limits.max_user_instances.max(1))
}

impl QueueMeters {
    pub fn new(limits: &Limits) -> QueueMeters {
        QueueMeters {
            daemon: Meter::new(limits.max_queued_bytes, 0),
            users: HashMap::new(),
            user_limit: limits.max_user_queued_bytes,
            user_share: instance_share(limits),
        }
    }

    /// The meters for a new instance of `uid`, shared with its other instances.
    pub fn charge_for(&mut self, uid: u32) -> QueueCharge {
        self.users.retain(|_, meter| meter.strong_count() > 0);
        let user = match self.users.get(&uid).and_then(Weak::upgrade) {
            Some(meter) => meter,
            None => {
                let meter = Meter::new(self.user_limit, self.user_share);
                self.users.insert(uid, Rc::downgrade(&meter));
                meter
            }
        };
        QueueCharge { user, daemon: self.daemon.clone() }
    }

    /// New limits, as after a reload; what is queued stays.
    pub fn set_limits(&mut self, limits: &Limits) {
        self.user_limit = limits.max_user_queued_bytes;
        self.user_share = instance_share(limits);
        self.daemon.limit.set(limits.max_queued_bytes);
        for meter in self.users.values().filter_map(Weak::upgrade) {
            meter.limit.set(self.user_limit);
            meter.share.set(self.user_share);
        }
    }

    pub fn user_bytes(&self, uid: u32) -> u64 {
        self.users.get(&uid).and_then(Weak::upgrade).map_or(0, |m| m.used())
    }

    pub fn total_bytes(&self) -> u64 {
        self.daemon.used()
    }
}

/// File descriptors the daemon keeps for itself, its request connections and its polls in
/// flight, out of `RLIMIT_NOFILE`: 1024, or a quarter of a lower limit.
pub fn fd_reserve(nofile: u64) -> u64 {
    (nofile / 4).min(1024)
}

/// The fds one uid may make the daemon hold: `max_user_fds`, else an eighth of what the
/// reserve leaves (eight uids at their share fill the daemon; each share is bounded, so no
/// uid can take another's).
pub fn user_fd_share(limits: &Limits, nofile: u64) -> u64 {
    match limits.max_user_fds {
        Some(n) => u64::from(n),
        None => ((nofile - fd_reserve(nofile)) / 8).max(16),
    }
}

/// The daemon's `RLIMIT_NOFILE` (soft, which start-up raised to the hard limit).
pub fn nofile() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MIB;

    /// Budgets with a per-instance share of a tenth of the uid's.
    fn limits(user: u64, daemon: u64) -> Limits {
        Limits {
            max_user_queued_bytes: user,
            max_queued_bytes: daemon,
            max_user_instances: 10,
            ..Limits::default()
        }
    }

    #[test]
    fn a_uid_over_its_budget_leaves_others_theirs() {
        let mut meters = QueueMeters::new(&limits(1000, 10_000));
        let (a1, a2, b) = (meters.charge_for(7), meters.charge_for(7), meters.charge_for(8));
        assert!(a1.try_take(900, 0));
        assert!(!a2.try_take(200, 0), "uid 7's instances share its budget");
        assert!(a2.try_take(100, 0));
        assert!(b.try_take(1000, 0), "uid 8 has a budget of its own");
        assert_eq!(
            (meters.user_bytes(7), meters.user_bytes(8), meters.total_bytes()),
            (1000, 1000, 2000)
        );
        a1.give_back(600);
        assert!(a2.try_take(600, 100), "what is read is given back");
    }

    #[test]
    fn past_its_uids_budget_an_instance_still_fills_its_share() {
        let mut meters = QueueMeters::new(&limits(1000, 10_000));
        let (stalled, reading) = (meters.charge_for(7), meters.charge_for(7));
        assert!(stalled.try_take(1000, 0));
        assert!(!stalled.try_take(10, 1000), "the instance that holds the backlog overflows");
        assert!(reading.try_take(60, 0), "one that reads is still served");
        assert!(reading.try_take(40, 60));
        assert!(!reading.try_take(1, 100), "up to its share, a tenth");
        assert_eq!(meters.user_bytes(7), 1100);
    }

    #[test]
    fn the_daemon_total_is_a_ceiling_over_all_uids() {
        let mut meters = QueueMeters::new(&limits(1000, 2500));
        let charges: Vec<QueueCharge> = (0..3).map(|uid| meters.charge_for(uid)).collect();
        assert!(charges[0].try_take(1000, 0) && charges[1].try_take(1000, 0));
        assert!(!charges[2].try_take(1000, 0), "past the ceiling");
        assert!(charges[2].try_take(500, 0));
        meters.set_limits(&limits(1000, 4 * MIB));
        assert!(charges[2].try_take(500, 500), "a reload raises the ceiling");
    }

    #[test]
    fn a_uid_without_instances_is_forgotten() {
        let mut meters = QueueMeters::new(&limits(1000, 10_000));
        drop(meters.charge_for(5));
        let _other = meters.charge_for(6);
        assert!(!meters.users.contains_key(&5));
    }

    #[test]
    fn fd_shares_come_from_the_limit() {
        let auto = Limits::default();
        assert_eq!(user_fd_share(&auto, 1 << 20), ((1 << 20) - 1024) / 8);
        assert_eq!(user_fd_share(&auto, 1024), (1024 - 256) / 8);
        assert_eq!(user_fd_share(&Limits { max_user_fds: Some(40), ..auto }, 1 << 20), 40);
        assert!(event_cost(255) > 255 && event_cost(0) < 100);
    }
}
