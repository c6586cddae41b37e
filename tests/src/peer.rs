//! A local user who speaks the protocol without the preload: a forked child that drops to
//! another uid (`setresuid`, no groups) and sends raw records with any descriptors. The child
//! makes raw syscalls only, on buffers prepared before the fork (the test process has other
//! threads, so the child may not allocate).

use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use fakenotify_proto::record::Record;

/// A record encoded before the fork.
#[derive(Clone, Copy)]
pub struct Encoded {
    bytes: [u8; 64],
    len: usize,
}

impl Encoded {
    pub fn new(record: Record<'_>) -> Encoded {
        let mut bytes = [0u8; 64];
        let len = record.encode(&mut bytes).expect("a control record fits 64 bytes");
        Encoded { bytes, len }
    }

    /// Any bytes (up to 64), such as garbage.
    pub fn raw(message: &[u8]) -> Encoded {
        let mut bytes = [0u8; 64];
        bytes[..message.len()].copy_from_slice(message);
        Encoded { bytes, len: message.len() }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The daemon's socket address, prepared before the fork.
#[derive(Clone, Copy)]
pub struct Address(libc::sockaddr_un);

impl Address {
    pub fn new(path: &Path) -> Address {
        // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
        for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
            *dst = src as libc::c_char;
        }
        Address(addr)
    }

    /// A new connection to the daemon, or -1. Async-signal-safe.
    pub fn connect(&self) -> RawFd {
        // SAFETY: plain syscalls on a sockaddr_un owned by self; a failed fd is closed.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return -1;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, &self.0 as *const _ as *const libc::sockaddr, len) != 0 {
                libc::close(fd);
                return -1;
            }
            fd
        }
    }
}

/// Waits up to 10 s for the daemon's Reply on `conn`: its errno, or -1 if none came. The
/// daemon's word that the answer comes later (`Reply::IN_PROGRESS`, for an object on a remote
/// mount) is passed over. Async-signal-safe.
pub fn reply_errno(conn: RawFd) -> i32 {
    const IN_PROGRESS: i32 = 115;
    let mut buf = [0u8; 64];
    let mut pfd = libc::pollfd { fd: conn, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: poll and recv on a caller's fd with buffers of this frame.
        unsafe {
            if libc::poll(&mut pfd, 1, 10_000) != 1 {
                return -1;
            }
            let n = libc::recv(conn, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n < 20 {
                return -1;
            }
        }
        // The Reply body after the 12-byte header: errno i32, value i32.
        let errno = i32::from_le_bytes([buf[12], buf[13], buf[14], buf[15]]);
        let value = i32::from_le_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if errno != IN_PROGRESS || value != 0 {
            return errno;
        }
    }
}

/// A forked child running as another uid; killed and reaped on drop.
pub struct AsUid {
    pid: libc::pid_t,
}

impl AsUid {
    /// Forks; the child drops to `uid`/`gid` with no supplementary groups and runs `body`,
    /// whose return value is its exit status. `body` must make raw syscalls only.
    pub fn spawn(uid: u32, gid: u32, body: impl FnOnce() -> i32) -> AsUid {
        // SAFETY: fork; the child only makes async-signal-safe calls and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: credential syscalls in the child, which then runs `body` and exits.
            unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    libc::_exit(100);
                }
                libc::_exit(body());
            }
        }
        AsUid { pid }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits up to `timeout` for the child's exit status (`None` if it is still running).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child, non-blocking.
            let done = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if done == self.pid {
                self.pid = 0;
                return Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 });
            }
            if done < 0 || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.pid > 0 {
            // SAFETY: kill and waitpid on our own child, not reaped yet.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
            self.pid = 0;
        }
    }
}

impl Drop for AsUid {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A pipe whose read end a child blocks on until the parent closes the write end.
pub struct Gate {
    read: RawFd,
    write: RawFd,
}

impl Gate {
    pub fn new() -> Gate {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
        Gate { read: fds[0], write: fds[1] }
    }

    /// In the child: blocks until the parent opens the gate. Async-signal-safe.
    pub fn wait(&self) {
        let mut byte = 0u8;
        // SAFETY: close our copy of the write end, then read until EOF.
        unsafe {
            libc::close(self.write);
            while libc::read(self.read, (&mut byte as *mut u8).cast(), 1) > 0 {}
        }
    }

    /// In the parent: lets the child go on.
    pub fn open(&mut self) {
        if self.write >= 0 {
            // SAFETY: our own write end, closed once.
            unsafe { libc::close(self.write) };
            self.write = -1;
        }
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
        // SAFETY: our own read end, closed once.
        unsafe { libc::close(self.read) };
    }
}
