//! The filesystem side of a poll: `statx` of a watched object, `getdents64` of a directory and
//! `statx` of its entries, turned into a [`Snapshot`]. Every syscall is counted.
//!
//! `force_sync` asks NFS and FUSE to revalidate cached attributes (`AT_STATX_FORCE_SYNC`), so a
//! change made on the server is seen at the next poll rather than after the attribute cache ages.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Statx, StatxFlags};
use rustix::io::Errno;

use crate::snapshot::{nanos, EntryStat, Snapshot, SnapshotBuilder};
use crate::statx_batch::{self, StatBatcher};

/// Syscalls made by polls and what they found, for `status` and the bench.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanCounters {
    pub statx: u64,
    /// Listings read (each is one `getdents64` per 64 KiB of entries, plus the one at the end).
    pub getdents: u64,
    /// Entries of fresh listings compared with the previous one.
    pub compared: u64,
    /// Changes found (events before each subscriber's mask is applied).
    pub changes: u64,
}

impl ScanCounters {
    /// Filesystem operations: what a file server sees of the polls.
    pub fn ops(&self) -> u64 {
        self.statx + self.getdents
    }

    pub fn add(&mut self, other: &ScanCounters) {
        self.statx += other.statx;
        self.getdents += other.getdents;
        self.compared += other.compared;
        self.changes += other.changes;
    }
}

/// What a directory's own attributes say about its listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStamp {
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

const STAT_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE);

fn sync_flag(force_sync: bool) -> AtFlags {
    if force_sync {
        AtFlags::STATX_FORCE_SYNC
    } else {
        AtFlags::empty()
    }
}

pub fn entry_stat(st: &Statx) -> EntryStat {
    EntryStat::of(st)
}

/// How close to the time of the listing a directory's times may be and still let a change made
/// after it move them: file times come from a coarse clock (a jiffy on Linux, a second on
/// sshfs, FAT and some SMB servers), and a file server's clock may run a little behind ours.
const RACY_NS: i64 = 2_000_000_000;

impl DirStamp {
    /// Whether both times are whole seconds: the directory's filesystem keeps no finer ones,
    /// so a change in the second of the last poll may not move them.
    pub fn whole_seconds(&self) -> bool {
        self.mtime_ns % 1_000_000_000 == 0 && self.ctime_ns % 1_000_000_000 == 0
    }

    /// Whether the stamp is within [`RACY_NS`] of `now_ns`, so that a change made since may
    /// have left it as it is (git's "racy clean" entries).
    pub fn is_recent(&self, now_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) > now_ns.saturating_sub(RACY_NS)
    }
}

pub fn dir_stamp(st: &Statx) -> DirStamp {
    DirStamp { mtime_ns: nanos(st.stx_mtime), ctime_ns: nanos(st.stx_ctime) }
}

/// `statx` of the object behind `fd` itself.
pub fn stat_object(
    fd: BorrowedFd<'_>,
    force_sync: bool,
    counters: &mut ScanCounters,
) -> Result<Statx, Errno> {
    counters.statx += 1;
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH | sync_flag(force_sync), STAT_MASK)
}

/// `statx` of the entry `name` of the directory `dir`, not following a symlink.
pub fn stat_entry(
    dir: BorrowedFd<'_>,
    name: &CStr,
    force_sync: bool,
    counters: &mut ScanCounters,
) -> Result<Statx, Errno> {
    counters.statx += 1;
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW | sync_flag(force_sync), STAT_MASK)
}

/// What a thread that polls keeps between polls: the `getdents64` buffer and its `statx`
/// helpers.
pub struct ScanIo {
    buf: Vec<MaybeUninit<u8>>,
    stats: StatBatcher,
}

impl ScanIo {
    /// `statx` of a directory's entries with requests in flight, where they are slow.
    pub fn new() -> ScanIo {
        ScanIo {
            buf: vec![MaybeUninit::uninit(); 64 * 1024],
            stats: StatBatcher::new(statx_batch::IN_FLIGHT),
        }
    }
}

/// Reads the whole listing of the directory `dir`, with attributes when `with_stats`.
/// Entries that vanish between `getdents64` and their `statx` are left out, as they are gone.
///
/// The listing is read through a fresh open of the directory, never by rewinding one held
/// open: sshfs lists nothing after `lseek(0)`, and a FUSE server may answer a rewound stream
/// from what it read at `opendir`. On FUSE that costs an `OPENDIR` and a `RELEASEDIR` more
/// per listing.
pub fn list(
    dir: BorrowedFd<'_>,
    with_stats: bool,
    force_sync: bool,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
) -> Result<Snapshot, Errno> {
    let stream = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut builder = SnapshotBuilder::default();
    // Entries whose `statx` is needed: their names, NUL-terminated, in one arena.
    let mut pending: Vec<(u64, std::ops::Range<usize>)> = Vec::new();
    let mut names: Vec<u8> = Vec::new();
    let mut raw = RawDir::new(stream.as_fd(), io.buf.as_mut_slice());
    // RawDir makes one getdents64 per buffer fill; count fills by watching for a new buffer.
    counters.getdents += 1;
    while let Some(entry) = raw.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes_with_nul();
        if name == b".\0" || name == b"..\0" {
            continue;
        }
        let known_type = entry.file_type();
        if with_stats || known_type == FileType::Unknown {
            let start = names.len();
            names.extend_from_slice(name);
            pending.push((entry.ino(), start..names.len()));
        } else {
            builder.push(
                &name[..name.len() - 1],
                entry.ino(),
                known_type == FileType::Directory,
                None,
            );
        }
    }
    // getdents64 never yields a name without its NUL, nor one with a NUL inside.
    let c_names: Vec<&CStr> = pending
        .iter()
        .map(|(_, range)| CStr::from_bytes_with_nul(&names[range.clone()]).unwrap_or(c""))
        .collect();
    counters.statx += c_names.len() as u64;
    let flags = AtFlags::SYMLINK_NOFOLLOW | sync_flag(force_sync);
    let stats = io.stats.stat_all(dir, &c_names, flags, STAT_MASK);
    for ((ino, _), (name, stat)) in pending.iter().zip(c_names.iter().zip(stats)) {
        let found = match stat {
            Ok(found) => found,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        let stat = with_stats.then_some(found.stat);
        builder.push(name.to_bytes(), *ino, found.is_dir, stat);
    }
    Ok(builder.finish())
}

/// Fresh attributes for the names of `known` (a listing that has not changed since).
/// Returns `None` when an entry vanished or changed inode, so the caller lists again.
pub fn restat(
    dir: BorrowedFd<'_>,
    known: &Snapshot,
    force_sync: bool,
    io: &mut ScanIo,
    counters: &mut ScanCounters,
) -> Result<Option<Snapshot>, Errno> {
    let Some(names) = known.entries().iter().map(|e| known.c_name(e)).collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    counters.statx += names.len() as u64;
    let flags = AtFlags::SYMLINK_NOFOLLOW | sync_flag(force_sync);
    let mut stats = Vec::with_capacity(known.len());
    for (entry, result) in
        known.entries().iter().zip(io.stats.stat_all(dir, &names, flags, STAT_MASK))
    {
        match result {
            Ok(found) if found.ino == entry.ino => stats.push(found.stat),
            Ok(_) | Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(known.with_stats(stats)))
}
