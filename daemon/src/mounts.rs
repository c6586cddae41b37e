//! What the daemon knows of each mount that holds polled objects: which server answers, and
//! whether a directory's own attributes may stand in for its listing there.
//!
//! The cheap poll `statx`es a directory and lists it only when its mtime or ctime moved. That
//! holds where the server moves a directory's times with every change inside it (kernel NFS
//! and SMB servers, bindfs), not everywhere: rclone never moves them for changes behind the
//! mount, sshfs has whole seconds (a change in the second of the last poll leaves them as they
//! were), and a mergerfs pool shows one branch's attributes for a directory that several
//! branches hold. A missed change is a bug, so a mount lists every directory at every poll
//! when:
//! - its FUSE server is one known to behave so (`fuse.rclone`, `fuse.sshfs`, ...);
//! - its directories show whole-second times;
//! - a verification listing (every [`crate::poller::VERIFY_EVERY`]th poll of a directory that
//!   would not otherwise be listed) found a change that the directory's attributes did not
//!   show. That is logged once and shown in `status`.
//!
//! A `[[watch]]` policy's `listing` overrides the choice for the objects it governs.

use std::collections::HashMap;

use crate::config::Listing as ListingChoice;
use crate::mountinfo;

/// How a poll decides to read a directory's listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// When the directory's mtime or ctime moved, and every so often to verify that they do.
    OnChange,
    /// At every poll.
    EveryPoll,
}

impl Listing {
    pub fn name(self) -> &'static str {
        match self {
            Listing::OnChange => "on-change",
            Listing::EveryPoll => "every-poll",
        }
    }

    /// How a poll reads a directory of this mount under a policy's `choice`.
    pub fn governed(self, choice: ListingChoice) -> Reading {
        match (choice, self) {
            (ListingChoice::EveryPoll, _) | (ListingChoice::Auto, Listing::EveryPoll) => {
                Reading::EveryPoll
            }
            (ListingChoice::Auto, Listing::OnChange) => Reading::OnChange { verify: true },
            (ListingChoice::OnChange, _) => Reading::OnChange { verify: false },
        }
    }
}

/// When one poll reads a directory's listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    EveryPoll,
    /// When the directory's mtime or ctime moved; with `verify`, also every
    /// [`crate::poller::VERIFY_EVERY`]th poll.
    OnChange {
        verify: bool,
    },
}

/// Why a mount is listed as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Nothing seen so far says the directories' attributes miss a change.
    AttributesHold,
    /// The FUSE server is known not to move a directory's attributes with every change.
    KnownServer(&'static str),
    /// Its directories' times have whole seconds.
    WholeSeconds,
    /// A verification listing found a change that the directory's attributes did not show.
    HiddenChange,
}

impl Reason {
    pub fn text(self) -> &'static str {
        match self {
            Reason::AttributesHold => "directory attributes moved with every change seen",
            Reason::KnownServer(why) => why,
            Reason::WholeSeconds => "whole-second directory times",
            Reason::HiddenChange => "a listing found a change its directory's attributes hid",
        }
    }
}

/// FUSE servers whose directory attributes do not move with every change inside them.
const LISTED_EVERY_POLL: &[(&str, &str)] = &[
    ("fuse.rclone", "rclone keeps a directory's mtime when files change behind the mount"),
    ("fuse.sshfs", "sshfs has whole-second times and lists nothing after a rewind"),
    ("fuse.mergerfs", "a mergerfs pool shows one branch's attributes for a directory"),
    ("fuse.s3fs", "object stores keep no directory times"),
    ("fuse.gcsfuse", "object stores keep no directory times"),
    ("fuse.goofys", "object stores keep no directory times"),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// As `/proc/self/mountinfo` names it (`fuse.rclone`), else the `statfs` name.
    pub fs_type: String,
    /// `None` where the mount is in another mount namespace than the daemon's.
    pub mount_point: Option<String>,
    pub listing: Listing,
    pub reason: Reason,
    /// Polled objects on it; the mount is forgotten at none, as device numbers are reused.
    objects: usize,
}

impl Mount {
    pub fn objects(&self) -> usize {
        self.objects
    }

    /// A mount first seen with type `fs_type`.
    fn new(fs_type: String, mount_point: Option<String>) -> Mount {
        let known = LISTED_EVERY_POLL.iter().find(|(name, _)| *name == fs_type);
        let (listing, reason) = match known {
            Some((_, why)) => (Listing::EveryPoll, Reason::KnownServer(why)),
            None => (Listing::OnChange, Reason::AttributesHold),
        };
        Mount { fs_type, mount_point, listing, reason, objects: 0 }
    }

    /// Turns the mount to listing every poll for `reason`; true if it was not already.
    fn list_every_poll(&mut self, reason: Reason) -> bool {
        if self.listing == Listing::EveryPoll {
            return false;
        }
        self.listing = Listing::EveryPoll;
        self.reason = reason;
        true
    }
}

#[derive(Debug, Default)]
pub struct Mounts {
    by_dev: HashMap<u64, Mount>,
}

impl Mounts {
    /// Counts a new polled object on device `dev`, learning the mount on first sight from
    /// `/proc/self/mountinfo` (a procfs read, which no remote server can hold up), or from
    /// `statfs_name` where the daemon's mount namespace lacks it.
    pub fn attach(&mut self, dev: u64, statfs_name: &str) {
        let mount = self.by_dev.entry(dev).or_insert_with(|| {
            let found = std::fs::read_to_string("/proc/self/mountinfo").ok().and_then(|text| {
                mountinfo::find(&text, rustix::fs::major(dev), rustix::fs::minor(dev))
            });
            match found {
                Some(entry) => Mount::new(entry.fs_type, Some(entry.mount_point)),
                None => Mount::new(statfs_name.to_owned(), None),
            }
        });
        mount.objects += 1;
    }

    /// Uncounts a polled object of device `dev`.
    pub fn detach(&mut self, dev: u64) {
        if let Some(mount) = self.by_dev.get_mut(&dev) {
            mount.objects = mount.objects.saturating_sub(1);
            if mount.objects == 0 {
                self.by_dev.remove(&dev);
            }
        }
    }

    /// How directories on `dev` are listed, before any policy's say.
    pub fn listing(&self, dev: u64) -> Listing {
        self.by_dev.get(&dev).map_or(Listing::OnChange, |mount| mount.listing)
    }

    /// What a poll of a directory on `dev` saw; returns the mount when that turned it to
    /// listing every poll, for the one log line.
    pub fn observe(&mut self, dev: u64, seen: Observed) -> Option<&Mount> {
        let mount = self.by_dev.get_mut(&dev)?;
        let reason = if seen.hidden_change {
            Reason::HiddenChange
        } else if seen.whole_seconds {
            Reason::WholeSeconds
        } else {
            return None;
        };
        mount.list_every_poll(reason).then_some(&*mount)
    }

    /// The known mounts by device.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Mount)> {
        self.by_dev.iter().map(|(dev, mount)| (*dev, mount))
    }
}

/// What one poll of a directory tells of its mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The listing changed while the directory's attributes stayed as they were.
    pub hidden_change: bool,
    /// The directory's mtime and ctime have no fraction of a second.
    pub whole_seconds: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts_with(dev: u64, fs_type: &str) -> Mounts {
        let mut mounts = Mounts::default();
        let mut mount = Mount::new(fs_type.to_owned(), None);
        mount.objects = 1;
        mounts.by_dev.insert(dev, mount);
        mounts
    }

    #[test]
    fn known_servers_list_every_poll_and_others_on_change() {
        for server in ["fuse.rclone", "fuse.sshfs", "fuse.mergerfs"] {
            let mount = Mount::new(server.to_owned(), None);
            assert_eq!(mount.listing, Listing::EveryPoll, "{server}");
            assert!(matches!(mount.reason, Reason::KnownServer(_)));
        }
        for other in ["fuse", "nfs4", "cifs", "ext4"] {
            assert_eq!(Mount::new(other.to_owned(), None).listing, Listing::OnChange, "{other}");
        }
    }

    #[test]
    fn evidence_turns_a_mount_to_listing_every_poll_once() {
        let mut mounts = mounts_with(7, "fuse");
        assert!(mounts.observe(7, Observed::default()).is_none());
        assert_eq!(mounts.listing(7), Listing::OnChange);
        let hidden = Observed { hidden_change: true, ..Observed::default() };
        let turned = mounts.observe(7, hidden).expect("turned");
        assert_eq!(turned.reason, Reason::HiddenChange);
        assert!(mounts.observe(7, hidden).is_none(), "logged once");
        assert_eq!(mounts.listing(7), Listing::EveryPoll);
        let coarse = Observed { whole_seconds: true, ..Observed::default() };
        let mut other = mounts_with(8, "fuse");
        assert_eq!(other.observe(8, coarse).map(|m| m.reason), Some(Reason::WholeSeconds));
    }

    #[test]
    fn a_mount_is_forgotten_with_its_last_object() {
        let mut mounts = mounts_with(7, "fuse.rclone");
        mounts.detach(7);
        assert_eq!(mounts.listing(7), Listing::OnChange, "a reused device number starts anew");
        assert_eq!(mounts.iter().count(), 0);
    }

    #[test]
    fn a_policy_overrides_the_mount() {
        let on_change = |verify| Reading::OnChange { verify };
        assert_eq!(Listing::OnChange.governed(ListingChoice::EveryPoll), Reading::EveryPoll);
        assert_eq!(Listing::EveryPoll.governed(ListingChoice::OnChange), on_change(false));
        assert_eq!(Listing::EveryPoll.governed(ListingChoice::Auto), Reading::EveryPoll);
        assert_eq!(Listing::OnChange.governed(ListingChoice::Auto), on_change(true));
    }
}
