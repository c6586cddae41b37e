//! A raw `SOCK_SEQPACKET` connection to the daemon's socket: readiness probes and tests that
//! speak (or garble) the wire protocol directly.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// Connects to the daemon's listening socket.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "socket path too long"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain syscall; the result is checked before being owned.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    if unsafe { libc::connect(fd.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len) }
        != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Sends one message.
pub fn send(fd: &OwnedFd, message: &[u8]) -> io::Result<()> {
    // SAFETY: the buffer is valid for its length.
    let n = unsafe {
        libc::send(fd.as_raw_fd(), message.as_ptr().cast(), message.len(), libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What came back on a connection within a time bound.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A message of these bytes.
    Message(Vec<u8>),
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing within the bound.
    Silent,
}

/// The most descriptors one message carries (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// `sendmsg` of `message` with `fds` as SCM_RIGHTS (at most [`MAX_FDS`]; more are left out),
/// on a stack buffer: the bytes sent, or -1. Allocation-free and async-signal-safe, so a forked
/// child of a test with other threads may use it.
pub fn send_with_fds(conn: RawFd, message: &[u8], fds: &[RawFd]) -> isize {
    let fds = &fds[..fds.len().min(MAX_FDS)];
    // Aligned for cmsghdr; room for the header and MAX_FDS descriptors.
    let mut control = [0u64; 2 + MAX_FDS.div_ceil(2)];
    let mut iov = libc::iovec { iov_base: message.as_ptr() as *mut _, iov_len: message.len() };
    // SAFETY: msghdr is plain data; zeroed is valid and every pointer set below outlives the
    // call; CMSG_SPACE of MAX_FDS descriptors fits `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
        libc::sendmsg(conn, &msg, libc::MSG_NOSIGNAL)
    }
}

/// Waits up to `timeout` for a message or the peer's hang-up.
pub fn receive(fd: &OwnedFd, timeout: Duration) -> io::Result<Answer> {
    let mut pollfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pollfd, 1, timeout.as_millis() as libc::c_int) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    if ready == 0 {
        return Ok(Answer::Silent);
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe {
        libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
    };
    match n {
        0 => Ok(Answer::Closed),
        n if n > 0 => {
            buf.truncate(n as usize);
            Ok(Answer::Message(buf))
        }
        _ => match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ECONNRESET) => Ok(Answer::Closed),
            e => Err(e),
        },
    }
}
