//! What each uid's instances hold in the daemon, read off the instances and the objects they
//! watch, and checked against the uid's budgets at add_watch and Register; `status` shows it.
//! A polled object watched by several uids is charged to each of them.

use std::collections::BTreeMap;

use rustix::io::Errno;

use crate::budget;
use crate::server::Server;
use crate::watch::{PollState, Source};

/// One uid's use of the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserUse {
    pub instances: u64,
    pub watches: u64,
    /// Watches on polled objects, each holding an fd and (directories) a listing.
    pub polled: u64,
    /// Entries of those listings.
    pub entries: u64,
    /// Fds held for the uid: two per instance (socket, request channel), one per polled watch.
    pub fds: u64,
    pub queued_bytes: u64,
}

impl Server {
    /// Entries of the last listing of object `id` (0 for a file, a kernel watch, or a poll in
    /// flight).
    pub(crate) fn listed_entries(&self, id: usize) -> u64 {
        match self.objects.get(id).map(|o| &o.source) {
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
            use_.watches += instance.watches.len() as u64;
            for watch in instance.watches.values() {
                if self.objects.get(watch.object).is_some_and(|o| o.is_polled()) {
                    use_.polled += 1;
                    use_.entries += self.listed_entries(watch.object);
                }
            }
        }
        use_.fds = 2 * use_.instances + use_.polled;
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

    /// Whether `uid` may hold one more polled watch, of an object that lists `entries`:
    /// ENOSPC, as for inotify's watch limit, past its polled watches, its listed entries or
    /// its share of the daemon's fds.
    pub(crate) fn polled_budget(&mut self, uid: u32, entries: u64) -> Result<(), Errno> {
        let use_ = self.user_use(uid);
        let limits = self.settings.limits;
        let over = if use_.polled + 1 > u64::from(limits.max_user_polled) {
            Some("limit: max_user_polled")
        } else if use_.fds + 1 > self.user_fd_share() {
            Some("limit: max_user_fds")
        } else if use_.entries + entries > u64::from(limits.max_user_entries) {
            Some("limit: max_user_entries")
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
