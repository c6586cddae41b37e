//! Connections to the daemon's socket: resolving its path, connecting with bounded waits, and
//! one record out / one record in, with file descriptors passed as `SCM_RIGHTS`.

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use fakenotify_proto::control::ControlRequest;
use fakenotify_proto::record::{Record, HEADER_LEN, MAX_FIXED_RECORD_LEN, MAX_RECORD_LEN};
use fakenotify_proto::{DEFAULT_SOCKET, LEGACY_SOCKET, SOCKET_ENV};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::message::Response;

/// How long a request may wait for the daemon before it is reported as not answering.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request to the daemon failed. Each names the socket and the cause.
#[derive(Debug)]
pub enum CtlError {
    NotRunning { socket: PathBuf, errno: Errno },
    Io { socket: PathBuf, op: &'static str, errno: Errno },
    Protocol { socket: PathBuf, message: String },
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CtlError::NotRunning { socket, errno } => {
                write!(f, "daemon not running at {} ({errno})", socket.display())
            }
            CtlError::Io { socket, op, errno } => write!(f, "{}: {op}: {errno}", socket.display()),
            CtlError::Protocol { socket, message } => write!(f, "{}: {message}", socket.display()),
        }
    }
}

impl std::error::Error for CtlError {}

/// The socket to use: the flag, then `$FAKENOTIFY_SOCKET`, then the default, or, as the
/// preload does, the original FakeNotify's `/run/fakenotify.sock` when nothing is at the
/// default and something is there.
pub fn resolve_socket(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(SOCKET_ENV).filter(|s| !s.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| default_socket(Path::new(DEFAULT_SOCKET), Path::new(LEGACY_SOCKET)))
}

/// `primary`, unless it does not exist and `legacy` does (the error then names `primary`).
fn default_socket(primary: &Path, legacy: &Path) -> PathBuf {
    let absent = |path: &Path| matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if absent(primary) && !absent(legacy) {
        legacy.to_owned()
    } else {
        primary.to_owned()
    }
}

/// Sends one record and its descriptors. `nonblocking` never waits for a slow peer.
pub fn send_record(
    fd: BorrowedFd<'_>,
    record: &Record<'_>,
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> Result<(), Errno> {
    let size = match record {
        Record::Control(body) | Record::ControlReply(body) => HEADER_LEN + body.len(),
        _ => MAX_FIXED_RECORD_LEN,
    };
    let mut bytes = vec![0u8; size];
    let len = record.encode(&mut bytes).map_err(|_| Errno::MSGSIZE)?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::NOBUFS);
    }
    let flags =
        if nonblocking { SendFlags::DONTWAIT | SendFlags::NOSIGNAL } else { SendFlags::NOSIGNAL };
    loop {
        match rustix::net::sendmsg(fd, &[IoSlice::new(&bytes[..len])], &mut control, flags) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One request connection to the daemon.
pub struct Connection {
    fd: OwnedFd,
    socket: PathBuf,
}

impl Connection {
    pub fn connect(socket: &Path) -> Result<Connection, CtlError> {
        let not_running = |errno| CtlError::NotRunning { socket: socket.to_owned(), errno };
        let addr = SocketAddrUnix::new(socket).map_err(not_running)?;
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|errno| CtlError::Io {
            socket: socket.to_owned(),
            op: "socket",
            errno,
        })?;
        for kind in [rustix::net::sockopt::Timeout::Recv, rustix::net::sockopt::Timeout::Send] {
            rustix::net::sockopt::set_socket_timeout(&fd, kind, Some(TIMEOUT)).map_err(
                |errno| CtlError::Io { socket: socket.to_owned(), op: "setsockopt", errno },
            )?;
        }
        rustix::net::connect(&fd, &addr).map_err(not_running)?;
        Ok(Connection { fd, socket: socket.to_owned() })
    }

    /// Sends `record` with `fds` and returns the bytes of the reply record.
    pub fn call(&self, record: &Record<'_>, fds: &[BorrowedFd<'_>]) -> Result<Vec<u8>, CtlError> {
        let io = |op| move |errno| CtlError::Io { socket: self.socket.clone(), op, errno };
        send_record(std::os::fd::AsFd::as_fd(&self.fd), record, fds, false).map_err(io("send"))?;
        let mut reply = vec![0u8; MAX_RECORD_LEN];
        let n = loop {
            match rustix::net::recv(&self.fd, &mut reply, RecvFlags::empty()) {
                Ok((n, _)) if is_in_progress(&reply[..n]) => {
                    // The daemon works on it on a slow or hung mount: its answer comes when
                    // that is done, as a call into the kernel there would return.
                    rustix::net::sockopt::set_socket_timeout(
                        &self.fd,
                        rustix::net::sockopt::Timeout::Recv,
                        None,
                    )
                    .map_err(io("setsockopt"))?;
                }
                Ok((n, _)) => break n,
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return Err(io("waiting for the reply")(Errno::TIMEDOUT)),
                Err(errno) => return Err(io("recv")(errno)),
            }
        };
        if n == 0 {
            return Err(CtlError::Protocol {
                socket: self.socket.clone(),
                message: "the daemon closed the connection without a reply".into(),
            });
        }
        reply.truncate(n);
        Ok(reply)
    }

    fn protocol(&self, message: String) -> CtlError {
        CtlError::Protocol { socket: self.socket.clone(), message }
    }

    /// Sends a control request and decodes the daemon's response.
    pub fn control(&self, request: &ControlRequest<'_>) -> Result<Response, CtlError> {
        let mut body = vec![0u8; fakenotify_proto::control::MAX_PATH + 16];
        let n = request.encode(&mut body).map_err(|_| self.protocol("request too large".into()))?;
        let bytes = self.call(&Record::Control(&body[..n]), &[])?;
        match Record::decode(&bytes) {
            Ok(Record::ControlReply(body)) => {
                Response::from_bytes(body).map_err(|m| self.protocol(m))
            }
            Ok(Record::Reply(reply)) => Err(self.protocol(format!(
                "the daemon refused the request: {}",
                Errno::from_raw_os_error(reply.errno)
            ))),
            Ok(other) => Err(self.protocol(format!("unexpected {:?} reply", other.kind()))),
            Err(e) => Err(self.protocol(e.to_string())),
        }
    }
}

/// Whether `bytes` is the daemon's word that the answer comes later (`Reply::IN_PROGRESS`).
fn is_in_progress(bytes: &[u8]) -> bool {
    matches!(Record::decode(bytes), Ok(Record::Reply(reply)) if reply.is_in_progress())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legacy_socket_serves_only_when_the_default_is_absent() {
        let dir =
            std::env::temp_dir().join(format!("fakenotify-ctl-legacy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (primary, legacy) =
            (dir.join("fakenotify/fakenotify.sock"), dir.join("fakenotify.sock"));
        assert_eq!(default_socket(&primary, &legacy), primary, "neither exists: name the default");
        std::fs::write(&legacy, b"").unwrap();
        assert_eq!(default_socket(&primary, &legacy), legacy);
        std::fs::create_dir_all(dir.join("fakenotify")).unwrap();
        std::fs::write(&primary, b"").unwrap();
        assert_eq!(default_socket(&primary, &legacy), primary);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
