//! Watched objects: one per `(st_dev, st_ino)` however many instances and wds point at it, each
//! with its subscribers and its source of events (a kernel watch, or a polled snapshot).

use std::os::fd::OwnedFd;

use fakenotify_proto::inotify::{IN_ALL_EVENTS, IN_ATTRIB, IN_CLOSE_WRITE, IN_MODIFY};

use crate::pacing::Pace;
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
    /// Whether this subscriber wants an event with `mask` (IN_ISDIR and flags aside).
    pub fn wants(&self, mask: u32) -> bool {
        self.mask & mask & IN_ALL_EVENTS != 0
    }
}

/// Events that need attributes compared between polls.
pub const STAT_EVENTS: u32 = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE;

/// What a poll compares against: the last state seen of a polled object. It moves to the
/// device's scanner thread while a poll is in flight.
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
    /// `None` while a scanner thread polls the object.
    pub scan: Option<ScanState>,
    /// When the poll in flight was handed to the scanner.
    pub dispatched: Option<std::time::Duration>,
    pub generation: u64,
    pub pace: Pace,
    /// Polls in a row that could not find the object (a directory may only have moved).
    pub misses: u8,
    /// When the first of those polls ran.
    pub missing_since: Option<std::time::Duration>,
    /// For a directory: the identity of the polled directory whose listing held it when it
    /// was last reached (by identity, as that directory's object may be dropped and made
    /// again). A dangling fd is looked for there first: another listing that holds the inode
    /// number may hold a directory that reused it.
    pub parent: Option<Identity>,
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
