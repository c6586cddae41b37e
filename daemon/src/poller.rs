//! One poll of one watched object: what changed since its last state.
//!
//! The cheap path first: a `statx` of the object. A directory's listing is re-read only when its
//! mtime or ctime moved (or attributes are wanted and none are kept); with an unchanged listing
//! and attributes wanted, only the known names are `statx`ed again.

use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;

use fakenotify_proto::inotify::{IN_ATTRIB, IN_ISDIR};

use crate::diff::{self, Change};
use crate::mounts::{Listing, Observed, Reading};
use crate::scan::{self, ScanCounters, ScanIo};
use crate::snapshot::{EntryStat, Snapshot};
use crate::watch::{PollState, ScanState, Source, WatchedObject};

pub enum PollOutcome {
    /// Nothing to report.
    Unchanged,
    Changes(Vec<Change>),
    /// The object itself is gone (deleted, or its server forgot it).
    Gone,
    /// The poll failed for another reason; the state is kept and the next poll retries.
    Failed {
        op: &'static str,
        errno: Errno,
    },
}

/// Errors that mean the watched object no longer exists.
pub fn is_gone(errno: Errno) -> bool {
    matches!(errno, Errno::NOENT | Errno::STALE | Errno::NOTDIR)
}

/// The first state of an object: its own attributes and, for a directory, its listing.
pub fn baseline(
    fd: OwnedFd,
    object: &WatchedObject,
    with_stats: bool,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
    generation: u64,
) -> Result<PollState, (&'static str, Errno)> {
    let look = Look {
        ino: object.id.1,
        is_dir: object.is_dir,
        needs_stats: with_stats,
        force_sync: object.governance.force_sync,
        reading: Reading::EveryPoll,
    };
    let state = first_state(fd.as_fd(), look, io, counters)?;
    Ok(PollState::new(fd, state, generation, Vec::new()))
}

/// The first scan state of an object seen through `fd`: its own attributes and, for a
/// directory, its listing, with attributes if `look` needs them. A worker runs it for an
/// object new on a remote mount.
pub fn first_state(
    fd: std::os::fd::BorrowedFd<'_>,
    look: Look,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
) -> Result<ScanState, (&'static str, Errno)> {
    let st = scan::stat_object(fd, look.force_sync, counters).map_err(|e| ("statx", e))?;
    let snapshot = if look.is_dir {
        scan::list(fd, look.needs_stats, look.force_sync, io, counters)
            .map_err(|e| ("getdents64", e))?
    } else {
        Default::default()
    };
    Ok(ScanState {
        snapshot,
        stamp: scan::dir_stamp(&st),
        own: scan::entry_stat(&st),
        own_unsettled: false,
        // Spread over the directories, so the verification listings do not come together.
        unlisted_polls: (look.ino % u64::from(VERIFY_EVERY)) as u8,
        stamp_racy: scan::dir_stamp(&st).is_recent(wall_clock_ns()),
    })
}

/// Polls `object`, on a mount whose directories are listed as `listing` says, and updates its
/// state. `want_stats` forces attributes to be read even if no current subscriber asks (used
/// when a subscriber that needs them is about to join).
pub fn poll(
    object: &mut WatchedObject,
    listing: Listing,
    want_stats: bool,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
) -> (PollOutcome, Observed) {
    let look = Look::of(object, listing, want_stats);
    let Source::Polled(PollState { fd, scan: Some(state), .. }) = &mut object.source else {
        return (PollOutcome::Unchanged, Observed::default());
    };
    let mut observed = Observed::default();
    let outcome = poll_state(fd.as_fd(), state, look, io, counters, &mut observed);
    (outcome, observed)
}

/// What one poll looks at, and how.
#[derive(Clone, Copy, Debug)]
pub struct Look {
    /// The object's inode. Behind a path-based FUSE server (bindfs, rclone, sshfs, mergerfs)
    /// the fd of a directory renamed on the server names its old path, which may by now hold
    /// another directory: a listing of that one would report the object emptied.
    pub ino: u64,
    pub is_dir: bool,
    pub needs_stats: bool,
    pub force_sync: bool,
    pub reading: Reading,
}

impl Look {
    /// The look of an object's first listing, which reads the directory whatever its mount.
    pub fn first(
        identity: crate::policy::Identity,
        is_dir: bool,
        needs_stats: bool,
        force_sync: bool,
    ) -> Look {
        Look { ino: identity.1, is_dir, needs_stats, force_sync, reading: Reading::EveryPoll }
    }

    /// The look of a poll of `object` on a mount listed as `listing` (before its policy's say).
    pub fn of(object: &WatchedObject, listing: Listing, want_stats: bool) -> Look {
        Look {
            ino: object.id.1,
            is_dir: object.is_dir,
            needs_stats: want_stats || object.needs_stats(),
            force_sync: object.governance.force_sync,
            reading: listing.governed(object.governance.listing),
        }
    }
}

/// On a mount listed on change, every this many polls of a directory list it anyway, to verify
/// that its attributes do move with every change (see [`crate::mounts`]). Unless its policy
/// says `listing = "on-change"`, which asks for no verification.
pub const VERIFY_EVERY: u8 = 16;

/// One poll of the object behind `fd` against its last state `state`, which it updates, and
/// what it tells of the mount in `observed`. Needs nothing but its arguments, so a worker
/// thread can run it.
pub fn poll_state(
    fd: std::os::fd::BorrowedFd<'_>,
    state: &mut ScanState,
    look: Look,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
    observed: &mut Observed,
) -> PollOutcome {
    let Look { ino, is_dir, needs_stats, force_sync, reading } = look;
    let st = match scan::stat_object(fd, force_sync, counters) {
        Ok(st) if st.stx_nlink == 0 => return PollOutcome::Gone,
        // Another inode behind the fd: the object is not where the fd leads any more (the
        // server loop refinds a directory by its inode in the listings it polls).
        Ok(st) if st.stx_ino != ino => return PollOutcome::Gone,
        Ok(st) => st,
        Err(errno) if is_gone(errno) => return PollOutcome::Gone,
        Err(errno) => return PollOutcome::Failed { op: "statx", errno },
    };
    if !is_dir {
        let own = scan::entry_stat(&st);
        let (mask, unsettled) =
            diff::attribute_change(&state.own, &own, false, state.own_unsettled, true);
        state.own = own;
        state.own_unsettled = unsettled;
        counters.compared += 1;
        counters.changes += u64::from(mask.count_ones());
        return if mask == 0 {
            PollOutcome::Unchanged
        } else {
            PollOutcome::Changes(
                diff::one_kind_each(mask)
                    .map(|mask| Change { mask, ..Change::default() })
                    .collect(),
            )
        };
    }
    let mut stamp = scan::dir_stamp(&st);
    // The directory's own mode or owner: IN_ATTRIB|IN_ISDIR on its own wd.
    let own = scan::entry_stat(&st);
    let (own_mask, _) = diff::attribute_change(&state.own, &own, true, false, true);
    state.own = own;
    let mut changes: Vec<Change> = Vec::new();
    if own_mask != 0 {
        changes.push(Change { mask: IN_ATTRIB | IN_ISDIR, ..Change::default() });
    }
    observed.whole_seconds = stamp.whole_seconds();
    let stamp_moved = stamp != state.stamp;
    let listing_changed = stamp_moved || (needs_stats && !state.snapshot.has_stats());
    let must_list = listing_changed
        || state.stamp_racy
        || match reading {
            Reading::EveryPoll => true,
            Reading::OnChange { verify } => verify && state.unlisted_polls + 1 >= VERIFY_EVERY,
        };
    let restated = if !must_list && needs_stats {
        match scan::restat(fd, &state.snapshot, force_sync, io, counters) {
            Ok(found) => found,
            Err(errno) if is_gone(errno) => return PollOutcome::Gone,
            Err(errno) => return PollOutcome::Failed { op: "statx", errno },
        }
    } else {
        None
    };
    let mut new = match restated {
        Some(snapshot) => {
            state.unlisted_polls = state.unlisted_polls.saturating_add(1);
            snapshot
        }
        None if must_list || needs_stats => {
            let confirmed = list_confirmed(
                fd,
                &state.snapshot,
                &mut stamp,
                needs_stats,
                force_sync,
                io,
                counters,
            );
            let listing = match confirmed {
                Ok(Some(listing)) => listing,
                // Two listings disagree on what is gone: nothing is reported, and the next
                // poll lists again, as the stamp is left as it was.
                Ok(None) => return outcome_of(changes),
                Err((_, errno)) if is_gone(errno) => return PollOutcome::Gone,
                Err((op, errno)) => return PollOutcome::Failed { op, errno },
            };
            observed.hidden_change = !stamp_moved
                && !state.stamp_racy
                && stamp == state.stamp
                && !listing.same_names(&state.snapshot);
            state.unlisted_polls = 0;
            // Read right after a change, or close to one by the clock: a change later in the
            // same tick would not move the stamp again.
            state.stamp_racy = stamp_moved || stamp.is_recent(wall_clock_ns());
            listing
        }
        None => {
            state.unlisted_polls = state.unlisted_polls.saturating_add(1);
            return outcome_of(changes);
        }
    };
    let mut stat_of = |snapshot: &Snapshot, index: usize| {
        new_name_stat(fd, snapshot, index, force_sync, counters)
    };
    changes.extend(diff::diff(&state.snapshot, &mut new, &mut stat_of));
    counters.compared += new.len() as u64;
    counters.changes += changes.len() as u64;
    state.snapshot = new;
    state.stamp = stamp;
    outcome_of(changes)
}

fn outcome_of(changes: Vec<Change>) -> PollOutcome {
    if changes.is_empty() {
        PollOutcome::Unchanged
    } else {
        PollOutcome::Changes(changes)
    }
}

/// The time now, in nanoseconds since the epoch, as file times count it.
fn wall_clock_ns() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A listing of `dir` that may be diffed against `known`. A listing that lacks names `known`
/// has is confirmed by a second one, of the names alone, before any of them is reported deleted
/// or moved away: a FUSE server may answer one listing from a cache being refilled, and a false
/// `IN_DELETE` makes a media server drop the item from its library. The first listing is kept
/// when the second lacks every name it lacked; `None` when the second still has one of them, so
/// that nothing is reported from either and the next poll lists again.
fn list_confirmed(
    dir: std::os::fd::BorrowedFd<'_>,
    known: &Snapshot,
    stamp: &mut scan::DirStamp,
    with_stats: bool,
    force_sync: bool,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
) -> Result<Option<Snapshot>, (&'static str, Errno)> {
    let first = list_still(dir, stamp, with_stats, force_sync, io, counters)?;
    let missing = known.missing_from(&first);
    if missing.is_empty() {
        return Ok(Some(first));
    }
    let second =
        scan::list(dir, false, force_sync, io, counters).map_err(|errno| ("getdents64", errno))?;
    let lacking = known.missing_from(&second);
    let confirmed = missing.iter().all(|index| lacking.binary_search(index).is_ok());
    Ok(confirmed.then_some(first))
}

/// Listings read again while the directory changed under them, at most.
const LIST_TRIES: u32 = 3;

/// Lists the directory `dir`, whose stamp before the listing is `stamp`, until a listing ran
/// while it stood still. `getdents64` is no snapshot: a rename during it may show the entry
/// under both names or neither (ext4 reads in hash order), which a diff reads as a false
/// create, delete or swap. So the stamp is taken again after the listing and, if it moved, the
/// listing is read again, up to `LIST_TRIES` times. The last listing is kept whatever
/// happened, with the stamp from before it, so that the next poll lists again.
fn list_still(
    dir: std::os::fd::BorrowedFd<'_>,
    stamp: &mut scan::DirStamp,
    with_stats: bool,
    force_sync: bool,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
) -> Result<Snapshot, (&'static str, Errno)> {
    let mut tries = 0;
    loop {
        let snapshot = scan::list(dir, with_stats, force_sync, io, counters)
            .map_err(|errno| ("getdents64", errno))?;
        tries += 1;
        let after = scan::stat_object(dir, force_sync, counters)
            .map(|st| scan::dir_stamp(&st))
            .map_err(|errno| ("statx", errno))?;
        if after == *stamp || tries == LIST_TRIES {
            return Ok(snapshot);
        }
        *stamp = after;
    }
}

/// The attributes of the new entry `index` of the listing `snapshot` of `dir`, which tell a
/// rename into the directory from a create ([`diff::StatOf`]). A listing without attributes
/// `statx`es the name, so a syscall per new name in the polls that found some and none in the
/// others. A name gone or replaced since the listing has none.
fn new_name_stat(
    dir: std::os::fd::BorrowedFd<'_>,
    snapshot: &Snapshot,
    index: usize,
    force_sync: bool,
    counters: &mut ScanCounters,
) -> Option<EntryStat> {
    if snapshot.has_stats() {
        return diff::listed_stat(snapshot, index);
    }
    let entry = snapshot.entries().get(index)?;
    let name = snapshot.c_name(entry)?;
    let st = scan::stat_entry(dir, name, force_sync, counters).ok()?;
    (st.stx_ino == entry.ino).then(|| scan::entry_stat(&st))
}
