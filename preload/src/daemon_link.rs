//! One request to fakenotifyd: send one record with its fds as `SCM_RIGHTS`, read the `Reply`.
//! It goes on the instance's request channel when this process has it free, else on a short
//! connection of its own; never on the application's fd, which another of its threads may be
//! reading. Send and receive timeouts (which also bound `connect` on a Unix socket) are set
//! before connecting, so a stuck daemon costs a hook at most a few seconds.

use core::ffi::CStr;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};
use core::time::Duration;

use fakenotify_proto::record::{Record, Reply, MAX_FIXED_RECORD_LEN};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::{retry_on_intr, Errno, IoSlice};
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::env;
use crate::instances::{self, Used};

const TIMEOUT: Duration = Duration::from_secs(3);
/// Most fds a preload record carries (Register and AddWatch carry two).
const MAX_FDS: usize = 2;

/// The step of a request that failed, named in debug lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Socket,
    Connect,
    /// The process on the socket is not a daemon this process trusts.
    Untrusted,
    Socketpair,
    Fcntl,
    Send,
    Recv,
    /// The answer was not a well-formed Reply.
    Reply,
    /// The daemon answered with an errno.
    Refused,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Socket => "socket",
            Step::Connect => "connect",
            Step::Untrusted => "untrusted peer",
            Step::Socketpair => "socketpair",
            Step::Fcntl => "fcntl",
            Step::Send => "send",
            Step::Recv => "recv",
            Step::Reply => "bad reply",
            Step::Refused => "refused",
        }
    }
}

/// Why a request got no usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkError {
    pub step: Step,
    pub errno: Errno,
}

impl LinkError {
    pub fn at(step: Step) -> impl FnOnce(Errno) -> LinkError {
        move |errno| LinkError { step, errno }
    }
}

/// Connects to the daemon's socket; `SOCK_CLOEXEC` so a concurrent `exec` leaks nothing.
/// Without `$FAKENOTIFY_SOCKET`, a default path that does not exist (`ENOENT`) sends it to the
/// original FakeNotify's path; a default that exists but refuses is the answer.
pub fn connect() -> Result<OwnedFd, LinkError> {
    match env::socket_choice() {
        env::SocketChoice::Named(path) => connect_to(path),
        env::SocketChoice::Default { primary, legacy } => match connect_to(primary) {
            Err(LinkError { step: Step::Connect, errno: Errno::NOENT }) => connect_to(legacy),
            other => other,
        },
    }
}

fn connect_to(path: &CStr) -> Result<OwnedFd, LinkError> {
    let conn = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(LinkError::at(Step::Socket))?;
    set_socket_timeout(&conn, Timeout::Send, Some(TIMEOUT)).map_err(LinkError::at(Step::Socket))?;
    set_socket_timeout(&conn, Timeout::Recv, Some(TIMEOUT)).map_err(LinkError::at(Step::Socket))?;
    let addr = SocketAddrUnix::new(path).map_err(LinkError::at(Step::Connect))?;
    // A Unix-socket connect interrupted by a signal leaves the socket unconnected: retrying is
    // safe.
    retry_on_intr(|| rustix::net::connect(&conn, &addr)).map_err(LinkError::at(Step::Connect))?;
    check_peer(conn.as_fd())?;
    Ok(conn)
}

/// Nothing is sent to a process on the socket unless it runs as root, as this process's
/// effective uid, or as `$FAKENOTIFY_DAEMON_UID`: anyone may bind a socket path first (in a
/// directory they can write, or while the daemon is down) and would otherwise receive the
/// application's fds and write events into its instances. `SO_PEERCRED` names who listened.
fn check_peer(conn: BorrowedFd<'_>) -> Result<(), LinkError> {
    let uid = crate::peer_uid::peer_uid(conn).map_err(LinkError::at(Step::Connect))?;
    if is_trusted(uid, rustix::process::geteuid().as_raw(), env::daemon_uid()) {
        Ok(())
    } else {
        Err(LinkError { step: Step::Untrusted, errno: Errno::PERM })
    }
}

fn is_trusted(peer: u32, euid: u32, named: Option<u32>) -> bool {
    peer == 0 || peer == euid || named == Some(peer)
}

/// Connects, sends `record` with `fds`, and returns the daemon's reply.
pub fn request(record: Record<'_>, fds: &[BorrowedFd<'_>]) -> Result<Reply, LinkError> {
    let conn = connect()?;
    exchange(conn.as_fd(), record, fds)
}

/// The way a request went, for debug lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The instance's request channel.
    Channel,
    /// A short connection of its own.
    Connection,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Channel => "channel",
            Via::Connection => "connection",
        }
    }
}

/// Sends an AddWatch or RmWatch `record` about the instance whose application end is `app`
/// (socket inode `app_ino`), with the `object` to watch if any, and returns the reply. On the
/// instance's channel the channel names the instance; on a short connection `app` goes along
/// as proof of ownership.
pub fn instance_request(
    app: BorrowedFd<'_>,
    app_ino: u64,
    record: Record<'_>,
    object: Option<BorrowedFd<'_>>,
) -> (Result<Reply, LinkError>, Via) {
    let on_channel = instances::with_channel(app_ino, |channel| {
        match exchange(channel, record, object.as_slice()) {
            Ok(reply) => Used::Kept(Some(Ok(reply))),
            // The daemon never took the request: the channel was closed before it (the daemon
            // restarted) or it was refused unanswered (an older daemon that keeps no channel).
            // It can go on a short connection instead.
            Err(LinkError { step: Step::Send, .. })
            | Err(LinkError { step: Step::Recv, errno: Errno::CONNRESET }) => Used::Broken(None),
            Err(why) => Used::Broken(Some(Err(why))),
        }
    });
    if let Some(Some(result)) = on_channel {
        return (result, Via::Channel);
    }
    let result = match object {
        Some(object) => request(record, &[app, object]),
        None => request(record, &[app]),
    };
    (result, Via::Connection)
}

/// Sends `record` with `fds` on `conn` and reads the reply.
pub fn exchange(
    conn: BorrowedFd<'_>,
    record: Record<'_>,
    fds: &[BorrowedFd<'_>],
) -> Result<Reply, LinkError> {
    let mut out = [0u8; MAX_FIXED_RECORD_LEN];
    let len =
        record.encode(&mut out).map_err(|_| LinkError { step: Step::Send, errno: Errno::PROTO })?;
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(LinkError { step: Step::Send, errno: Errno::PROTO });
    }
    let iov = [IoSlice::new(&out[..len])];
    // NOSIGNAL: a daemon that closed the connection must not SIGPIPE the application.
    let sent =
        retry_on_intr(|| rustix::net::sendmsg(conn, &iov, &mut control, SendFlags::NOSIGNAL))
            .map_err(LinkError::at(Step::Send))?;
    if sent != len {
        return Err(LinkError { step: Step::Send, errno: Errno::PROTO });
    }
    // One byte more than any reply, so an oversized message fails to decode instead of being
    // silently cut to a valid-looking prefix.
    let mut buf = [0u8; MAX_FIXED_RECORD_LEN + 1];
    let got = receive(conn, &mut buf)?;
    if got == 0 {
        // The daemon closed the connection without answering.
        return Err(LinkError { step: Step::Recv, errno: Errno::CONNRESET });
    }
    let reply = parse_reply(&buf[..got])?;
    if reply.is_in_progress() {
        return await_answer(conn, &mut buf);
    }
    Ok(reply)
}

/// Waits as long as it takes for the answer to a request the daemon took but has not finished
/// (`Reply::IN_PROGRESS`): its filesystem is slow or hung, and the kernel's own
/// `inotify_add_watch` would wait there too. Giving up would leave a watch the application
/// never heard of; a caller that must stop (killed, or its thread cancelled) closes the
/// connection, and the daemon then drops the request.
fn await_answer(conn: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Reply, LinkError> {
    set_socket_timeout(conn, Timeout::Recv, None).map_err(LinkError::at(Step::Recv))?;
    let got = retry_on_intr(|| rustix::net::recv(conn, &mut *buf, RecvFlags::empty()))
        .map(|(got, _)| got)
        .map_err(LinkError::at(Step::Recv));
    // The channel serves later requests, which keep the usual bound.
    set_socket_timeout(conn, Timeout::Recv, Some(TIMEOUT)).map_err(LinkError::at(Step::Recv))?;
    match got? {
        0 => Err(LinkError { step: Step::Recv, errno: Errno::CONNRESET }),
        got => match parse_reply(&buf[..got])? {
            reply if reply.is_in_progress() => {
                Err(LinkError { step: Step::Reply, errno: Errno::PROTO })
            }
            reply => Ok(reply),
        },
    }
}

/// How many times a caller polls for the reply before it sleeps. The daemon answers a request in
/// a few tens of microseconds; polling for about that long saves this thread's wake-up, a
/// fifth of an `inotify_add_watch` on a 2-core VM (`just bench`).
const SPINS: usize = 100;

/// Reads the reply: polls for it while the daemon can run on another CPU, then sleeps.
fn receive(conn: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, LinkError> {
    if may_spin() {
        for _ in 0..SPINS {
            match rustix::net::recv(conn, &mut *buf, RecvFlags::DONTWAIT) {
                Err(Errno::AGAIN) | Err(Errno::INTR) => core::hint::spin_loop(),
                other => return other.map(|(got, _)| got).map_err(LinkError::at(Step::Recv)),
            }
        }
    }
    retry_on_intr(|| rustix::net::recv(conn, &mut *buf, RecvFlags::empty()))
        .map(|(got, _)| got)
        .map_err(LinkError::at(Step::Recv))
}

/// Whether this process may run on more than one CPU, asked once per process: on a single CPU
/// polling for the reply would only keep the daemon from answering.
fn may_spin() -> bool {
    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;
    static CACHED: AtomicU8 = AtomicU8::new(UNKNOWN);
    match CACHED.load(Ordering::Relaxed) {
        UNKNOWN => {
            let cpus = rustix::thread::sched_getaffinity(None).map_or(1, |set| set.count());
            let answer = if cpus > 1 { YES } else { NO };
            CACHED.store(answer, Ordering::Relaxed);
            answer == YES
        }
        cached => cached == YES,
    }
}

fn parse_reply(message: &[u8]) -> Result<Reply, LinkError> {
    match Record::decode(message) {
        Ok(Record::Reply(reply)) => Ok(reply),
        // EOF (the daemon closed without answering), garbage, or another kind of record.
        _ => Err(LinkError { step: Step::Reply, errno: Errno::PROTO }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusts_root_itself_and_the_named_uid() {
        assert!(is_trusted(0, 1000, None));
        assert!(is_trusted(1000, 1000, None));
        assert!(is_trusted(65534, 1000, Some(65534)));
        assert!(!is_trusted(65534, 1000, None));
        assert!(!is_trusted(1001, 1000, Some(65534)));
        assert!(!is_trusted(1001, 0, None));
    }

    #[test]
    fn only_a_reply_is_a_reply() {
        let mut buf = [0u8; MAX_FIXED_RECORD_LEN + 1];
        let n = Record::Reply(Reply { errno: 0, value: 3 }).encode(&mut buf).unwrap();
        assert_eq!(parse_reply(&buf[..n]), Ok(Reply { errno: 0, value: 3 }));
        assert_eq!(parse_reply(&buf[..n + 1]).unwrap_err().step, Step::Reply);
        assert_eq!(parse_reply(&[]).unwrap_err().step, Step::Reply);
        let n = Record::RmWatch { wd: 1 }.encode(&mut buf).unwrap();
        assert_eq!(parse_reply(&buf[..n]).unwrap_err().step, Step::Reply);
    }

    #[test]
    fn exchange_carries_the_record_and_fds() {
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage};
        let (ours, daemon) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let mut reply = [0u8; MAX_FIXED_RECORD_LEN];
        let n = Record::Reply(Reply { errno: 0, value: 9 }).encode(&mut reply).unwrap();
        rustix::net::send(&daemon, &reply[..n], SendFlags::empty()).unwrap();
        let got = exchange(ours.as_fd(), Record::AddWatch { mask: 0x100 }, &[a.as_fd(), b.as_fd()]);
        assert_eq!(got, Ok(Reply { errno: 0, value: 9 }));

        let mut buf = [0u8; 64];
        let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [rustix::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg(&daemon, &mut iov, &mut control, RecvFlags::empty()).unwrap();
        let len = msg.bytes;
        assert_eq!(Record::decode(&buf[..len]), Ok(Record::AddWatch { mask: 0x100 }));
        let mut count = 0;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                count += fds.count();
            }
        }
        assert_eq!(count, 2);
    }
}
