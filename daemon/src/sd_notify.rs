//! The service manager's side channels without libsystemd: sd_notify(3) datagrams such as
//! `READY=1` to `$NOTIFY_SOCKET` (a leading '@' names an abstract socket), fds handed to its
//! file-descriptor store (`FDSTORE=1`), and the fds it passes back (`LISTEN_FDS`). Without
//! the variables each does nothing.

use std::ffi::OsString;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Whether a service manager asked for notifications (`$NOTIFY_SOCKET`).
pub fn wanted() -> bool {
    std::env::var_os(NOTIFY_SOCKET).is_some_and(|s| !s.is_empty())
}

/// Sends `state` (e.g. `"READY=1"`) to the service manager, if one asked for notifications.
/// A failure is logged and otherwise ignored: the daemon serves whether or not systemd heard.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET).filter(|s| !s.is_empty()) else {
        return;
    };
    if let Err(errno) = send(&target, state) {
        warn!("sd_notify {state} to {}: {errno}", target.to_string_lossy());
    }
}

/// Hands `fds` to the service manager's file-descriptor store under `name` (in batches of at
/// most 250, the kernel's limit per message being 253). Without `$NOTIFY_SOCKET`, `Ok(false)`.
pub fn store_fds(name: &str, fds: &[BorrowedFd<'_>]) -> rustix::io::Result<bool> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET).filter(|s| !s.is_empty()) else {
        return Ok(false);
    };
    let addr = address(&target)?;
    let socket = datagram_socket()?;
    let state = format!("FDSTORE=1\nFDNAME={name}");
    for batch in fds.chunks(250) {
        let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(250))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(batch)) {
            return Err(rustix::io::Errno::NOBUFS);
        }
        rustix::net::sendmsg_addr(
            &socket,
            &addr,
            &[IoSlice::new(state.as_bytes())],
            &mut control,
            SendFlags::NOSIGNAL,
        )?;
    }
    Ok(true)
}

/// The fds a service manager passed (sd_listen_fds(3)) with their names (`LISTEN_FDNAMES`;
/// `"unknown"` when it gave none). Empty unless `LISTEN_PID` is this process. The `LISTEN_*`
/// variables are removed so that no child takes them for its own.
pub fn take_listen_fds() -> Vec<(OwnedFd, String)> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.trim().parse::<i32>().ok());
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let Some(count) = count.filter(|&n| ours && n > 0) else { return Vec::new() };
    let mut names = names.split(':');
    (LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count))
        .filter_map(|raw| {
            let name = names.next().filter(|n| !n.is_empty()).unwrap_or("unknown").to_owned();
            // SAFETY: only borrowed for the F_GETFD probe, which fails with EBADF rather than
            // misbehaving if nothing is open there.
            let probe = unsafe { BorrowedFd::borrow_raw(raw) };
            rustix::io::fcntl_getfd(probe).ok()?;
            // SAFETY: the fd is open (probed above) and LISTEN_PID names this process, so the
            // service manager handed it to this process alone; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // Passed fds are not close-on-exec; nothing the daemon runs should inherit them.
            let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
            Some((fd, name))
        })
        .collect()
}

/// The first fd a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

fn address(target: &OsString) -> rustix::io::Result<SocketAddrUnix> {
    let bytes = target.as_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddrUnix::new_abstract_name(name),
        None => SocketAddrUnix::new(bytes),
    }
}

fn datagram_socket() -> rustix::io::Result<OwnedFd> {
    rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
}

fn send(target: &OsString, state: &str) -> rustix::io::Result<()> {
    let addr = address(target)?;
    let socket = datagram_socket()?;
    rustix::net::sendto(&socket, state.as_bytes(), SendFlags::NOSIGNAL, &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn sends_to_a_path_socket() {
        let dir =
            std::env::temp_dir().join(format!("fakenotifyd-sd-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(&path.clone().into_os_string(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("fakenotifyd-sd-notify-test-{}", std::process::id());
        let addr = SocketAddrUnix::new_abstract_name(name.as_bytes()).unwrap();
        let receiver = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
        rustix::net::bind(&receiver, &addr).unwrap();
        send(&OsString::from(format!("@{name}")), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let (n, _) =
            rustix::net::recv(&receiver, &mut buf, rustix::net::RecvFlags::empty()).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let err = send(&OsString::from("/nonexistent/fakenotifyd/notify.sock"), "READY=1");
        assert_eq!(err, Err(rustix::io::Errno::NOENT));
    }
}
