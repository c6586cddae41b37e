//! The daemon's listening socket: created world-connectable in a 0755 directory, a stale socket
//! of a dead daemon replaced, a live one refused, and removed again on a clean exit. Under
//! systemd socket activation (`fakenotify.socket`) the socket is inherited as fd 3 instead, and
//! its path belongs to systemd: it is left in place on exit.
//!
//! Nothing here follows a path someone else could redirect: the directory is opened once and
//! checked (only root or the daemon's uid may write it, or it is sticky and theirs), every later
//! step works relative to that fd, and the socket gets its mode from the umask at `bind`, never
//! from a `chmod` by path (which follows a symlink planted in its place).

use std::ffi::CString;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
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
    /// The directory could be written by someone the daemon does not trust, who could swap
    /// the socket for a link to another file.
    UnsafeDirectory {
        path: PathBuf,
        why: String,
    },
    /// Something other than a socket has the socket's name.
    NotASocket {
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
            ListenError::UnsafeDirectory { path, why } => write!(
                f,
                "{}: refusing this socket directory: {why}; use one only root or the daemon's \
                 uid can write (e.g. /run/fakenotify)",
                path.display()
            ),
            ListenError::NotASocket { path } => {
                write!(f, "{}: exists and is not a socket; refusing to replace it", path.display())
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
    /// What to remove on exit: not when systemd created the socket.
    unlink_on_drop: Option<Created>,
}

/// The socket this daemon bound: its directory, its name there and its inode, so that exit
/// removes that socket and nothing a path may name by then.
struct Created {
    dir: OwnedFd,
    name: CString,
    ino: u64,
}

/// Whether a directory owned by `owner` with `mode` may hold the socket: only root and the
/// daemon's own uid may write it (owner, group or others), except that a sticky directory of
/// theirs (as `/tmp`) protects each entry from everyone but its owner. ACLs are not read.
fn directory_is_safe(owner: u32, mode: u32, own_uid: u32) -> Result<(), String> {
    if owner != 0 && owner != own_uid {
        return Err(format!("it belongs to uid {owner}, who could replace the socket"));
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        let who = if mode & 0o002 != 0 { "every user" } else { "its group" };
        return Err(format!("{who} may write it (mode {:o}) and it is not sticky", mode & 0o7777));
    }
    Ok(())
}

/// Runs with another working directory and restores the old one on drop. Only at start-up,
/// before any thread exists.
struct WorkingDirectory {
    old: Option<OwnedFd>,
}

impl WorkingDirectory {
    fn enter(dir: &OwnedFd) -> Result<WorkingDirectory, Errno> {
        let old = rustix::fs::open(
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok();
        rustix::process::fchdir(dir)?;
        Ok(WorkingDirectory { old })
    }
}

impl Drop for WorkingDirectory {
    fn drop(&mut self) {
        // A working directory that is gone cannot be restored; `/` serves then.
        let restored = self.old.as_ref().is_some_and(|old| rustix::process::fchdir(old).is_ok());
        if !restored {
            let _ = rustix::process::chdir("/");
        }
    }
}

pub fn seqpacket_socket(nonblocking: bool) -> Result<OwnedFd, Errno> {
    let mut flags = SocketFlags::CLOEXEC;
    if nonblocking {
        flags |= SocketFlags::NONBLOCK;
    }
    rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, flags, None)
}

/// Opens the socket directory `dir_path` (`O_PATH`) and checks who may write it.
fn open_checked(dir_path: &Path) -> Result<OwnedFd, ListenError> {
    let dir = rustix::fs::open(
        dir_path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| ListenError::Directory {
        path: dir_path.to_owned(),
        error: std::io::Error::from(errno),
    })?;
    let st = rustix::fs::fstat(&dir).map_err(|errno| ListenError::Socket {
        path: dir_path.to_owned(),
        op: "fstat of the socket directory",
        errno,
    })?;
    let own_uid = rustix::process::geteuid().as_raw();
    if let Err(why) = directory_is_safe(st.st_uid, st.st_mode, own_uid) {
        return Err(ListenError::UnsafeDirectory { path: dir_path.to_owned(), why });
    }
    Ok(dir)
}

impl Listener {
    /// The socket's directory, checked as `bind` checks it: the fd `bind` opened, or for an
    /// inherited socket its path's directory, opened and checked now. Files the daemon puts
    /// beside the socket go through this fd, never through a path.
    pub fn directory(&self) -> Result<OwnedFd, ListenError> {
        if let Some(created) = &self.unlink_on_drop {
            return created.dir.try_clone().map_err(|error| ListenError::Directory {
                path: self.path.parent().unwrap_or(Path::new(".")).to_owned(),
                error,
            });
        }
        match self.path.parent() {
            Some(dir) if self.path.is_absolute() => open_checked(dir),
            _ => Err(ListenError::Directory {
                path: self.path.clone(),
                error: std::io::Error::other("the inherited socket has no directory"),
            }),
        }
    }

    pub fn bind(path: &Path) -> Result<Listener, ListenError> {
        let fail = |op, errno| ListenError::Socket { path: path.to_owned(), op, errno };
        let dir_path = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .and_then(|n| CString::new(n.as_bytes()).ok())
            .ok_or_else(|| fail("socket path names no file", Errno::INVAL))?;
        if !dir_path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir_path)
                .map_err(|error| ListenError::Directory { path: dir_path.to_owned(), error })?;
        }
        let dir = open_checked(dir_path)?;
        // From here on the directory is named by its fd alone: connect and bind take paths,
        // so they run with the directory as the working directory, and a name relative to it.
        let cwd = WorkingDirectory::enter(&dir).map_err(|e| fail("fchdir", e))?;
        let relative =
            SocketAddrUnix::new(name.as_c_str()).map_err(|e| fail("socket address", e))?;
        match rustix::fs::statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(existing) if FileType::from_raw_mode(existing.st_mode) != FileType::Socket => {
                return Err(ListenError::NotASocket { path: path.to_owned() });
            }
            Ok(_) => {
                let probe = seqpacket_socket(false).map_err(|e| fail("socket", e))?;
                if rustix::net::connect(&probe, &relative).is_ok() {
                    return Err(ListenError::InUse { path: path.to_owned() });
                }
                rustix::fs::unlinkat(&dir, name.as_c_str(), AtFlags::empty())
                    .map_err(|e| fail("remove stale socket", e))?;
            }
            Err(Errno::NOENT) => {}
            Err(errno) => return Err(fail("stat", errno)),
        }
        let fd = seqpacket_socket(true).map_err(|e| fail("socket", e))?;
        // The socket's inode takes its mode from the umask at bind (0777 & ~0111 = 0666): no
        // chmod afterwards, which would follow whatever stood at the path by then.
        let umask = rustix::process::umask(Mode::from_raw_mode(0o111));
        let bound = rustix::net::bind(&fd, &relative);
        rustix::process::umask(umask);
        bound.map_err(|e| fail("bind", e))?;
        let created = rustix::fs::statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| fail("stat", e))?;
        drop(cwd);
        rustix::net::listen(&fd, 1024).map_err(|e| fail("listen", e))?;
        Ok(Listener {
            fd,
            path: path.to_owned(),
            unlink_on_drop: Some(Created { dir, name, ino: created.st_ino }),
        })
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
        Ok((Some(Listener { fd, path, unlink_on_drop: None }), kept))
    }

    /// Whether the socket came from the service manager.
    pub fn is_inherited(&self) -> bool {
        self.unlink_on_drop.is_none()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(created) = &self.unlink_on_drop {
            // Best effort: a socket left behind is replaced by the next start anyway.
            let name = created.name.as_c_str();
            let ours = rustix::fs::statat(created.dir.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_ino == created.ino);
            if ours {
                let _ = rustix::fs::unlinkat(created.dir.as_fd(), name, AtFlags::empty());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::directory_is_safe;

    #[test]
    fn only_root_or_the_daemon_may_write_the_socket_directory() {
        assert!(directory_is_safe(0, 0o40755, 0).is_ok(), "/run/fakenotify");
        assert!(directory_is_safe(0, 0o41777, 0).is_ok(), "/tmp: sticky, root's");
        assert!(directory_is_safe(990, 0o40700, 990).is_ok(), "the daemon's own");
        assert!(directory_is_safe(0, 0o40755, 990).is_ok(), "root's, for a daemon uid 990");
        let others = directory_is_safe(0, 0o40777, 0).unwrap_err();
        assert!(others.contains("every user") && others.contains("777"), "{others}");
        assert!(directory_is_safe(0, 0o40775, 0).unwrap_err().contains("its group"));
        let owner = directory_is_safe(65534, 0o40755, 0).unwrap_err();
        assert!(owner.contains("uid 65534"), "{owner}");
        assert!(directory_is_safe(65534, 0o41777, 0).is_err(), "sticky, but not ours");
    }
}
