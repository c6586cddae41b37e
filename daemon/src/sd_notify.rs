//! sd_notify(3) without libsystemd: one datagram such as `READY=1` to `$NOTIFY_SOCKET`, so that
//! a `Type=notify` unit counts the daemon as started only once its socket answers. A leading '@'
//! in the variable names an abstract socket. Without the variable it does nothing.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

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

fn send(target: &OsString, state: &str) -> rustix::io::Result<()> {
    let bytes = target.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddrUnix::new_abstract_name(name)?,
        None => SocketAddrUnix::new(bytes)?,
    };
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
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
