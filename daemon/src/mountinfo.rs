//! `/proc/self/mountinfo` read for what it says of one device: the filesystem type as the
//! kernel names it, with the FUSE subtype (`fuse.rclone`, `fuse.sshfs`, `fuse.mergerfs`), and
//! where it is mounted. `statfs` says only "fuse"; the subtype says which server answers.

/// One mount of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 9: `ext4`, `nfs4`, `fuse.rclone`, `fuse` (bindfs sets no subtype).
    pub fs_type: String,
    /// Field 5, with the kernel's octal escapes (`\040` for a space) undone.
    pub mount_point: String,
}

/// The first mount of the device `major:minor` in the text of a `mountinfo` file. Malformed
/// lines are skipped: the file is the kernel's, but a line this parser does not know must not
/// hide the others.
pub fn find(text: &str, major: u32, minor: u32) -> Option<MountEntry> {
    text.lines().find_map(|line| {
        let entry = parse_line(line)?;
        (entry.0 == (major, minor)).then_some(entry.1)
    })
}

/// The mount with id `id` (the first field, what `/proc/PID/fdinfo/FD` names as `mnt_id`): its
/// device and entry.
pub fn find_id(text: &str, id: u64) -> Option<((u32, u32), MountEntry)> {
    let id = id.to_string();
    text.lines().filter(|line| line.split(' ').next() == Some(id.as_str())).find_map(parse_line)
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: the
/// device, and the type and mount point. Optional fields end at the lone `-`.
fn parse_line(line: &str) -> Option<((u32, u32), MountEntry)> {
    let mut fields = line.split(' ');
    let _mount_id = fields.next()?;
    let _parent_id = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let device = (major.parse().ok()?, minor.parse().ok()?);
    let _root = fields.next()?;
    let mount_point = unescape(fields.next()?);
    let _options = fields.next()?;
    fields.by_ref().find(|field| *field == "-")?;
    let fs_type = unescape(fields.next().filter(|t| !t.is_empty())?);
    Some((device, MountEntry { fs_type, mount_point }))
}

/// Undoes the kernel's `\ooo` escapes of space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| {
            bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 27 0:40 / /tmp/bt/m rw,nosuid,nodev,relatime - fuse /tmp/bt/b rw,user_id=0,group_id=0
46 27 0:41 / /mnt/my\\040media rw,nosuid,nodev shared:7 master:2 - fuse.rclone local: rw
47 27 0:42 /sub /srv/pool rw - fuse.mergerfs disk1:disk2 rw
";

    #[test]
    fn finds_the_type_and_mount_point_of_a_device() {
        let root = find(SAMPLE, 8, 1).expect("root");
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.mount_point, "/");
        assert_eq!(find(SAMPLE, 0, 40).expect("bindfs").fs_type, "fuse");
        let rclone = find(SAMPLE, 0, 41).expect("rclone, after optional fields");
        assert_eq!(rclone.fs_type, "fuse.rclone");
        assert_eq!(rclone.mount_point, "/mnt/my media");
        assert_eq!(find(SAMPLE, 0, 42).expect("mergerfs").fs_type, "fuse.mergerfs");
        assert_eq!(find(SAMPLE, 0, 43), None);
    }

    #[test]
    fn finds_a_mount_by_its_id() {
        let (device, entry) = find_id(SAMPLE, 46).expect("rclone");
        assert_eq!(device, (0, 41));
        assert_eq!(entry.fs_type, "fuse.rclone");
        assert_eq!(find_id(SAMPLE, 4), None, "an id is a whole field, not a prefix");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "garbage\n1 2 x:y / / rw - ext4 a b\n1 2 0:43 / / rw no-dash ext4\n\
                    1 2 0:43 / / rw - \n9 9 0:43 / /ok rw - 9p src rw\n";
        assert_eq!(find(text, 0, 43).map(|m| m.mount_point), Some("/ok".to_owned()));
    }

    #[test]
    fn escapes_are_undone_and_stray_backslashes_kept() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("end\\04"), "end\\04");
        assert_eq!(unescape("\\777"), "\\777");
    }
}
