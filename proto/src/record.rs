//! Framed records on the daemon's socket: one record per `SOCK_SEQPACKET` message.
//!
//! Every record starts with a 12-byte little-endian header `{magic "FNTF", version u16, kind u16,
//! len u32}` followed by `len` bytes of body. The preload's records (Register, AddWatch, RmWatch,
//! Reply) have fixed bodies; control records carry a nanoserde-binary body that the ctl crate
//! defines. `Record::decode` checks magic, version, kind and lengths once; a record it returns is
//! well formed. File descriptors travel beside the record as `SCM_RIGHTS`; `Record::fds` says how
//! many each kind must carry on a short connection, `Record::channel_fds` on an instance's
//! request channel (the connection that carried its Register, which then stays open).

pub const MAGIC: [u8; 4] = *b"FNTF";
/// Bumped whenever a record's layout or meaning changes; peers refuse any other version.
pub const VERSION: u16 = 2;
pub const HEADER_LEN: usize = 12;
/// Largest body of a control record (status and list replies included).
pub const MAX_CONTROL_BODY: usize = 60 * 1024;
/// A buffer this big holds any record.
pub const MAX_RECORD_LEN: usize = HEADER_LEN + MAX_CONTROL_BODY;
/// A buffer this big holds any fixed-size record (everything the preload sends or receives).
pub const MAX_FIXED_RECORD_LEN: usize = HEADER_LEN + 8;

/// Record kinds, as numbered on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// Preload → daemon: a new instance. fds: the application's end, the daemon's end. After
    /// the reply, the connection stays open as the instance's request channel.
    Register = 1,
    /// Preload → daemon: watch an object. fds: the application's end (not on the instance's
    /// channel), the opened object.
    AddWatch = 2,
    /// Preload → daemon: remove a watch. fds: the application's end (none on the channel).
    RmWatch = 3,
    /// Daemon → preload: the answer to any of the three above.
    Reply = 4,
    /// Client → daemon: an administrative or query request (nanoserde body).
    Control = 5,
    /// Daemon → client: the answer to a control request (nanoserde body).
    ControlReply = 6,
}

impl Kind {
    fn from_wire(raw: u16) -> Option<Kind> {
        Some(match raw {
            1 => Kind::Register,
            2 => Kind::AddWatch,
            3 => Kind::RmWatch,
            4 => Kind::Reply,
            5 => Kind::Control,
            6 => Kind::ControlReply,
            _ => return None,
        })
    }
}

/// The daemon's answer to a preload request: `errno == 0` is success and `value` is the result
/// (a watch descriptor for AddWatch); otherwise `errno` is what the hooked call sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub errno: i32,
    pub value: i32,
}

/// Linux's `EINPROGRESS`, the same on every architecture the project builds for.
const EINPROGRESS: i32 = 115;

impl Reply {
    /// Not an answer yet: the daemon took the request and works on it on a slow or hung mount.
    /// The answer follows on the same connection whenever that is done; the caller waits for it
    /// as it would wait in the kernel on that mount. `inotify_add_watch` never fails with
    /// `EINPROGRESS`, so no final answer looks like this one.
    pub const IN_PROGRESS: Reply = Reply { errno: EINPROGRESS, value: 0 };

    pub fn is_in_progress(&self) -> bool {
        *self == Reply::IN_PROGRESS
    }
}

/// A decoded record. Control bodies borrow from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Register,
    AddWatch { mask: u32 },
    RmWatch { wd: i32 },
    Reply(Reply),
    Control(&'a [u8]),
    ControlReply(&'a [u8]),
}

/// Why bytes are not a record. Each names the cause for a one-line log message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a header.
    Short {
        got: usize,
    },
    BadMagic,
    /// The peer speaks another protocol version.
    Version {
        got: u16,
    },
    UnknownKind {
        kind: u16,
    },
    /// The header's length disagrees with the bytes received.
    Length {
        declared: u32,
        got: usize,
    },
    /// The body's length is wrong for its kind.
    BodyLength {
        kind: Kind,
        expected: usize,
        got: usize,
    },
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DecodeError::Short { got } => {
                write!(f, "record of {got} bytes is shorter than the {HEADER_LEN}-byte header")
            }
            DecodeError::BadMagic => f.write_str("record does not start with \"FNTF\""),
            DecodeError::Version { got } => {
                write!(f, "peer speaks protocol version {got}, this side speaks {VERSION}")
            }
            DecodeError::UnknownKind { kind } => write!(f, "unknown record kind {kind}"),
            DecodeError::Length { declared, got } => {
                write!(f, "header declares a {declared}-byte body but {got} bytes came")
            }
            DecodeError::BodyLength { kind, expected, got } => {
                write!(f, "{kind:?} body is {got} bytes, expected {expected}")
            }
        }
    }
}

/// The output buffer is too small for the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoRoom;

impl<'a> Record<'a> {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Register => Kind::Register,
            Record::AddWatch { .. } => Kind::AddWatch,
            Record::RmWatch { .. } => Kind::RmWatch,
            Record::Reply(_) => Kind::Reply,
            Record::Control(_) => Kind::Control,
            Record::ControlReply(_) => Kind::ControlReply,
        }
    }

    /// How many file descriptors must travel with this record.
    pub fn fds(&self) -> usize {
        match self {
            Record::Register | Record::AddWatch { .. } => 2,
            Record::RmWatch { .. } => 1,
            Record::Reply(_) | Record::Control(_) | Record::ControlReply(_) => 0,
        }
    }

    /// How many file descriptors travel with this record on an instance's request channel,
    /// where the channel names the instance and the application's end is not sent; None for a
    /// record that has no place there.
    pub fn channel_fds(&self) -> Option<usize> {
        match self {
            Record::AddWatch { .. } => Some(1),
            Record::RmWatch { .. } => Some(0),
            _ => None,
        }
    }

    /// Validates `buf` (one whole message) and returns the record it holds.
    pub fn decode(buf: &'a [u8]) -> Result<Record<'a>, DecodeError> {
        let header = buf.get(..HEADER_LEN).ok_or(DecodeError::Short { got: buf.len() })?;
        if header[0..4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u16::from_le_bytes([header[4], header[5]]);
        if version != VERSION {
            return Err(DecodeError::Version { got: version });
        }
        let raw_kind = u16::from_le_bytes([header[6], header[7]]);
        let kind = Kind::from_wire(raw_kind).ok_or(DecodeError::UnknownKind { kind: raw_kind })?;
        let declared = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let body = &buf[HEADER_LEN..];
        if declared as usize != body.len() {
            return Err(DecodeError::Length { declared, got: body.len() });
        }
        let fixed = |expected: usize| {
            if body.len() == expected {
                Ok(())
            } else {
                Err(DecodeError::BodyLength { kind, expected, got: body.len() })
            }
        };
        let word = |i: usize| [body[i], body[i + 1], body[i + 2], body[i + 3]];
        Ok(match kind {
            Kind::Register => {
                fixed(0)?;
                Record::Register
            }
            Kind::AddWatch => {
                fixed(4)?;
                Record::AddWatch { mask: u32::from_le_bytes(word(0)) }
            }
            Kind::RmWatch => {
                fixed(4)?;
                Record::RmWatch { wd: i32::from_le_bytes(word(0)) }
            }
            Kind::Reply => {
                fixed(8)?;
                Record::Reply(Reply {
                    errno: i32::from_le_bytes(word(0)),
                    value: i32::from_le_bytes(word(4)),
                })
            }
            Kind::Control | Kind::ControlReply if body.len() > MAX_CONTROL_BODY => {
                return Err(DecodeError::BodyLength {
                    kind,
                    expected: MAX_CONTROL_BODY,
                    got: body.len(),
                })
            }
            Kind::Control => Record::Control(body),
            Kind::ControlReply => Record::ControlReply(body),
        })
    }

    /// Writes the record into `out` and returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, NoRoom> {
        let mut fixed = [0u8; 8];
        let body: &[u8] = match *self {
            Record::Register => &[],
            Record::AddWatch { mask } => {
                fixed[..4].copy_from_slice(&mask.to_le_bytes());
                &fixed[..4]
            }
            Record::RmWatch { wd } => {
                fixed[..4].copy_from_slice(&wd.to_le_bytes());
                &fixed[..4]
            }
            Record::Reply(Reply { errno, value }) => {
                fixed[..4].copy_from_slice(&errno.to_le_bytes());
                fixed[4..].copy_from_slice(&value.to_le_bytes());
                &fixed
            }
            Record::Control(body) | Record::ControlReply(body) => {
                if body.len() > MAX_CONTROL_BODY {
                    return Err(NoRoom);
                }
                body
            }
        };
        let total = HEADER_LEN + body.len();
        let out = out.get_mut(..total).ok_or(NoRoom)?;
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(self.kind() as u16).to_le_bytes());
        out[8..12].copy_from_slice(&(body.len() as u32).to_le_bytes());
        out[HEADER_LEN..].copy_from_slice(body);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(record: Record<'_>) {
        let mut buf = [0u8; 64];
        let n = record.encode(&mut buf).unwrap();
        assert_eq!(Record::decode(&buf[..n]), Ok(record));
        for cut in 0..n {
            assert!(Record::decode(&buf[..cut]).is_err(), "{record:?} cut at {cut}");
        }
    }

    #[test]
    fn every_kind_round_trips_and_every_truncation_fails() {
        round_trip(Record::Register);
        round_trip(Record::AddWatch { mask: 0x8000_0fff });
        round_trip(Record::RmWatch { wd: -1 });
        round_trip(Record::Reply(Reply { errno: 2, value: -1 }));
        round_trip(Record::Control(b"\x01\x02"));
        round_trip(Record::ControlReply(b""));
    }

    #[test]
    fn header_checks_name_their_cause() {
        let mut buf = [0u8; 32];
        let n = Record::AddWatch { mask: 2 }.encode(&mut buf).unwrap();
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(Record::decode(&bad[..n]), Err(DecodeError::BadMagic));
        let mut bad = buf;
        bad[4] = 9;
        assert_eq!(Record::decode(&bad[..n]), Err(DecodeError::Version { got: 9 }));
        let mut bad = buf;
        bad[6] = 99;
        assert_eq!(Record::decode(&bad[..n]), Err(DecodeError::UnknownKind { kind: 99 }));
        let mut bad = buf;
        bad[8] = 200;
        assert_eq!(Record::decode(&bad[..n]), Err(DecodeError::Length { declared: 200, got: 4 }));
        assert_eq!(Record::decode(&buf[..n + 1]), Err(DecodeError::Length { declared: 4, got: 5 }));
        let mut bad = buf;
        bad[8] = 5;
        assert_eq!(
            Record::decode(&bad[..n + 1]),
            Err(DecodeError::BodyLength { kind: Kind::AddWatch, expected: 4, got: 5 })
        );
    }

    #[test]
    fn encode_refuses_a_small_buffer() {
        let mut buf = [0u8; HEADER_LEN + 3];
        assert_eq!(Record::AddWatch { mask: 1 }.encode(&mut buf), Err(NoRoom));
        assert_eq!(Record::Register.encode(&mut buf), Ok(HEADER_LEN));
    }
}
