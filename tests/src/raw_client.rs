//! The attacker's tools: a client that speaks the wire protocol without the preload, sending
//! any record with any fds, as any uid. What the daemon knows of a peer is what it receives:
//! `SO_PEERCRED` (fixed when the connection is made) and the fds. So [`acquire_as`] makes the
//! connections and opens the objects in a forked child that has dropped to another uid, and hands
//! them back to the test, which then sends what it likes on them; to the daemon that is exactly
//! a process of that uid doing it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fakenotify_proto::record::{Record, Reply, MAX_RECORD_LEN};

use crate::seqpacket::{self, Answer};

/// Something to make as another uid.
#[derive(Clone, Debug)]
pub enum Acquire {
    /// `open(path, flags)` (`O_CLOEXEC` added).
    Open(PathBuf, i32),
    /// A `SOCK_SEQPACKET` connection to the socket at this path.
    Connect(PathBuf),
    /// A `SOCK_SEQPACKET` socket bound at this path and listening: a squatter.
    Listen(PathBuf),
}

/// Makes each of `what` in a child process running as `uid`/`gid` with no supplementary groups,
/// and returns the fds, or the errno each failed with.
pub fn acquire_as(uid: u32, gid: u32, what: &[Acquire]) -> Vec<Result<OwnedFd, i32>> {
    // Everything the child needs is made here: after fork it only makes syscalls.
    enum Prepared {
        Open(CString, i32),
        Socket(libc::sockaddr_un, bool),
    }
    let prepared: Vec<Prepared> = what
        .iter()
        .map(|a| match a {
            Acquire::Open(path, flags) => Prepared::Open(c_path(path), *flags | libc::O_CLOEXEC),
            Acquire::Connect(path) => Prepared::Socket(sockaddr(path), false),
            Acquire::Listen(path) => Prepared::Socket(sockaddr(path), true),
        })
        .collect();
    let (ours, theirs) = socketpair().expect("socketpair for the child's results");
    // SAFETY: the child makes only async-signal-safe syscalls on memory prepared before the
    // fork, and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: plain syscalls on prepared data; see above.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                libc::_exit(2);
            }
            for item in &prepared {
                let fd = match item {
                    Prepared::Open(path, flags) => libc::open(path.as_ptr(), *flags),
                    Prepared::Socket(addr, listen) => {
                        let fd = libc::socket(
                            libc::AF_UNIX,
                            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                            0,
                        );
                        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                        let sa = addr as *const libc::sockaddr_un as *const libc::sockaddr;
                        let ok = fd >= 0
                            && if *listen {
                                libc::bind(fd, sa, len) == 0 && libc::listen(fd, 16) == 0
                            } else {
                                libc::connect(fd, sa, len) == 0
                            };
                        if ok {
                            fd
                        } else {
                            -1
                        }
                    }
                };
                let errno = if fd < 0 { *libc::__errno_location() } else { 0 };
                let fds = [fd];
                seqpacket::send_with_fds(
                    theirs.as_raw_fd(),
                    &errno.to_le_bytes(),
                    if fd < 0 { &[] } else { &fds },
                );
            }
            libc::_exit(0);
        }
    }
    drop(theirs);
    let mut status = 0;
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child as uid {uid} failed (status {status:#x})"
    );
    what.iter()
        .map(|_| {
            let (bytes, mut fds) = recv_with_fds(&ours).expect("the child's result");
            let errno = i32::from_le_bytes(bytes[..4].try_into().expect("4 bytes of errno"));
            if errno == 0 {
                Ok(fds.pop().expect("the child's fd"))
            } else {
                Err(errno)
            }
        })
        .collect()
}

/// A new `SOCK_SEQPACKET` socketpair (close-on-exec).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sends `record` with `fds` (any number, any kind) on `conn`.
pub fn send_record(conn: &OwnedFd, record: Record<'_>, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_RECORD_LEN];
    let len = record.encode(&mut buf).expect("the record fits");
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    if seqpacket::send_with_fds(conn.as_raw_fd(), &buf[..len], &raw) < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for the daemon's Reply on `conn`, past its word that the answer comes later
/// (`Reply::IN_PROGRESS`, for an object on a remote mount).
pub fn read_reply(conn: &OwnedFd) -> Reply {
    loop {
        match seqpacket::receive(conn, crate::WAIT) {
            Ok(Answer::Message(bytes)) => match Record::decode(&bytes) {
                Ok(Record::Reply(reply)) if reply.is_in_progress() => continue,
                Ok(Record::Reply(reply)) => return reply,
                other => panic!("expected a Reply, got {other:?}"),
            },
            other => panic!("expected a Reply, got {other:?}"),
        }
    }
}

/// The first Reply on `conn`, whatever it says (`Reply::IN_PROGRESS` included).
pub fn first_reply(conn: &OwnedFd) -> Reply {
    match seqpacket::receive(conn, crate::WAIT) {
        Ok(Answer::Message(bytes)) => match Record::decode(&bytes) {
            Ok(Record::Reply(reply)) => reply,
            other => panic!("expected a Reply, got {other:?}"),
        },
        other => panic!("expected a Reply, got {other:?}"),
    }
}

/// A `SOCK_SEQPACKET` connection to the daemon's socket, as this process.
pub fn connect(socket: &Path) -> OwnedFd {
    let addr = sockaddr(socket);
    // SAFETY: a new socket, connected to an address built above; the fd is owned at once.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        let sa = &addr as *const libc::sockaddr_un as *const libc::sockaddr;
        let connected = libc::connect(fd.as_raw_fd(), sa, len);
        assert_eq!(connected, 0, "connect {}: {}", socket.display(), io::Error::last_os_error());
        fd
    }
}

/// Sends `record` with `fds` and returns the reply.
pub fn request(conn: &OwnedFd, record: Record<'_>, fds: &[BorrowedFd<'_>]) -> Reply {
    send_record(conn, record, fds).expect("send the request");
    read_reply(conn)
}

/// Registers a new instance on `conn` with a fresh socketpair, as the preload does; returns the
/// application's end (the daemon writes events to its peer) once the daemon accepted it. `conn`
/// then is the instance's request channel.
pub fn register(conn: &OwnedFd) -> Result<OwnedFd, i32> {
    use std::os::fd::AsFd;
    let (app, daemon) = socketpair().expect("socketpair");
    match request(conn, Record::Register, &[app.as_fd(), daemon.as_fd()]) {
        Reply { errno: 0, .. } => Ok(app),
        Reply { errno, .. } => Err(errno),
    }
}

/// Whether anything at all (a message, or the peer's hang-up) arrives on `fd` within `wait`.
pub fn silent_for(fd: &OwnedFd, wait: Duration) -> Result<(), Answer> {
    match seqpacket::receive(fd, wait).expect("poll") {
        Answer::Silent => Ok(()),
        other => Err(other),
    }
}

/// Receives one message and the fds that came with it, without blocking for long.
pub fn recv_with_fds(fd: &OwnedFd) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_RECORD_LEN + 1];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = [0u8; 256];
    // SAFETY: msghdr is plain data; zeroed is valid and the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((buf, fds))
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("a path without NUL")
}

fn sockaddr(path: &Path) -> libc::sockaddr_un {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    addr
}
