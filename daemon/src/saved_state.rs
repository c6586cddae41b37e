//! The compact state record the daemon leaves in systemd's file-descriptor store on a clean
//! stop, so that a restarted daemon resumes every instance and watch: which stored socket is
//! which instance, its watch descriptors and masks, and which stored fd is which object.
//!
//! Text, one item per line, so it can be read in a journal and fuzzed; fds are named by
//! `(st_dev, st_ino)`, which survives the fd store's reordering.
//!
//! ```text
//! fakenotify-state 1
//! object DEV INO IS_DIR
//! instance KEY SOCKET_DEV SOCKET_INO UID PID NEXT_WD
//! watch KEY WD MASK DEV INO
//! ```

pub const HEADER: &str = "fakenotify-state 1";

/// The fd-store name under which every stored fd is kept.
pub const STORE_NAME: &str = "fakenotify";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    pub objects: Vec<SavedObject>,
    pub instances: Vec<SavedInstance>,
    pub watches: Vec<SavedWatch>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedObject {
    pub id: (u64, u64),
    pub is_dir: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedInstance {
    /// The inode of the application's end: the instance's key, unchanged across restarts.
    pub key: u64,
    /// `(dev, ino)` of the daemon's end, to find it among the stored fds.
    pub socket: (u64, u64),
    pub uid: u32,
    pub pid: i32,
    pub next_wd: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SavedWatch {
    pub key: u64,
    pub wd: i32,
    pub mask: u32,
    pub object: (u64, u64),
}

impl SavedState {
    pub fn encode(&self) -> String {
        let mut out = format!("{HEADER}\n");
        for o in &self.objects {
            out.push_str(&format!("object {} {} {}\n", o.id.0, o.id.1, u8::from(o.is_dir)));
        }
        for i in &self.instances {
            out.push_str(&format!(
                "instance {} {} {} {} {} {}\n",
                i.key, i.socket.0, i.socket.1, i.uid, i.pid, i.next_wd
            ));
        }
        for w in &self.watches {
            out.push_str(&format!(
                "watch {} {} {} {} {}\n",
                w.key, w.wd, w.mask, w.object.0, w.object.1
            ));
        }
        out
    }

    /// Parses a record; any malformed line is an error naming the line.
    pub fn decode(text: &str) -> Result<SavedState, String> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(format!("state record does not start with \"{HEADER}\"")),
        }
        let mut state = SavedState::default();
        for (index, line) in lines {
            let bad = |what: &str| format!("state record line {}: {what}", index + 1);
            let mut fields = line.split(' ');
            let kind = fields.next().unwrap_or_default();
            let numbers: Vec<&str> = fields.collect();
            let number = |i: usize| -> Result<u64, String> {
                numbers.get(i).and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| bad("bad number"))
            };
            let small = |i: usize| -> Result<i64, String> {
                numbers.get(i).and_then(|n| n.parse::<i64>().ok()).ok_or_else(|| bad("bad number"))
            };
            let count =
                |n: usize| if numbers.len() == n { Ok(()) } else { Err(bad("wrong field count")) };
            match kind {
                "object" => {
                    count(3)?;
                    let is_dir = match number(2)? {
                        0 => false,
                        1 => true,
                        _ => return Err(bad("IS_DIR is not 0 or 1")),
                    };
                    state.objects.push(SavedObject { id: (number(0)?, number(1)?), is_dir });
                }
                "instance" => {
                    count(6)?;
                    state.instances.push(SavedInstance {
                        key: number(0)?,
                        socket: (number(1)?, number(2)?),
                        uid: u32::try_from(number(3)?).map_err(|_| bad("uid out of range"))?,
                        pid: i32::try_from(small(4)?).map_err(|_| bad("pid out of range"))?,
                        next_wd: i32::try_from(small(5)?).map_err(|_| bad("wd out of range"))?,
                    });
                }
                "watch" => {
                    count(5)?;
                    state.watches.push(SavedWatch {
                        key: number(0)?,
                        wd: i32::try_from(small(1)?).map_err(|_| bad("wd out of range"))?,
                        mask: u32::try_from(number(2)?).map_err(|_| bad("mask out of range"))?,
                        object: (number(3)?, number(4)?),
                    });
                }
                "" => {}
                other => return Err(bad(&format!("unknown item \"{other}\""))),
            }
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let state = SavedState {
            objects: vec![SavedObject { id: (45, 7), is_dir: true }],
            instances: vec![SavedInstance {
                key: 99,
                socket: (8, 100),
                uid: 0,
                pid: 42,
                next_wd: 3,
            }],
            watches: vec![SavedWatch { key: 99, wd: 2, mask: 0x100, object: (45, 7) }],
        };
        assert_eq!(SavedState::decode(&state.encode()), Ok(state));
    }

    #[test]
    fn malformed_records_name_the_line() {
        assert!(SavedState::decode("").is_err());
        assert!(SavedState::decode("fakenotify-state 2\n").is_err());
        let bad = SavedState::decode("fakenotify-state 1\nobject 1 2 7\n").unwrap_err();
        assert!(bad.contains("line 2") && bad.contains("IS_DIR"), "{bad}");
        assert!(SavedState::decode("fakenotify-state 1\nwatch 1 2\n")
            .unwrap_err()
            .contains("count"));
        assert!(SavedState::decode("fakenotify-state 1\nwatch 1 x 3 4 5\n").is_err());
        assert!(SavedState::decode("fakenotify-state 1\nbogus\n").unwrap_err().contains("bogus"));
    }
}
