//! A compact listing of one polled directory: sorted entries with names in one arena.
//!
//! An entry is 16 bytes plus its name; the 40-byte attributes are kept only while some subscriber
//! asks for IN_MODIFY, IN_ATTRIB or IN_CLOSE_WRITE. Sorting by name lets two listings be diffed
//! in one merge pass.

/// The attributes compared between polls to tell IN_MODIFY from IN_ATTRIB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryStat {
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub size: u64,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
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
    /// Adds an entry. Names longer than `NAME_MAX` cannot come from `getdents64` and are skipped.
    pub fn push(&mut self, name: &[u8], ino: u64, is_dir: bool, stat: Option<EntryStat>) {
        let (Ok(name_len), Ok(name_start)) =
            (u8::try_from(name.len()), u32::try_from(self.names.len()))
        else {
            return;
        };
        self.names.extend_from_slice(name);
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
        assert_eq!(s.stat(0).map(|st| st.size), Some(10));
        assert_eq!(s.stat(2).map(|st| st.size), Some(30));
        assert!(s.entries()[0].is_dir);
    }

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<EntryStat>(), 40);
    }
}
