//! An inotify instance of ctl's own, registered with the daemon exactly as the preload does it,
//! so `fakenotify-ctl watch` follows remote directories without any preload.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fakenotify_proto::inotify::{Events, IN_DONT_FOLLOW, IN_ONLYDIR, MAX_EVENT_LEN};
use fakenotify_proto::record::Record;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};

use crate::transport::{Connection, CtlError};

/// One event read from the instance, with the path its wd stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: PathBuf,
    pub wd: i32,
    pub mask: u32,
    pub cookie: u32,
    pub name: Vec<u8>,
}

/// Why a watch could not be added: the path, and the errno inotify_add_watch would give.
#[derive(Debug)]
pub enum WatchError {
    Open { path: PathBuf, errno: Errno },
    Refused { path: PathBuf, errno: Errno },
    Daemon(CtlError),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Open { path, errno } => write!(f, "{}: open: {errno}", path.display()),
            WatchError::Refused { path, errno } => {
                write!(f, "{}: the daemon refused the watch: {errno}", path.display())
            }
            WatchError::Daemon(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for WatchError {}

/// What a bounded read found.
#[derive(Debug)]
pub enum Read {
    Events(Vec<WatchEvent>),
    /// The daemon closed its end: it stopped.
    Closed,
    TimedOut,
}

pub struct Watcher {
    app_end: OwnedFd,
    socket: PathBuf,
    paths: BTreeMap<i32, PathBuf>,
}

fn reply_of(bytes: &[u8], socket: &Path) -> Result<fakenotify_proto::record::Reply, CtlError> {
    match Record::decode(bytes) {
        Ok(Record::Reply(reply)) => Ok(reply),
        Ok(other) => Err(CtlError::Protocol {
            socket: socket.to_owned(),
            message: format!("unexpected {:?} reply", other.kind()),
        }),
        Err(e) => Err(CtlError::Protocol { socket: socket.to_owned(), message: e.to_string() }),
    }
}

impl Watcher {
    /// Creates an instance: a socket pair whose ends both go to the daemon; ctl keeps its end.
    pub fn register(socket: &Path) -> Result<Watcher, CtlError> {
        let conn = Connection::connect(socket)?;
        let (app_end, daemon_end) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|errno| CtlError::Io {
            socket: socket.to_owned(),
            op: "socketpair",
            errno,
        })?;
        let bytes = conn.call(&Record::Register, &[app_end.as_fd(), daemon_end.as_fd()])?;
        let reply = reply_of(&bytes, socket)?;
        if reply.errno != 0 {
            return Err(CtlError::Io {
                socket: socket.to_owned(),
                op: "register",
                errno: Errno::from_raw_os_error(reply.errno),
            });
        }
        // ctl keeps no copy of the daemon's end: if the daemon stops, `next` sees it and says so.
        drop(daemon_end);
        Ok(Watcher { app_end, socket: socket.to_owned(), paths: BTreeMap::new() })
    }

    /// Watches `path` for `mask`, opening it with this process's credentials as the preload does.
    pub fn add(&mut self, path: &Path, mask: u32) -> Result<i32, WatchError> {
        let open_error = |errno| WatchError::Open { path: path.to_owned(), errno };
        let object = open_object(path, mask).map_err(open_error)?;
        let conn = Connection::connect(&self.socket).map_err(WatchError::Daemon)?;
        let bytes = conn
            .call(&Record::AddWatch { mask }, &[self.app_end.as_fd(), object.as_fd()])
            .map_err(WatchError::Daemon)?;
        let reply = reply_of(&bytes, &self.socket).map_err(WatchError::Daemon)?;
        if reply.errno != 0 {
            return Err(WatchError::Refused {
                path: path.to_owned(),
                errno: Errno::from_raw_os_error(reply.errno),
            });
        }
        self.paths.insert(reply.value, path.to_owned());
        Ok(reply.value)
    }

    /// Blocks until events arrive and returns them. `Ok(None)` means the daemon stopped.
    pub fn read_events(&mut self) -> Result<Option<Vec<WatchEvent>>, CtlError> {
        match self.read_within(None)? {
            Read::Events(events) => Ok(Some(events)),
            Read::Closed | Read::TimedOut => Ok(None),
        }
    }

    /// Waits up to `timeout` (forever with `None`) for events.
    pub fn read_within(&mut self, timeout: Option<Duration>) -> Result<Read, CtlError> {
        if let Some(timeout) = timeout {
            let deadline = Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let spec = Timespec {
                    tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: i64::from(left.subsec_nanos()),
                };
                let mut fds = [PollFd::new(&self.app_end, PollFlags::IN)];
                match rustix::event::poll(&mut fds, Some(&spec)) {
                    Ok(0) => return Ok(Read::TimedOut),
                    Ok(_) => break,
                    Err(Errno::INTR) => continue,
                    Err(errno) => {
                        return Err(CtlError::Io { socket: self.socket.clone(), op: "poll", errno })
                    }
                }
            }
        }
        let mut buf = [0u8; MAX_EVENT_LEN];
        let n = loop {
            match rustix::net::recv(&self.app_end, &mut buf, RecvFlags::empty()) {
                Ok((n, _)) => break n,
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    return Err(CtlError::Io {
                        socket: self.socket.clone(),
                        op: "read events",
                        errno,
                    })
                }
            }
        };
        if n == 0 {
            return Ok(Read::Closed);
        }
        let mut out = Vec::new();
        for event in Events::new(&buf[..n]) {
            let event = event.map_err(|e| CtlError::Protocol {
                socket: self.socket.clone(),
                message: e.to_string(),
            })?;
            let path = self.paths.get(&event.wd).cloned().unwrap_or_default();
            if event.mask & fakenotify_proto::inotify::IN_IGNORED != 0 {
                self.paths.remove(&event.wd);
            }
            out.push(WatchEvent {
                path,
                wd: event.wd,
                mask: event.mask,
                cookie: event.cookie,
                name: event.name.to_vec(),
            });
        }
        Ok(Read::Events(out))
    }

    pub fn watching(&self) -> usize {
        self.paths.len()
    }
}

/// Opens `path` as the preload does, so that the fd proves read access to the daemon:
/// directories and regular files for reading; FIFOs, devices, sockets, and a symlink watched
/// itself (IN_DONT_FOLLOW) `O_PATH`, since opening them has side effects or is impossible.
fn open_object(path: &Path, mask: u32) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::CLOEXEC;
    if mask & IN_DONT_FOLLOW != 0 {
        flags |= OFlags::NOFOLLOW;
    }
    let readable = OFlags::RDONLY | OFlags::NOCTTY;
    match rustix::fs::open(path, flags | readable | OFlags::DIRECTORY, Mode::empty()) {
        Err(Errno::NOTDIR) if mask & IN_ONLYDIR == 0 => {}
        other => return other,
    }
    let object = rustix::fs::open(path, flags | OFlags::PATH, Mode::empty())?;
    match FileType::from_raw_mode(rustix::fs::fstat(&object)?.st_mode) {
        FileType::RegularFile | FileType::Directory => {
            let magic = format!("/proc/self/fd/{}", object.as_raw_fd());
            rustix::fs::open(magic.as_str(), readable | OFlags::CLOEXEC, Mode::empty())
        }
        FileType::Symlink => Ok(object),
        _ => {
            rustix::fs::access(path, rustix::fs::Access::READ_OK)?;
            Ok(object)
        }
    }
}
