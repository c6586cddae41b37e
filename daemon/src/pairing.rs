//! Whether the two sockets of a Register are one connected pair, asked of the kernel before the
//! daemon writes to either: a client could otherwise hand it its own socket as the application's
//! end and a third party's socket as the daemon's, and have it write records (with root's
//! credentials, to a peer that passes them) to that third party (issue 14).
//!
//! A probe written through one end and read back on the other would reach the third party's
//! peer when they are not a pair. So nothing is written: `sock_diag` (`NETLINK_SOCK_DIAG`, the
//! interface `ss -x` uses) names each Unix socket's peer by inode, and each end's peer must be
//! the other. It needs the kernel's `unix_diag` (CONFIG_UNIX_DIAG, loaded on first use), and it
//! sees only the daemon's network namespace: a pair made in a container's is proved instead by
//! both peers being the registering process's own ([`both_peers_made_by`]).

use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDR_LEN: usize = 16;
const UNIX_DIAG_MSG_LEN: usize = 16;
/// `struct nlmsghdr` and `struct unix_diag_req`.
const REQUEST_LEN: usize = NLMSG_HDR_LEN + 24;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_PEER: u16 = 2;

/// Whether `a` and `b` are two sockets whose peers were both made by the registering process
/// `pid` of `uid`: `SO_PEERCRED` of a socket names the process that created its peer (a
/// `socketpair`) or connected it. Writing to such a socket reaches only that process's own
/// socket, never a third party's connection, whose peer names the third party. The daemon
/// asks this first: the preload makes its pair in the process that registers it, and it holds
/// where `sock_diag` cannot see the sockets (a container's network namespace, as `sock_diag`
/// lists its own namespace's sockets only, or a kernel without `unix_diag`).
pub fn both_peers_made_by(a: BorrowedFd<'_>, b: BorrowedFd<'_>, pid: i32, uid: u32) -> bool {
    let ino = |fd| rustix::fs::fstat(fd).map(|st| st.st_ino);
    // A pid of 0 is a process the daemon's pid namespace cannot see, so it proves nothing.
    let made_by_requester = |fd| crate::wire::peer_cred(fd) == Ok((uid, pid));
    let distinct = matches!((ino(a), ino(b)), (Ok(a), Ok(b)) if a != b);
    pid != 0 && distinct && made_by_requester(a) && made_by_requester(b)
}

/// Ok(true) if `a` and `b` are the two ends of one connected Unix socket pair.
pub fn are_one_pair(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> Result<bool, Errno> {
    let ino = |fd| rustix::fs::fstat(fd).map(|st| st.st_ino);
    let (a, b) = (ino(a)?, ino(b)?);
    if a == b {
        return Ok(false);
    }
    let diag = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(rustix::net::netlink::SOCK_DIAG),
    )?;
    let peer = |ino: u64| -> Result<Option<u64>, Errno> {
        let Ok(ino) = u32::try_from(ino) else { return Ok(None) };
        rustix::net::send(&diag, &request(ino), SendFlags::empty())?;
        let mut buf = [0u8; 1024];
        let n =
            rustix::io::retry_on_intr(|| rustix::net::recv(&diag, &mut buf, RecvFlags::empty()))?.0;
        parse_peer(&buf[..n.min(buf.len())], ino).map(|p| p.map(u64::from))
    };
    Ok(peer(a)? == Some(b) && peer(b)? == Some(a))
}

/// A `SOCK_DIAG_BY_FAMILY` request for the Unix socket with inode `ino`, asking for its peer.
fn request(ino: u32) -> [u8; REQUEST_LEN] {
    let mut msg = [0u8; REQUEST_LEN];
    msg[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2].
    let body = &mut msg[NLMSG_HDR_LEN..];
    body[0] = libc::AF_UNIX as u8;
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    body[8..12].copy_from_slice(&ino.to_ne_bytes());
    body[12..16].copy_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes());
    // No cookie: INET_DIAG_NOCOOKIE.
    body[16..24].fill(0xff);
    msg
}

/// The peer inode in the kernel's answer about `ino`: None for a socket without a peer (or
/// not a Unix socket: the kernel answers ENOENT), an error for an answer that cannot be read.
fn parse_peer(reply: &[u8], ino: u32) -> Result<Option<u32>, Errno> {
    let u16_at = |at: usize| reply.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at =
        |at: usize| reply.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let len = u32_at(0).ok_or(Errno::PROTO)? as usize;
    let kind = u16_at(4).ok_or(Errno::PROTO)?;
    if len < NLMSG_HDR_LEN || len > reply.len() {
        return Err(Errno::PROTO);
    }
    if kind == NLMSG_ERROR {
        let code = u32_at(NLMSG_HDR_LEN).ok_or(Errno::PROTO)? as i32;
        return match code {
            0 => Err(Errno::PROTO),
            code if -code == libc::ENOENT => Ok(None),
            code => Err(Errno::from_raw_os_error(-code)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY || len < NLMSG_HDR_LEN + UNIX_DIAG_MSG_LEN {
        return Err(Errno::PROTO);
    }
    if u32_at(NLMSG_HDR_LEN + 4) != Some(ino) {
        return Err(Errno::PROTO);
    }
    let mut at = NLMSG_HDR_LEN + UNIX_DIAG_MSG_LEN;
    while at + 4 <= len {
        let attr_len = u16_at(at).ok_or(Errno::PROTO)? as usize;
        let attr_kind = u16_at(at + 2).ok_or(Errno::PROTO)?;
        if attr_len < 4 || at + attr_len > len {
            return Err(Errno::PROTO);
        }
        if attr_kind == UNIX_DIAG_PEER && attr_len >= 8 {
            return Ok(u32_at(at + 4));
        }
        at += (attr_len + 3) & !3;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::socketpair;
    use std::os::fd::AsFd;

    fn answer(ino: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut msg = vec![0u8; NLMSG_HDR_LEN + UNIX_DIAG_MSG_LEN];
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        msg[NLMSG_HDR_LEN] = libc::AF_UNIX as u8;
        msg[NLMSG_HDR_LEN + 4..NLMSG_HDR_LEN + 8].copy_from_slice(&ino.to_ne_bytes());
        for (kind, payload) in attrs {
            msg.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
            msg.extend_from_slice(&kind.to_ne_bytes());
            msg.extend_from_slice(payload);
            while !msg.len().is_multiple_of(4) {
                msg.push(0);
            }
        }
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg
    }

    #[test]
    fn reads_the_peer_among_other_attributes() {
        let reply = answer(7, &[(0, b"/run/x\0"), (UNIX_DIAG_PEER, &9u32.to_ne_bytes())]);
        assert_eq!(parse_peer(&reply, 7), Ok(Some(9)));
        assert_eq!(parse_peer(&answer(7, &[]), 7), Ok(None));
        assert_eq!(parse_peer(&reply, 8), Err(Errno::PROTO), "an answer about another socket");
        assert_eq!(parse_peer(&reply[..reply.len() - 2], 7), Err(Errno::PROTO));
        assert_eq!(parse_peer(&[], 7), Err(Errno::PROTO));
        let mut error = vec![0u8; NLMSG_HDR_LEN + 4];
        let len = error.len() as u32;
        error[0..4].copy_from_slice(&len.to_ne_bytes());
        error[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error[NLMSG_HDR_LEN..].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse_peer(&error, 7), Ok(None));
    }

    #[test]
    fn sockets_whose_peers_the_requester_made_pass_in_any_namespace() {
        let (a, b) =
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .unwrap();
        let (pid, uid) = (std::process::id() as i32, rustix::process::getuid().as_raw());
        assert!(both_peers_made_by(a.as_fd(), b.as_fd(), pid, uid));
        assert!(!both_peers_made_by(a.as_fd(), a.as_fd(), pid, uid), "one socket twice");
        assert!(!both_peers_made_by(a.as_fd(), b.as_fd(), pid + 1, uid), "another process");
        assert!(!both_peers_made_by(a.as_fd(), b.as_fd(), pid, uid + 1), "another user");
        let file = rustix::fs::open("/", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty());
        assert!(!both_peers_made_by(a.as_fd(), file.unwrap().as_fd(), pid, uid), "no socket");
    }

    #[test]
    fn only_the_two_ends_of_one_pair_are_a_pair() {
        let pair = || {
            socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
                .unwrap()
        };
        let ((a, b), (c, _d)) = (pair(), pair());
        assert_eq!(are_one_pair(a.as_fd(), b.as_fd()), Ok(true));
        assert_eq!(are_one_pair(b.as_fd(), a.as_fd()), Ok(true));
        assert_eq!(are_one_pair(a.as_fd(), c.as_fd()), Ok(false));
        assert_eq!(are_one_pair(a.as_fd(), a.as_fd()), Ok(false));
        let file = rustix::fs::open("/", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty());
        assert_eq!(are_one_pair(a.as_fd(), file.unwrap().as_fd()), Ok(false));
    }
}
