//! `inotify_init1`: an instance served by the daemon when one answers, else a real inotify fd.
//! The application gets one end of a `SOCK_SEQPACKET` socketpair; the daemon gets both ends
//! with the Register record, keeps its own and learns the instance's identity from the
//! application's end. What stays in this process is the held copy of the daemon's end and the
//! registering connection, kept as the instance's request channel (see `instances`).

use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::inotify::CreateFlags;
use rustix::fs::OFlags;
use rustix::io::{Errno, FdFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use fakenotify_proto::inotify::{IN_CLOEXEC, IN_NONBLOCK};
use fakenotify_proto::record::Record;

use crate::daemon_link::{self, LinkError, Step};
use crate::{debug, errno, instances};

/// Which hook asked, for the debug line.
#[derive(Clone, Copy)]
pub enum Call {
    Init,
    Init1,
}

/// Who decided the result, for the debug line.
enum Route {
    BadFlags,
    Daemon,
    /// The real syscall, because the daemon could not serve the instance.
    Real(LinkError),
}

/// `inotify_init1(flags)`; `inotify_init()` is `inotify_init1(0)`.
pub fn create(call: Call, flags: u32) -> Result<OwnedFd, Errno> {
    instances::sweep();
    let (result, route) = if flags & !(IN_NONBLOCK | IN_CLOEXEC) != 0 {
        (Err(Errno::INVAL), Route::BadFlags)
    } else {
        match register(flags) {
            Ok(fd) => (Ok(fd), Route::Daemon),
            Err(why) => (real(flags), Route::Real(why)),
        }
    };
    if debug::enabled() {
        log(call, flags, &result, &route);
    }
    result
}

fn log(call: Call, flags: u32, result: &Result<OwnedFd, Errno>, route: &Route) {
    let mut line = match call {
        Call::Init => debug::Line::new("inotify_init()"),
        Call::Init1 => {
            let mut line = debug::Line::new("inotify_init1(");
            line.hex(flags).text(")");
            line
        }
    };
    line.result("fd ", result.as_ref().map(|fd| fd.as_raw_fd().into()).map_err(|e| *e));
    match route {
        Route::BadFlags => line.text(" (bad flags)"),
        Route::Daemon => line.text(" (daemon)"),
        Route::Real(why) => line
            .text(" (real inotify; daemon: ")
            .text(why.step.name())
            .text(" ")
            .errno(why.errno)
            .text(")"),
    };
    line.emit();
}

/// The real `inotify_init1`, for processes that no daemon serves.
fn real(flags: u32) -> Result<OwnedFd, Errno> {
    rustix::fs::inotify::init(CreateFlags::from_bits_retain(flags))
}

/// Registers a new instance with the daemon and returns the application's end.
fn register(flags: u32) -> Result<OwnedFd, LinkError> {
    let conn = daemon_link::connect()?;
    // CLOEXEC on both ends while we work, so a concurrent fork+exec leaks neither.
    let (app, daemon) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(LinkError::at(Step::Socketpair))?;
    // O_NONBLOCK belongs to the open file description: set it on the application's end only
    // (the daemon's descriptions stay blocking; it sets its own flags).
    if flags & IN_NONBLOCK != 0 {
        rustix::fs::fcntl_setfl(&app, OFlags::NONBLOCK).map_err(LinkError::at(Step::Fcntl))?;
    }
    let reply =
        daemon_link::exchange(conn.as_fd(), Record::Register, &[app.as_fd(), daemon.as_fd()])?;
    if reply.errno != 0 {
        return Err(LinkError { step: Step::Refused, errno: errno::from_reply(reply.errno) });
    }
    if flags & IN_CLOEXEC == 0 {
        rustix::io::fcntl_setfd(&app, FdFlags::empty()).map_err(LinkError::at(Step::Fcntl))?;
    }
    instances::keep(app.as_fd(), daemon, conn);
    Ok(app)
}
