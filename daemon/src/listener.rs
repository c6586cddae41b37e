//! The daemon's listening socket: created world-connectable in a 0755 directory, a stale socket
//! of a dead daemon replaced, a live one refused, and removed again on a clean exit. Under
//! systemd socket activation (`fakenotify.socket`) the socket is inherited as fd 3 instead, and
//! its path belongs to systemd: it is left in place on exit.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Why the socket could not be set up; each names the path and the step.
#[derive(Debug)]
pub enum ListenError {
    Directory {
        path: PathBuf,
        error: std::io::Error,
    },
    InUse {
        path: PathBuf,
    },
    Socket {
        path: PathBuf,
        op: &'static str,
        errno: Errno,
    },
    /// `LISTEN_PID`/`LISTEN_FDS` name this process, but the passed socket cannot serve as the
    /// listener.
    Inherited {
        problem: String,
    },
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::Directory { path, error } => {
                write!(f, "{}: cannot create the socket directory: {error}", path.display())
            }
            ListenError::InUse { path } => {
                write!(f, "{}: another fakenotifyd is serving this socket", path.display())
            }
            ListenError::Socket { path, op, errno } => {
                write!(f, "{}: {op}: {errno}", path.display())
            }
            ListenError::Inherited { problem } => {
                write!(f, "socket activation (LISTEN_FDS): {problem}")
            }
        }
    }
}

impl std::error::Error for ListenError {}

pub struct Listener {
    pub fd: OwnedFd,
    /// The socket's path (for an inherited socket, what `getsockname` says).
    pub path: PathBuf,
    /// Whether the path is ours to remove on exit: not when systemd created the socket.
    unlink_on_drop: bool,
}

pub fn seqpacket_socket(nonblocking: bool) -> Result<OwnedFd, Errno> {
    let mut flags = SocketFlags::CLOEXEC;
    if nonblocking {
        flags |= SocketFlags::NONBLOCK;
    }
    rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None)
}

impl Listener {
    pub fn bind(path: &Path) -> Result<Listener, ListenError> {
        let fail = |op, errno| ListenError::Socket { path: path.to_owned(), op, errno };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|error| ListenError::Directory { path: dir.to_owned(), error })?;
        }
        let addr = SocketAddrUnix::new(path).map_err(|e| fail("socket address", e))?;
        if path.exists() {
            let probe = seqpacket_socket(false).map_err(|e| fail("socket", e))?;
            if rustix::net::connect(&probe, &addr).is_ok() {
                return Err(ListenError::InUse { path: path.to_owned() });
            }
            std::fs::remove_file(path).map_err(|e| {
                fail("remove stale socket", Errno::from_io_error(&e).unwrap_or(Errno::IO))
            })?;
        }
        let fd = seqpacket_socket(true).map_err(|e| fail("socket", e))?;
        rustix::net::bind(&fd, &addr).map_err(|e| fail("bind", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
            .map_err(|e| fail("chmod 0666", Errno::from_io_error(&e).unwrap_or(Errno::IO)))?;
        rustix::net::listen(&fd, 1024).map_err(|e| fail("listen", e))?;
        Ok(Listener { fd, path: path.to_owned(), unlink_on_drop: true })
    }

    /// The listening socket among the fds a service manager passed (sd_listen_fds(3)): the
    /// first one not named `stored` (those are the daemon's own, back from the fd store), or
    /// `Ok(None)` if there is none. It must be a listening `AF_UNIX`/`SOCK_SEQPACKET` socket; it
    /// is made non-blocking. The stored fds are returned beside it.
    pub fn inherited(
        passed: Vec<(OwnedFd, String)>,
        stored: &str,
    ) -> Result<(Option<Listener>, Vec<OwnedFd>), ListenError> {
        let (kept, others): (Vec<_>, Vec<_>) = passed.into_iter().partition(|(_, n)| n == stored);
        let kept = kept.into_iter().map(|(fd, _)| fd).collect();
        let Some((fd, _)) = others.into_iter().next() else { return Ok((None, kept)) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let problem =
            |problem: String| ListenError::Inherited { problem: format!("fd {raw} {problem}") };
        let domain = rustix::net::sockopt::socket_domain(&fd)
            .map_err(|e| problem(format!("is not a socket: {e}")))?;
        let kind =
            rustix::net::sockopt::socket_type(&fd).map_err(|e| problem(format!("SO_TYPE: {e}")))?;
        if domain != AddressFamily::UNIX || kind != SocketType::SEQPACKET {
            return Err(problem(
                "is not an AF_UNIX SOCK_SEQPACKET socket (ListenSequentialPacket= in the .socket \
                 unit makes one)"
                    .to_owned(),
            ));
        }
        let listening = rustix::net::sockopt::socket_acceptconn(&fd)
            .map_err(|e| problem(format!("SO_ACCEPTCONN: {e}")))?;
        if !listening {
            return Err(problem("is not a listening socket".to_owned()));
        }
        rustix::io::ioctl_fionbio(&fd, true).map_err(|e| problem(format!("FIONBIO: {e}")))?;
        let path = rustix::net::getsockname(&fd)
            .ok()
            .and_then(|addr| SocketAddrUnix::try_from(addr).ok())
            .and_then(|addr| addr.path_bytes().map(|p| PathBuf::from(OsStr::from_bytes(p))))
            .unwrap_or_else(|| PathBuf::from("(inherited socket)"));
        Ok((Some(Listener { fd, path, unlink_on_drop: false }), kept))
    }

    /// Whether the socket came from the service manager.
    pub fn is_inherited(&self) -> bool {
        !self.unlink_on_drop
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            // Best effort: a socket left behind is replaced by the next start anyway.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
