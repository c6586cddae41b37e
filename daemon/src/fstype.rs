//! Which filesystems the kernel cannot report changes for, by `statfs` magic number.
//!
//! On these, changes made by another machine or by the FUSE server never pass through the local
//! VFS, so a kernel inotify watch stays silent and the daemon polls instead.

use rustix::fs::StatFs;

/// `(magic, name)` of filesystems whose changes can happen behind the kernel's back.
const REMOTE: &[(i64, &str)] = &[
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFE53_4D42, "smb2"),
    (0xFF53_4D42, "cifs"),
    (0x6573_5546, "fuse"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "ceph"),
    (0x5346_414F, "afs"),
    (0x6B41_4653, "kafs"),
    (0x7375_7245, "coda"),
    (0x564C, "ncp"),
    (0x0116_1970, "gfs2"),
    (0x7461_636F, "ocfs2"),
    (0x0BD0_0BD0, "lustre"),
];

/// The name of a remote filesystem type, or `None` for a local one.
pub fn remote_name(fs_type: i64) -> Option<&'static str> {
    REMOTE.iter().find(|(magic, _)| *magic == fs_type).map(|(_, name)| *name)
}

/// The filesystem type of a `statfs` result as a signed 64-bit magic.
pub fn magic(stat: &StatFs) -> i64 {
    // f_type is signed on some targets and unsigned on others; the magics fit in 32 bits.
    #[allow(clippy::unnecessary_cast)]
    let raw = stat.f_type as i64;
    raw & 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_remote_filesystems() {
        assert_eq!(remote_name(0x6969), Some("nfs"));
        assert_eq!(remote_name(0x6573_5546), Some("fuse"));
        assert_eq!(remote_name(0xFF53_4D42), Some("cifs"));
        assert_eq!(remote_name(0xEF53), None, "ext4 is local");
        assert_eq!(remote_name(0x0102_1994), None, "tmpfs is local");
    }
}
