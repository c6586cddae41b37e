//! The daemon's listening socket: created world-connectable in a 0755 directory, a stale socket
//! of a dead daemon replaced, a live one refused, and removed again on a clean exit.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Why the socket could not be set up; each names the path and the step.
#[derive(Debug)]
pub enum ListenError {
    Directory { path: PathBuf, error: std::io::Error },
    InUse { path: PathBuf },
    Socket { path: PathBuf, op: &'static str, errno: Errno },
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
        }
    }
}

impl std::error::Error for ListenError {}

pub struct Listener {
    pub fd: OwnedFd,
    pub path: PathBuf,
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
        Ok(Listener { fd, path: path.to_owned() })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Best effort: a socket left behind is replaced by the next start anyway.
        let _ = std::fs::remove_file(&self.path);
    }
}
