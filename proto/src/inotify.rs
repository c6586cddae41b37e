//! The inotify(7) ABI: mask bits, flags and the `struct inotify_event` layout.
//!
//! The daemon writes these records to instance sockets exactly as the kernel lays them out, so
//! unmodified readers (libuv, .NET, Qt, GLib, Java, inotifywait) parse them as their own.

pub const IN_ACCESS: u32 = 0x0000_0001;
pub const IN_MODIFY: u32 = 0x0000_0002;
pub const IN_ATTRIB: u32 = 0x0000_0004;
pub const IN_CLOSE_WRITE: u32 = 0x0000_0008;
pub const IN_CLOSE_NOWRITE: u32 = 0x0000_0010;
pub const IN_OPEN: u32 = 0x0000_0020;
pub const IN_MOVED_FROM: u32 = 0x0000_0040;
pub const IN_MOVED_TO: u32 = 0x0000_0080;
pub const IN_CREATE: u32 = 0x0000_0100;
pub const IN_DELETE: u32 = 0x0000_0200;
pub const IN_DELETE_SELF: u32 = 0x0000_0400;
pub const IN_MOVE_SELF: u32 = 0x0000_0800;
pub const IN_UNMOUNT: u32 = 0x0000_2000;
pub const IN_Q_OVERFLOW: u32 = 0x0000_4000;
pub const IN_IGNORED: u32 = 0x0000_8000;
pub const IN_ONLYDIR: u32 = 0x0100_0000;
pub const IN_DONT_FOLLOW: u32 = 0x0200_0000;
pub const IN_EXCL_UNLINK: u32 = 0x0400_0000;
pub const IN_MASK_CREATE: u32 = 0x1000_0000;
pub const IN_MASK_ADD: u32 = 0x2000_0000;
pub const IN_ISDIR: u32 = 0x4000_0000;
pub const IN_ONESHOT: u32 = 0x8000_0000;

pub const IN_CLOSE: u32 = IN_CLOSE_WRITE | IN_CLOSE_NOWRITE;
pub const IN_MOVE: u32 = IN_MOVED_FROM | IN_MOVED_TO;
/// Every event a watch can ask for (the kernel's `IN_ALL_EVENTS`).
pub const IN_ALL_EVENTS: u32 = 0x0000_0fff;
/// Events that are delivered whatever the watch's mask says.
pub const IN_ALWAYS: u32 = IN_IGNORED | IN_Q_OVERFLOW | IN_UNMOUNT;
/// Flags `inotify_add_watch` accepts besides event bits.
pub const IN_WATCH_FLAGS: u32 =
    IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK | IN_MASK_CREATE | IN_MASK_ADD | IN_ONESHOT;

/// Every bit `inotify_add_watch` knows (the kernel's `ALL_INOTIFY_BITS`).
pub const ALL_INOTIFY_BITS: u32 =
    IN_ALL_EVENTS | IN_UNMOUNT | IN_Q_OVERFLOW | IN_IGNORED | IN_ISDIR | IN_WATCH_FLAGS;

/// The mask checks `inotify_add_watch` makes before it looks at the fd: no unknown bit, and at
/// least one known bit.
pub const fn watch_mask_bits_are_known(mask: u32) -> bool {
    mask & !ALL_INOTIFY_BITS == 0 && mask & ALL_INOTIFY_BITS != 0
}

/// All of `inotify_add_watch`'s mask checks: the bits, then (after the fd) not IN_MASK_ADD
/// together with IN_MASK_CREATE.
pub const fn watch_mask_is_valid(mask: u32) -> bool {
    watch_mask_bits_are_known(mask) && !(mask & IN_MASK_ADD != 0 && mask & IN_MASK_CREATE != 0)
}

/// `inotify_init1` flags (equal to `O_NONBLOCK` and `O_CLOEXEC`).
pub const IN_NONBLOCK: u32 = 0o4000;
pub const IN_CLOEXEC: u32 = 0o2000000;

/// `sizeof(struct inotify_event)`: wd, mask, cookie, len.
pub const EVENT_HEADER_LEN: usize = 16;
/// `NAME_MAX`.
pub const NAME_MAX: usize = 255;
/// The largest event: header plus `NAME_MAX` bytes, the terminating NUL and no more. Any reader
/// buffer the kernel accepts is at least this big, so no message the daemon writes exceeds it.
pub const MAX_EVENT_LEN: usize = EVENT_HEADER_LEN + NAME_MAX + 1;

/// Bytes an event with a name of `name_len` bytes takes on the wire. As the kernel does, the
/// name is NUL-terminated and padded with NULs to a multiple of the header size; an event
/// without a name has `len == 0`.
pub const fn event_len(name_len: usize) -> usize {
    EVENT_HEADER_LEN + padded_name_len(name_len)
}

const fn padded_name_len(name_len: usize) -> usize {
    if name_len == 0 {
        0
    } else {
        (name_len + 1).div_ceil(EVENT_HEADER_LEN) * EVENT_HEADER_LEN
    }
}

/// One inotify event as the reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    /// The name inside a watched directory, without padding; empty for the object itself.
    pub name: &'a [u8],
}

/// Why an event could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventError {
    /// The name is longer than `NAME_MAX` or contains a NUL or `/`.
    BadName,
    /// The buffer is too small for the event.
    NoRoom,
    /// The bytes end inside an event header or name.
    Truncated,
}

impl core::fmt::Display for EventError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            EventError::BadName => "event name longer than NAME_MAX or holding NUL or '/'",
            EventError::NoRoom => "no room for the event in the buffer",
            EventError::Truncated => "event record truncated",
        })
    }
}

impl Event<'_> {
    /// Bytes this event takes on the wire.
    pub const fn wire_len(&self) -> usize {
        event_len(self.name.len())
    }

    /// Writes the event at the start of `out` and returns how many bytes it took.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EventError> {
        if self.name.len() > NAME_MAX || self.name.iter().any(|&b| b == 0 || b == b'/') {
            return Err(EventError::BadName);
        }
        let total = self.wire_len();
        let out = out.get_mut(..total).ok_or(EventError::NoRoom)?;
        let name_field = (total - EVENT_HEADER_LEN) as u32;
        out[0..4].copy_from_slice(&self.wd.to_ne_bytes());
        out[4..8].copy_from_slice(&self.mask.to_ne_bytes());
        out[8..12].copy_from_slice(&self.cookie.to_ne_bytes());
        out[12..16].copy_from_slice(&name_field.to_ne_bytes());
        let (name, pad) = out[EVENT_HEADER_LEN..].split_at_mut(self.name.len());
        name.copy_from_slice(self.name);
        pad.fill(0);
        Ok(total)
    }
}

/// Iterates over the events of one `read()` of an inotify fd (native byte order, as the kernel
/// writes them).
pub struct Events<'a> {
    rest: &'a [u8],
}

impl<'a> Events<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Events { rest: buf }
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, EventError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(header) = self.rest.get(..EVENT_HEADER_LEN) else {
            self.rest = &[];
            return Some(Err(EventError::Truncated));
        };
        let word = |i: usize| [header[i], header[i + 1], header[i + 2], header[i + 3]];
        let name_field = u32::from_ne_bytes(word(12)) as usize;
        let Some(name_bytes) = self.rest[EVENT_HEADER_LEN..].get(..name_field) else {
            self.rest = &[];
            return Some(Err(EventError::Truncated));
        };
        let name_len = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_field);
        let event = Event {
            wd: i32::from_ne_bytes(word(0)),
            mask: u32::from_ne_bytes(word(4)),
            cookie: u32::from_ne_bytes(word(8)),
            name: &name_bytes[..name_len],
        };
        self.rest = &self.rest[EVENT_HEADER_LEN + name_field..];
        Some(Ok(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_match_the_kernel() {
        assert_eq!(event_len(0), 16);
        assert_eq!(event_len(1), 32);
        assert_eq!(event_len(15), 32);
        assert_eq!(event_len(16), 48);
        assert_eq!(event_len(NAME_MAX), MAX_EVENT_LEN);
    }

    #[test]
    fn mask_checks_follow_the_kernel() {
        assert!(watch_mask_is_valid(IN_CREATE));
        assert!(watch_mask_is_valid(IN_ONLYDIR), "flags alone are accepted");
        assert!(watch_mask_is_valid(IN_IGNORED));
        assert!(!watch_mask_is_valid(0));
        assert!(!watch_mask_is_valid(IN_CREATE | 0x0800_0000), "unknown bit");
        assert!(!watch_mask_is_valid(IN_CREATE | 0x0001_0000), "unknown bit");
        assert!(!watch_mask_is_valid(IN_MODIFY | IN_MASK_ADD | IN_MASK_CREATE));
    }

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 2 * MAX_EVENT_LEN];
        let a = Event { wd: 3, mask: IN_CREATE | IN_ISDIR, cookie: 0, name: b"new dir" };
        let b = Event { wd: 1, mask: IN_DELETE_SELF, cookie: 7, name: b"" };
        let n = a.encode(&mut buf).unwrap();
        let m = b.encode(&mut buf[n..]).unwrap();
        let got: [Event; 2] = {
            let mut it = Events::new(&buf[..n + m]).map(Result::unwrap);
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(got, [a, b]);
        assert!(Events::new(&buf[..n + m]).nth(2).is_none());
    }

    #[test]
    fn rejects_bad_names_and_small_buffers() {
        let mut buf = [0u8; 64];
        let long = [b'a'; NAME_MAX + 1];
        let mut bad = |name| Event { wd: 1, mask: IN_CREATE, cookie: 0, name }.encode(&mut buf);
        assert_eq!(bad(&long), Err(EventError::BadName));
        assert_eq!(bad(b"a/b"), Err(EventError::BadName));
        assert_eq!(bad(b"a\0b"), Err(EventError::BadName));
        let mut small = [0u8; 20];
        let e = Event { wd: 1, mask: IN_CREATE, cookie: 0, name: b"x" };
        assert_eq!(e.encode(&mut small), Err(EventError::NoRoom));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut buf = [0u8; 64];
        let n =
            Event { wd: 1, mask: IN_CREATE, cookie: 0, name: b"file" }.encode(&mut buf).unwrap();
        for cut in 1..n {
            let mut it = Events::new(&buf[..cut]);
            assert_eq!(it.next(), Some(Err(EventError::Truncated)), "cut at {cut}");
            assert_eq!(it.next(), None);
        }
    }
}
