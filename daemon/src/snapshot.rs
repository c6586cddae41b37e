//! A compact listing of one polled directory: sorted entries with names in one arena.
//!
//! An entry is 16 bytes plus its name and a NUL (a poll hands the name to `statx` as it is); the
//! 24-byte attributes are kept only while some subscriber asks for IN_MODIFY, IN_ATTRIB or
//! IN_CLOSE_WRITE. Sorting by name lets two listings be diffed in one merge pass.

use std::ffi::CStr;

/// The attributes compared between polls to tell IN_MODIFY from IN_ATTRIB, in 24 bytes (a
/// million watched files cost 24 MB of them): what tells IN_MODIFY exactly, and 32-bit
/// fingerprints of what tells IN_ATTRIB, where a missed change is one in a billion or better.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryStat {
    pub mtime_ns: i64,
    pub size: u64,
    /// Mode, owner and group: a change is IN_ATTRIB, on a directory too.
    pub owner: u32,
    /// Change time and link count: a change without a new mtime or size is IN_ATTRIB. The top
    /// bit says whether mtime differs from ctime: a write sets both to the same instant, while
    /// `utimensat` (`touch -d`, `rsync -t`) sets mtime to a value of its own. The next two say
    /// whether the entry looks renamed and moved in (see [`EntryStat::looks_renamed`],
    /// [`EntryStat::looks_moved_in`]).
    pub change: u32,
}

/// A `statx` time in nanoseconds since the epoch, saturating.
pub fn nanos(ts: rustix::fs::StatxTimestamp) -> i64 {
    ts.tv_sec.saturating_mul(1_000_000_000).saturating_add(i64::from(ts.tv_nsec))
}

impl EntryStat {
    /// What is compared of the answer `st` of a `statx`.
    pub fn of(st: &rustix::fs::Statx) -> EntryStat {
        EntryStat::new(
            nanos(st.stx_mtime),
            nanos(st.stx_ctime),
            st.stx_size,
            u32::from(st.stx_mode),
            st.stx_nlink,
            st.stx_uid,
            st.stx_gid,
        )
    }

    pub fn new(
        mtime_ns: i64,
        ctime_ns: i64,
        size: u64,
        mode: u32,
        nlink: u32,
        uid: u32,
        gid: u32,
    ) -> EntryStat {
        let renamed = match looks_renamed(mtime_ns, ctime_ns, mode, nlink) {
            true if ctime_ns.saturating_sub(mtime_ns) > MOVED_IN_AFTER_NS => RENAMED | MOVED_IN,
            true => RENAMED,
            false => 0,
        };
        let is_dir = rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory;
        EntryStat {
            mtime_ns,
            size,
            owner: fingerprint(&[u64::from(mode), u64::from(uid) << 32 | u64::from(gid)]),
            change: fingerprint(&[ctime_ns as u64, u64::from(nlink)])
                & !(TIMES_SET | RENAMED | MOVED_IN | LINKED)
                | if mtime_ns != ctime_ns { TIMES_SET } else { 0 }
                | if !is_dir && nlink > 1 { LINKED } else { 0 }
                | renamed,
        }
    }

    /// Whether the inode's ctime is later than its mtime, with a single link (a directory: any
    /// link count). A rename sets the moved inode's ctime (ext4, xfs, btrfs, tmpfs, NFS
    /// servers) and leaves its mtime, while a create and its writes set both to one instant.
    /// A `chmod`, `chown` or `utimensat` after the last write looks the same; a hard link too,
    /// hence the link count. Of two names that a poll cannot both have got by rename, the one
    /// that does not look renamed is the create.
    pub fn looks_renamed(&self) -> bool {
        self.change & RENAMED != 0
    }

    /// Whether a new name looks moved in rather than created: it looks renamed, and its ctime
    /// is more than [`MOVED_IN_AFTER_NS`] past its mtime.
    pub fn looks_moved_in(&self) -> bool {
        self.change & MOVED_IN != 0
    }

    /// Whether a file has other names (hard links): a new name of it is a link, not a write.
    pub fn linked(&self) -> bool {
        self.change & LINKED != 0
    }

    /// Whether mtime was last set apart from ctime, by `utimensat` rather than a write.
    pub fn times_set(&self) -> bool {
        self.change & TIMES_SET != 0
    }
}

const TIMES_SET: u32 = 1 << 31;
const RENAMED: u32 = 1 << 30;
const MOVED_IN: u32 = 1 << 29;
const LINKED: u32 = 1 << 28;

/// How far past its mtime a new name's ctime must be for the name to count as moved in. A
/// creator that sets the owner or mode of a new file at once sets its ctime a little after its
/// mtime: bindfs and the other FUSE servers that create as the calling user (`chown` after
/// `open`: 0.3 to 3 ms apart through bindfs on Linux 6.18, for 298 of 303 files created in a
/// quick run), `install -m`, an NFS client's SETATTR after an exclusive create (one round
/// trip). A file moved in was most often last written long before the rename. So a rename in
/// within a second of the last write is IN_CREATE, and such a create is never a lone
/// IN_MOVED_TO, which a watch for IN_CREATE alone would not see at all.
pub const MOVED_IN_AFTER_NS: i64 = 1_000_000_000;

fn looks_renamed(mtime_ns: i64, ctime_ns: i64, mode: u32, nlink: u32) -> bool {
    let is_dir = rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory;
    ctime_ns > mtime_ns && (is_dir || nlink == 1)
}

/// A 32-bit digest of `parts` (multiply-xorshift; not for adversaries, who can only change
/// attributes of files they own anyway).
fn fingerprint(parts: &[u64]) -> u32 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &part in parts {
        h = (h ^ part).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 31;
    }
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (h ^ (h >> 32)) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub ino: u64,
    name_start: u32,
    name_len: u8,
    pub is_dir: bool,
    /// Written since the last poll: IN_CLOSE_WRITE is due once it stays unchanged.
    pub unsettled: bool,
}

/// A directory listing sorted by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    names: Vec<u8>,
    entries: Vec<Entry>,
    /// Empty, or one per entry in the same order.
    stats: Vec<EntryStat>,
}

impl Snapshot {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn name(&self, entry: &Entry) -> &[u8] {
        let start = entry.name_start as usize;
        &self.names[start..start + entry.name_len as usize]
    }

    /// The name with its NUL, for a syscall.
    pub fn c_name(&self, entry: &Entry) -> Option<&CStr> {
        let start = entry.name_start as usize;
        CStr::from_bytes_with_nul(&self.names[start..=start + entry.name_len as usize]).ok()
    }

    /// The name of the subdirectory with inode `ino`.
    pub fn dir_name(&self, ino: u64) -> Option<&[u8]> {
        self.entries.iter().find(|e| e.is_dir && e.ino == ino).map(|e| self.name(e))
    }

    pub fn stat(&self, index: usize) -> Option<&EntryStat> {
        self.stats.get(index)
    }

    pub fn has_stats(&self) -> bool {
        !self.stats.is_empty() || self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn set_unsettled(&mut self, index: usize, unsettled: bool) {
        self.entries[index].unsettled = unsettled;
    }

    /// Whether `other` lists the same names with the same inodes (attributes aside).
    pub fn same_names(&self, other: &Snapshot) -> bool {
        self.len() == other.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| a.ino == b.ino && self.name(a) == other.name(b))
    }

    /// The indices of this listing's names that `newer` lacks, in order: what a diff would
    /// report deleted or moved away.
    pub fn missing_from(&self, newer: &Snapshot) -> Vec<usize> {
        let mut missing = Vec::new();
        let mut theirs = newer.entries.iter().map(|e| newer.name(e)).peekable();
        for (index, entry) in self.entries.iter().enumerate() {
            let name = self.name(entry);
            while theirs.next_if(|other| *other < name).is_some() {}
            if theirs.next_if(|other| *other == name).is_none() {
                missing.push(index);
            }
        }
        missing
    }

    /// The same names with fresh attributes (for a directory whose listing did not change).
    pub fn with_stats(&self, stats: Vec<EntryStat>) -> Snapshot {
        debug_assert_eq!(stats.len(), self.entries.len());
        Snapshot { names: self.names.clone(), entries: self.entries.clone(), stats }
    }
}

/// Collects entries in any order and sorts them once.
#[derive(Default)]
pub struct SnapshotBuilder {
    names: Vec<u8>,
    entries: Vec<Entry>,
    stats: Vec<EntryStat>,
}

impl SnapshotBuilder {
    /// Adds an entry. Names longer than `NAME_MAX` or holding a NUL cannot come from
    /// `getdents64` and are skipped.
    pub fn push(&mut self, name: &[u8], ino: u64, is_dir: bool, stat: Option<EntryStat>) {
        let (Ok(name_len), Ok(name_start)) =
            (u8::try_from(name.len()), u32::try_from(self.names.len()))
        else {
            return;
        };
        if name.contains(&0) {
            return;
        }
        self.names.extend_from_slice(name);
        self.names.push(0);
        self.entries.push(Entry { ino, name_start, name_len, is_dir, unsettled: false });
        if let Some(stat) = stat {
            self.stats.push(stat);
        }
    }

    pub fn finish(self) -> Snapshot {
        let SnapshotBuilder { names, entries, stats } = self;
        let with_stats = stats.len() == entries.len() && !stats.is_empty();
        let mut order: Vec<u32> = (0..entries.len() as u32).collect();
        let name = |e: &Entry| &names[e.name_start as usize..][..e.name_len as usize];
        order.sort_unstable_by(|&a, &b| name(&entries[a as usize]).cmp(name(&entries[b as usize])));
        let sorted_entries = order.iter().map(|&i| entries[i as usize]).collect();
        let sorted_stats = if with_stats {
            order.iter().map(|&i| stats[i as usize]).collect()
        } else {
            Vec::new()
        };
        let mut snapshot = Snapshot { names, entries: sorted_entries, stats: sorted_stats };
        snapshot.names.shrink_to_fit();
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_by_name_and_keeps_stats_aligned() {
        let mut b = SnapshotBuilder::default();
        let stat = |size| Some(EntryStat { size, ..Default::default() });
        b.push(b"zeta", 3, false, stat(30));
        b.push(b"alpha", 1, true, stat(10));
        b.push(b"mid", 2, false, stat(20));
        let s = b.finish();
        let names: Vec<&[u8]> = s.entries().iter().map(|e| s.name(e)).collect();
        assert_eq!(names, [&b"alpha"[..], b"mid", b"zeta"]);
        assert_eq!(s.c_name(&s.entries()[1]), Some(c"mid"));
        assert_eq!((s.dir_name(1), s.dir_name(2)), (Some(&b"alpha"[..]), None), "mid is a file");
        assert_eq!(s.stat(0).map(|st| st.size), Some(10));
        assert_eq!(s.stat(2).map(|st| st.size), Some(30));
        assert!(s.entries()[0].is_dir);
    }

    fn listing(names: &[(&str, u64)]) -> Snapshot {
        let mut b = SnapshotBuilder::default();
        for (name, ino) in names {
            b.push(name.as_bytes(), *ino, false, None);
        }
        b.finish()
    }

    #[test]
    fn missing_names_are_found_in_one_pass() {
        let old = listing(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]);
        assert_eq!(old.missing_from(&listing(&[("b", 2), ("d", 9), ("e", 5)])), [0, 2]);
        assert_eq!(old.missing_from(&old), Vec::<usize>::new());
        assert_eq!(old.missing_from(&Snapshot::default()), [0, 1, 2, 3]);
        assert_eq!(Snapshot::default().missing_from(&old), Vec::<usize>::new());
    }

    #[test]
    fn same_names_ignores_attributes_but_not_inodes() {
        let old = listing(&[("a", 1), ("b", 2)]);
        assert!(old.same_names(&listing(&[("b", 2), ("a", 1)])));
        assert!(!old.same_names(&listing(&[("a", 1), ("b", 3)])), "b replaced");
        assert!(!old.same_names(&listing(&[("a", 1)])));
        assert!(!old.same_names(&listing(&[("a", 1), ("c", 2)])), "b renamed");
    }

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<EntryStat>(), 24);
    }

    #[test]
    fn every_attribute_counts() {
        let base = EntryStat::new(1, 2, 3, 0o644, 1, 1000, 1000);
        let changed = [
            EntryStat::new(9, 2, 3, 0o644, 1, 1000, 1000),
            EntryStat::new(1, 9, 3, 0o644, 1, 1000, 1000),
            EntryStat::new(1, 2, 9, 0o644, 1, 1000, 1000),
            EntryStat::new(1, 2, 3, 0o600, 1, 1000, 1000),
            EntryStat::new(1, 2, 3, 0o644, 2, 1000, 1000),
            EntryStat::new(1, 2, 3, 0o644, 1, 0, 1000),
            EntryStat::new(1, 2, 3, 0o644, 1, 1000, 0),
            // Owner and group swapped.
            EntryStat::new(1, 2, 3, 0o644, 1, 1000, 1001),
            EntryStat::new(1, 2, 3, 0o644, 1, 1001, 1000),
        ];
        for (i, other) in changed.iter().enumerate() {
            assert_ne!(base, *other, "change {i} unseen");
        }
        assert_ne!(changed[7], changed[8]);
        assert_eq!(base, EntryStat::new(1, 2, 3, 0o644, 1, 1000, 1000));
    }

    #[test]
    fn a_later_ctime_on_a_single_link_looks_renamed() {
        let file = |mtime, ctime, nlink| EntryStat::new(mtime, ctime, 3, 0o100644, nlink, 0, 0);
        assert!(file(1, 2, 1).looks_renamed());
        assert!(!file(2, 2, 1).looks_renamed(), "a fresh write sets both times");
        assert!(!file(3, 2, 1).looks_renamed(), "mtime set ahead by utimensat");
        assert!(!file(1, 2, 2).looks_renamed(), "a hard link also sets ctime");
        assert!(EntryStat::new(1, 2, 4096, 0o040755, 3, 0, 0).looks_renamed());
        assert!(file(1, 2, 1).times_set() && !file(2, 2, 1).times_set());
    }

    #[test]
    fn only_a_ctime_a_second_past_the_mtime_looks_moved_in() {
        let file = |mtime, ctime, nlink| EntryStat::new(mtime, ctime, 3, 0o100644, nlink, 0, 0);
        let setup = 3_000_000; // a chown 3 ms after the create, as bindfs makes
        assert!(file(0, setup, 1).looks_renamed() && !file(0, setup, 1).looks_moved_in());
        assert!(!file(0, MOVED_IN_AFTER_NS, 1).looks_moved_in());
        assert!(file(0, MOVED_IN_AFTER_NS + 1, 1).looks_moved_in());
        assert!(!file(0, 2 * MOVED_IN_AFTER_NS, 2).looks_moved_in(), "a hard link");
        assert!(!file(3 * MOVED_IN_AFTER_NS, 0, 1).looks_moved_in(), "mtime set ahead");
        let dir = EntryStat::new(0, 2 * MOVED_IN_AFTER_NS, 4096, 0o040755, 3, 0, 0);
        assert!(dir.looks_moved_in());
        let extreme = EntryStat::new(i64::MIN, i64::MAX, 0, 0o100644, 1, 0, 0);
        assert!(extreme.looks_moved_in(), "the difference saturates");
    }
}
