//! What each uid's instances hold in the daemon, read off the instances and the objects they
//! watch, and checked against the uid's budgets at add_watch and Register; `status` shows it.
//! A polled object watched by several uids is charged to each of them.

use std::collections::BTreeMap;

use rustix::io::Errno;

use crate::budget;
use crate::server::Server;
use crate::watch::{PollState, Source};

/// Fds the daemon holds for each instance: its socket, its request channel and the inotify fd
/// made for it (charged to its uid).
pub const FDS_PER_INSTANCE: u64 = 3;

/// Whether a watch makes a new polled object or joins one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    New,
    Joined,
}

/// One uid's use of the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserUse {
    pub instances: u64,
    pub watches: u64,
    /// Watches on polled objects, each holding an fd and (directories) a listing.
    pub polled: u64,
    /// Entries of those listings.
    pub entries: u64,
    /// Fds held for the uid: [`FDS_PER_INSTANCE`] per instance, one per polled watch.
    pub fds: u64,
    pub queued_bytes: u64,
}

impl Server {
    /// Entries of the last listing of object `id` (0 for a file, a kernel watch, or a poll in
    /// flight).
    pub(crate) fn listed_entries(&self, id: usize) -> u64 {
        match self.registry.get(id).map(|o| &o.source) {
            Some(Source::Polled(PollState { scan: Some(state), .. })) => {
                state.snapshot.len() as u64
            }
            _ => 0,
        }
    }

    pub(crate) fn user_use(&self, uid: u32) -> UserUse {
        let mut use_ = UserUse { queued_bytes: self.queues.user_bytes(uid), ..UserUse::default() };
        for instance in self.instances.values().filter(|i| i.uid == uid) {
            use_.instances += 1;
            use_.watches += instance.wds.watches.len() as u64;
            for watch in instance.wds.watches.values() {
                if self.registry.get(watch.object).is_some_and(|o| o.is_polled()) {
                    use_.polled += 1;
                    use_.entries += self.listed_entries(watch.object);
                }
            }
        }
        use_.fds = FDS_PER_INSTANCE * use_.instances + use_.polled;
        use_
    }

    /// Every uid with instances, and what it uses.
    pub(crate) fn users_use(&self) -> BTreeMap<u32, UserUse> {
        let uids: std::collections::BTreeSet<u32> =
            self.instances.values().map(|i| i.uid).collect();
        uids.into_iter().map(|uid| (uid, self.user_use(uid))).collect()
    }

    pub(crate) fn user_fd_share(&self) -> u64 {
        budget::user_fd_share(&self.settings.limits, self.nofile)
    }

    /// Whether the daemon's listings stay within `max_entries` with the new object `id`'s,
    /// and if so counts them. All listings are counted afresh at most once a second (that walks
    /// every object); in between, the new objects' entries are added to the last count.
    fn within_entries_ceiling(&mut self, id: usize) -> bool {
        let entries = self.listed_entries(id);
        let now = crate::server::now();
        let (at, others) = match self.entries_total {
            Some((at, total)) if now.saturating_sub(at) < std::time::Duration::from_secs(1) => {
                (at, total)
            }
            _ => {
                let total = self
                    .registry
                    .iter()
                    .filter(|&(other, _)| other != id)
                    .map(|(other, _)| other)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|other| self.listed_entries(other))
                    .sum();
                (now, total)
            }
        };
        if others + entries > u64::from(self.settings.limits.max_entries) {
            self.entries_total = Some((at, others));
            return false;
        }
        self.entries_total = Some((at, others + entries));
        true
    }

    /// Whether `uid` may hold one more polled watch, on object `id`, which is `New` (its
    /// listing was just made) or joined: ENOSPC, as for inotify's watch limit, past its polled
    /// watches, its listed entries, its share of the daemon's fds, or (for a new object) the
    /// daemon's ceiling of listed entries.
    pub(crate) fn polled_budget(
        &mut self,
        uid: u32,
        id: usize,
        object: Object,
    ) -> Result<(), Errno> {
        let entries = self.listed_entries(id);
        let use_ = self.user_use(uid);
        let limits = self.settings.limits;
        let over = if use_.polled + 1 > u64::from(limits.max_user_polled) {
            Some("limit: max_user_polled")
        } else if use_.fds + 1 > self.user_fd_share() {
            Some("limit: max_user_fds")
        } else if use_.entries + entries > u64::from(limits.max_user_entries) {
            Some("limit: max_user_entries")
        } else if object == Object::New && !self.within_entries_ceiling(id) {
            Some("limit: max_entries")
        } else {
            None
        };
        match over {
            Some(kind) => {
                // Counted, not logged: a client looping on a limit must not flood the log.
                debug!("uid {uid}: {kind} reached");
                self.stats.error(kind);
                Err(Errno::NOSPC)
            }
            None => Ok(()),
        }
    }
}
