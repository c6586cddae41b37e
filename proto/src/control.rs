//! Control requests: what `fakenotify-ctl` and `fakenotifyd`'s admin verbs ask the daemon.
//!
//! Requests travel in the body of a `Control` record and have a fixed layout (a verb byte, then
//! fixed fields, then a path), so the daemon decodes client input without any length-driven
//! allocation. Replies carry lists and use nanoserde's binary format (defined by the ctl crate).

/// Longest policy path a request may carry (`PATH_MAX`).
pub const MAX_PATH: usize = 4096;

/// Watch mode of a policy, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireMode {
    Auto = 0,
    Poll = 1,
    Inotify = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRequest<'a> {
    Status,
    List,
    /// Adds or replaces the policy for `path`. `interval_ms == 0` means the daemon's default.
    Add {
        path: &'a [u8],
        interval_ms: u64,
        recursive: bool,
        mode: WireMode,
    },
    Remove {
        path: &'a [u8],
    },
    Reload,
    Stop,
}

/// Why a control body is not a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlError {
    Empty,
    UnknownVerb(u8),
    Truncated,
    BadField(&'static str),
    Trailing,
}

impl core::fmt::Display for ControlError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ControlError::Empty => f.write_str("empty control request"),
            ControlError::UnknownVerb(v) => write!(f, "unknown control verb {v}"),
            ControlError::Truncated => f.write_str("control request truncated"),
            ControlError::BadField(name) => write!(f, "control request has an invalid {name}"),
            ControlError::Trailing => f.write_str("control request has trailing bytes"),
        }
    }
}

const STATUS: u8 = 1;
const LIST: u8 = 2;
const ADD: u8 = 3;
const REMOVE: u8 = 4;
const RELOAD: u8 = 5;
const STOP: u8 = 6;

/// Fixed part of Add after the verb: interval u64, recursive u8, mode u8.
const ADD_FIXED: usize = 10;

fn check_path(path: &[u8]) -> Result<&[u8], ControlError> {
    if path.is_empty() || path.len() > MAX_PATH || path.contains(&0) {
        Err(ControlError::BadField("path"))
    } else {
        Ok(path)
    }
}

impl<'a> ControlRequest<'a> {
    /// Whether only root or the daemon's own user may make this request.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            ControlRequest::Add { .. }
                | ControlRequest::Remove { .. }
                | ControlRequest::Reload
                | ControlRequest::Stop
        )
    }

    pub fn decode(body: &'a [u8]) -> Result<ControlRequest<'a>, ControlError> {
        let (&verb, rest) = body.split_first().ok_or(ControlError::Empty)?;
        let no_more =
            |rest: &[u8]| if rest.is_empty() { Ok(()) } else { Err(ControlError::Trailing) };
        Ok(match verb {
            STATUS => no_more(rest).map(|_| ControlRequest::Status)?,
            LIST => no_more(rest).map(|_| ControlRequest::List)?,
            RELOAD => no_more(rest).map(|_| ControlRequest::Reload)?,
            STOP => no_more(rest).map(|_| ControlRequest::Stop)?,
            REMOVE => ControlRequest::Remove { path: check_path(rest)? },
            ADD => {
                let fixed = rest.get(..ADD_FIXED).ok_or(ControlError::Truncated)?;
                let mut interval = [0u8; 8];
                interval.copy_from_slice(&fixed[..8]);
                let recursive = match fixed[8] {
                    0 => false,
                    1 => true,
                    _ => return Err(ControlError::BadField("recursive flag")),
                };
                let mode = match fixed[9] {
                    0 => WireMode::Auto,
                    1 => WireMode::Poll,
                    2 => WireMode::Inotify,
                    _ => return Err(ControlError::BadField("mode")),
                };
                ControlRequest::Add {
                    path: check_path(&rest[ADD_FIXED..])?,
                    interval_ms: u64::from_le_bytes(interval),
                    recursive,
                    mode,
                }
            }
            other => return Err(ControlError::UnknownVerb(other)),
        })
    }

    /// Writes the request body into `out` and returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, crate::record::NoRoom> {
        let mut fixed = [0u8; 1 + ADD_FIXED];
        let (head, path): (&[u8], &[u8]) = match *self {
            ControlRequest::Status => (&[STATUS], &[]),
            ControlRequest::List => (&[LIST], &[]),
            ControlRequest::Reload => (&[RELOAD], &[]),
            ControlRequest::Stop => (&[STOP], &[]),
            ControlRequest::Remove { path } => (&[REMOVE], path),
            ControlRequest::Add { path, interval_ms, recursive, mode } => {
                fixed[0] = ADD;
                fixed[1..9].copy_from_slice(&interval_ms.to_le_bytes());
                fixed[9] = u8::from(recursive);
                fixed[10] = mode as u8;
                (&fixed, path)
            }
        };
        let total = head.len() + path.len();
        let out = out.get_mut(..total).ok_or(crate::record::NoRoom)?;
        out[..head.len()].copy_from_slice(head);
        out[head.len()..].copy_from_slice(path);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_round_trips() {
        let requests = [
            ControlRequest::Status,
            ControlRequest::List,
            ControlRequest::Reload,
            ControlRequest::Stop,
            ControlRequest::Remove { path: b"/mnt/nas" },
            ControlRequest::Add {
                path: b"/mnt/nas/tv",
                interval_ms: 200,
                recursive: true,
                mode: WireMode::Poll,
            },
        ];
        for request in requests {
            let mut buf = [0u8; 64];
            let n = request.encode(&mut buf).unwrap();
            assert_eq!(ControlRequest::decode(&buf[..n]), Ok(request));
        }
    }

    #[test]
    fn malformed_requests_name_their_cause() {
        assert_eq!(ControlRequest::decode(b""), Err(ControlError::Empty));
        assert_eq!(ControlRequest::decode(&[99]), Err(ControlError::UnknownVerb(99)));
        assert_eq!(ControlRequest::decode(&[STATUS, 0]), Err(ControlError::Trailing));
        assert_eq!(ControlRequest::decode(&[ADD, 1, 2]), Err(ControlError::Truncated));
        assert_eq!(ControlRequest::decode(&[REMOVE]), Err(ControlError::BadField("path")));
        assert_eq!(ControlRequest::decode(b"\x04/a\0b"), Err(ControlError::BadField("path")));
        let mut add = [0u8; 1 + ADD_FIXED + 2];
        add[0] = ADD;
        add[9] = 7;
        add[11..].copy_from_slice(b"/x");
        assert_eq!(ControlRequest::decode(&add), Err(ControlError::BadField("recursive flag")));
        add[9] = 1;
        add[10] = 9;
        assert_eq!(ControlRequest::decode(&add), Err(ControlError::BadField("mode")));
    }
}
