//! Watched objects: one per `(st_dev, st_ino)` however many instances and wds point at it, each
//! with its subscribers and its source of events (a kernel watch, or a polled snapshot).

use std::os::fd::OwnedFd;
use std::time::Duration;

use fakenotify_proto::inotify::{
    IN_ALL_EVENTS, IN_ATTRIB, IN_CLOSE_WRITE, IN_IGNORED, IN_MASK_ADD, IN_MODIFY, IN_Q_OVERFLOW,
    IN_UNMOUNT,
};

use crate::policy::{Governance, Identity};
use crate::scan::DirStamp;
use crate::snapshot::{EntryStat, Snapshot};

/// One `(instance, wd, mask)` pointing at an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscriber {
    pub instance: u64,
    pub wd: i32,
    pub mask: u32,
}

impl Subscriber {
    /// Whether this subscriber wants an event with `mask` (IN_ISDIR and flags aside):
    /// IN_IGNORED, IN_Q_OVERFLOW and IN_UNMOUNT go to every watch, whatever it asked for.
    pub fn wants(&self, mask: u32) -> bool {
        mask & (IN_IGNORED | IN_Q_OVERFLOW | IN_UNMOUNT) != 0
            || self.mask & mask & IN_ALL_EVENTS != 0
    }

    /// The mask after an `inotify_add_watch` with `mask` on an object this watch already
    /// covers: IN_MASK_ADD adds to it, otherwise `mask` replaces it. (IN_MASK_CREATE refuses the
    /// call with EEXIST before this.)
    pub fn updated_mask(&self, mask: u32) -> u32 {
        if mask & IN_MASK_ADD != 0 {
            self.mask | (mask & !IN_MASK_ADD)
        } else {
            mask
        }
    }
}

/// Events that need attributes compared between polls.
pub const STAT_EVENTS: u32 = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE;

/// Pacing state of one polled object.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    /// Polls in a row that found nothing.
    pub idle_polls: u32,
    /// Filesystem operations one poll of it costs: a moving average of its recent polls.
    pub cost: f64,
    /// The budget already counted the next poll (it was held back for its turn).
    pub reserved: bool,
}

impl Pace {
    /// Before any poll: one `statx`, plus one per entry when attributes are compared.
    pub fn estimate(entries: usize, with_stats: bool) -> Pace {
        let per_entry = if with_stats { entries as f64 } else { 0.0 };
        Pace { idle_polls: 0, cost: 1.0 + per_entry, reserved: false }
    }
}

/// What a poll compares against: the last state seen of a polled object. It moves to the
/// device's worker while a poll is in flight.
pub struct ScanState {
    pub snapshot: Snapshot,
    pub stamp: DirStamp,
    /// Attributes of the object itself (for watches on files).
    pub own: EntryStat,
    pub own_unsettled: bool,
    /// Polls since the directory's listing was last read.
    pub unlisted_polls: u8,
    /// Whether the listing was read right after the stamp moved, or while it was recent by
    /// the clock, so that a change later in the same tick (a jiffy; a second on coarse
    /// servers) would leave it as it is: the next poll lists again.
    pub stamp_racy: bool,
}

/// A polled object: the client's fd it is polled through, its last state and its pacing.
pub struct PollState {
    pub fd: OwnedFd,
    /// `None` while a worker polls the object.
    pub scan: Option<ScanState>,
    /// When the poll in flight was handed to the worker.
    pub dispatched: Option<Duration>,
    pub generation: u64,
    pub pace: Pace,
    /// Polls in a row that could not find the object (a directory may only have moved).
    pub misses: u8,
    /// When the first of those polls ran.
    pub missing_since: Option<Duration>,
    /// For a directory: the identity of the polled directory whose listing held it when it
    /// was last reached (by identity, as that directory's object may be dropped and made
    /// again). A dangling fd is looked for there first: another listing that holds the inode
    /// number may hold a directory that reused it.
    pub parent: Option<Identity>,
    /// The object and its ancestors on its device when it was placed or last found at a new
    /// path (`policy::ancestry`): what policies are matched against, so that applying them
    /// anew makes no filesystem call.
    pub ancestry: Vec<Identity>,
}

impl PollState {
    /// The state of an object whose first listing is on its way (`dispatched` at `now`).
    pub fn unlisted(fd: OwnedFd, generation: u64, with_stats: bool, now: Duration) -> PollState {
        PollState {
            fd,
            scan: None,
            dispatched: Some(now),
            generation,
            pace: Pace::estimate(0, with_stats),
            misses: 0,
            missing_since: None,
            parent: None,
            ancestry: Vec::new(),
        }
    }

    /// The state of an object whose first scan is `scan`.
    pub fn new(
        fd: OwnedFd,
        scan: ScanState,
        generation: u64,
        ancestry: Vec<Identity>,
    ) -> PollState {
        let pace = Pace::estimate(scan.snapshot.len(), scan.snapshot.has_stats());
        PollState {
            fd,
            scan: Some(scan),
            dispatched: None,
            misses: 0,
            missing_since: None,
            parent: None,
            generation,
            pace,
            ancestry,
        }
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "most objects are polled; a box would add an allocation and a pointer chase to each poll to save a few hundred bytes per local object"
)]
pub enum Source {
    Kernel { wd: i32 },
    Polled(PollState),
}

pub struct WatchedObject {
    pub id: Identity,
    pub is_dir: bool,
    /// For log lines: the path as the daemon sees the fd (`/proc/self/fd/N` resolved at add).
    pub path: String,
    pub governance: Governance,
    pub subscribers: Vec<Subscriber>,
    pub source: Source,
}

impl WatchedObject {
    pub fn union_mask(&self) -> u32 {
        self.subscribers.iter().fold(0, |m, s| m | s.mask)
    }

    /// Whether a poll must compare attributes, not only names.
    pub fn needs_stats(&self) -> bool {
        self.union_mask() & STAT_EVENTS != 0
    }

    pub fn is_polled(&self) -> bool {
        matches!(self.source, Source::Polled(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fakenotify_proto::inotify::{IN_CREATE, IN_DELETE, IN_ISDIR, IN_ONESHOT};

    #[test]
    fn a_new_mask_replaces_the_old_unless_it_adds_to_it() {
        let sub = Subscriber { instance: 1, wd: 1, mask: IN_CREATE | IN_ONESHOT };
        assert_eq!(sub.updated_mask(IN_DELETE), IN_DELETE);
        assert_eq!(sub.updated_mask(IN_DELETE | IN_MASK_ADD), IN_CREATE | IN_ONESHOT | IN_DELETE);
    }

    #[test]
    fn flags_and_isdir_do_not_make_an_event_wanted() {
        let sub = Subscriber { instance: 1, wd: 1, mask: IN_CREATE };
        assert!(sub.wants(IN_CREATE | IN_ISDIR));
        assert!(!sub.wants(IN_DELETE | IN_ISDIR));
        assert!(!sub.wants(IN_ISDIR));
        for always in [IN_IGNORED, IN_Q_OVERFLOW, IN_UNMOUNT] {
            assert!(sub.wants(always), "{always:#x} goes to every watch");
        }
    }
}
