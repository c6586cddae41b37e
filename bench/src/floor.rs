//! The floor: what any poller must at least do to see every change in a tree, `getdents64` of
//! every directory and `statx` of every entry, in a loop with nothing else in it. Directories
//! are opened once (as the daemon keeps them open), with the daemon's default flags
//! (`AT_STATX_FORCE_SYNC`, the attributes it compares).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Mode, OFlags, RawDir, SeekFrom, StatxFlags};

const STAT_MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::UID)
    .union(StatxFlags::GID)
    .union(StatxFlags::MTIME)
    .union(StatxFlags::CTIME)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE);

pub struct Floor {
    dirs: Vec<OwnedFd>,
    buf: Vec<MaybeUninit<u8>>,
}

impl Floor {
    pub fn open(dirs: &[impl AsRef<Path>]) -> std::io::Result<Floor> {
        let dirs = dirs
            .iter()
            .map(|d| {
                rustix::fs::open(
                    d.as_ref(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Floor { dirs, buf: vec![MaybeUninit::uninit(); 64 * 1024] })
    }

    /// One pass; returns its time and the entries it listed (each got a `statx`). Without
    /// `force_sync`, NFS and FUSE may answer from their attribute caches (what notify's
    /// PollWatcher gets).
    pub fn pass(&mut self, force_sync: bool) -> std::io::Result<(Duration, usize)> {
        let sync = if force_sync { AtFlags::STATX_FORCE_SYNC } else { AtFlags::empty() };
        let start = Instant::now();
        let mut seen = 0;
        for dir in &self.dirs {
            rustix::fs::seek(dir, SeekFrom::Start(0))?;
            let mut raw = RawDir::new(dir.as_fd(), self.buf.as_mut_slice());
            while let Some(entry) = raw.next() {
                let entry = entry?;
                let name = entry.file_name();
                if name == c"." || name == c".." {
                    continue;
                }
                let flags = AtFlags::SYMLINK_NOFOLLOW | sync;
                // A name gone since the listing costs its round trip all the same (a FUSE
                // server may answer a rewound listing from what it read at opendir).
                let _ = rustix::fs::statx(dir, name, flags, STAT_MASK);
                seen += 1;
            }
        }
        Ok((start.elapsed(), seen))
    }
}
