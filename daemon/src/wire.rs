//! One record in, one record out, with the file descriptors that travel beside it.
//!
//! Requests arrive on short `SOCK_SEQPACKET` connections; a message is one whole record, and
//! `SCM_RIGHTS` carries the client's fds (received close-on-exec). Truncated messages and
//! descriptor arrays are refused, never half-read.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use fakenotify_proto::record::{DecodeError, Kind, Record, MAX_RECORD_LEN};
use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};

/// Most descriptors any record carries; more is a protocol error.
pub const MAX_FDS: usize = 2;

/// Why a request could not be read.
#[derive(Debug)]
pub enum RecvError {
    /// The peer closed the connection.
    Closed,
    /// Nothing to read yet.
    WouldBlock,
    Io(Errno),
    /// The message or its descriptor array did not fit: a hostile or broken client.
    Truncated,
    Decode(DecodeError),
    /// The record arrived with the wrong number of descriptors.
    Fds {
        expected: usize,
        got: usize,
    },
    /// A record that an instance's request channel does not carry.
    NotOnChannel(Kind),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Closed => f.write_str("connection closed"),
            RecvError::WouldBlock => f.write_str("nothing to read"),
            RecvError::Io(e) => write!(f, "recvmsg: {e}"),
            RecvError::Truncated => f.write_str("record or descriptor array truncated"),
            RecvError::Decode(e) => write!(f, "{e}"),
            RecvError::Fds { expected, got } => {
                write!(f, "record needs {expected} descriptors, {got} came")
            }
            RecvError::NotOnChannel(kind) => {
                write!(f, "unexpected {kind:?} record on a request channel")
            }
        }
    }
}

/// A received record: its bytes (decoded on demand) and its descriptors.
pub struct Received {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl Received {
    pub fn record(&self) -> Result<Record<'_>, RecvError> {
        let record = Record::decode(&self.bytes).map_err(RecvError::Decode)?;
        if record.fds() != self.fds.len() {
            return Err(RecvError::Fds { expected: record.fds(), got: self.fds.len() });
        }
        Ok(record)
    }

    /// The record, as received on an instance's request channel.
    pub fn channel_record(&self) -> Result<Record<'_>, RecvError> {
        let record = Record::decode(&self.bytes).map_err(RecvError::Decode)?;
        let expected = record.channel_fds().ok_or(RecvError::NotOnChannel(record.kind()))?;
        if expected != self.fds.len() {
            return Err(RecvError::Fds { expected, got: self.fds.len() });
        }
        Ok(record)
    }
}

/// Reads one message without blocking. `scratch` is a buffer the caller keeps from call to call,
/// so that no receive allocates or clears the largest record's worth of memory.
pub fn recv_record(fd: BorrowedFd<'_>, scratch: &mut Vec<u8>) -> Result<Received, RecvError> {
    scratch.resize(MAX_RECORD_LEN + 1, 0);
    let bytes = scratch;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match rustix::net::recvmsg(
            fd,
            &mut [IoSliceMut::new(bytes)],
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Err(RecvError::WouldBlock),
            Err(e) => return Err(RecvError::Io(e)),
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.intersects(ReturnFlags::TRUNC | ReturnFlags::CTRUNC) || msg.bytes > MAX_RECORD_LEN
    {
        return Err(RecvError::Truncated);
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Err(RecvError::Closed);
    }
    Ok(Received { bytes: bytes[..msg.bytes].to_vec(), fds })
}

/// Sends one record, with descriptors if any, without waiting for a slow peer.
pub fn send_record(
    fd: BorrowedFd<'_>,
    record: &Record<'_>,
    fds: &[BorrowedFd<'_>],
) -> Result<(), Errno> {
    fakenotify_ctl::transport::send_record(fd, record, fds, true)
}

/// The uid and pid of the process at the other end of the Unix socket `fd` (`SO_PEERCRED`).
/// The pid is 0 when that process is in a pid namespace the daemon cannot see (an application
/// in a sibling container of a containerised daemon), which rustix's `UCred`, holding a
/// non-zero `Pid`, cannot represent; so this reads `struct ucred` itself.
pub fn peer_cred(fd: BorrowedFd<'_>) -> Result<(u32, i32), Errno> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable `struct ucred` of `len` bytes, as SO_PEERCRED fills.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO));
    }
    Ok((cred.uid, cred.pid))
}
