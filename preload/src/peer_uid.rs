//! The uid of the process listening on the other end of a Unix socket (`SO_PEERCRED`), read
//! into a plain `struct ucred`.
//!
//! rustix's `socket_peercred` returns a `UCred` whose `pid` is a non-zero `Pid`, but the kernel
//! reports pid 0 for a peer in a pid namespace the caller cannot see: an application in a
//! container asking about a daemon on the host, the common Docker setup. Such a `UCred` is no
//! valid value, and in practice its `Result` read as an error ("errno 0"), so every
//! containerised application fell back to real inotify. rustix has no raw `getsockopt`, and
//! the preload links no libc, so the call is made here with the `syscall` instruction on the
//! architectures the project ships; elsewhere rustix's call stands.

use rustix::fd::BorrowedFd;
use rustix::io::Errno;

/// `struct ucred`.
#[repr(C)]
struct Ucred {
    pid: i32,
    uid: u32,
    gid: u32,
}

const SOL_SOCKET: usize = 1;
const SO_PEERCRED: usize = 17;

/// The uid of the peer of the Unix socket `conn`.
pub fn peer_uid(conn: BorrowedFd<'_>) -> Result<u32, Errno> {
    let mut cred = Ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = core::mem::size_of::<Ucred>() as u32;
    let ret = getsockopt(conn, &mut cred, &mut len);
    if ret < 0 {
        // The kernel returns -errno; every errno fits in an i32.
        return Err(Errno::from_raw_os_error(-(ret as i32)));
    }
    Ok(cred.uid)
}

#[cfg(target_arch = "x86_64")]
fn getsockopt(conn: BorrowedFd<'_>, cred: &mut Ucred, len: &mut u32) -> isize {
    use rustix::fd::AsRawFd;
    const SYS_GETSOCKOPT: usize = 55;
    let ret: isize;
    // SAFETY: getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) writes at most `len` bytes,
    // the size of `cred`, into `cred` and the length into `len`, both live for the call; the
    // `syscall` instruction clobbers rcx and r11 only, declared here.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") SYS_GETSOCKOPT as isize => ret,
            in("rdi") conn.as_raw_fd() as usize,
            in("rsi") SOL_SOCKET,
            in("rdx") SO_PEERCRED,
            in("r10") core::ptr::from_mut(cred) as usize,
            in("r8") core::ptr::from_mut(len) as usize,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(target_arch = "aarch64")]
fn getsockopt(conn: BorrowedFd<'_>, cred: &mut Ucred, len: &mut u32) -> isize {
    use rustix::fd::AsRawFd;
    const SYS_GETSOCKOPT: usize = 209;
    let ret: isize;
    // SAFETY: as on x86_64; `svc 0` takes the number in x8 and returns in x0.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") SYS_GETSOCKOPT,
            inlateout("x0") conn.as_raw_fd() as isize => ret,
            in("x1") SOL_SOCKET,
            in("x2") SO_PEERCRED,
            in("x3") core::ptr::from_mut(cred) as usize,
            in("x4") core::ptr::from_mut(len) as usize,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn getsockopt(conn: BorrowedFd<'_>, cred: &mut Ucred, _len: &mut u32) -> isize {
    match rustix::net::sockopt::socket_peercred(conn) {
        Ok(peer) => {
            cred.uid = peer.uid.as_raw();
            0
        }
        Err(errno) => -(errno.raw_os_error() as isize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsFd;

    #[test]
    fn names_the_uid_of_the_peer() {
        let (a, _b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::SEQPACKET,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .expect("socketpair");
        assert_eq!(peer_uid(a.as_fd()), Ok(rustix::process::geteuid().as_raw()));
        let file = rustix::fs::open("/", rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
            .expect("open /");
        assert_eq!(peer_uid(file.as_fd()), Err(Errno::NOTSOCK));
    }
}
