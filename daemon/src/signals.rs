//! TERM, INT and HUP as readable events on a signalfd, so the event loop handles them in turn
//! like any other fd: TERM and INT stop cleanly, HUP reloads the configuration.

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::io::Errno;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Stop,
    Reload,
}

pub struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks TERM, INT, HUP and PIPE for the process and routes the first three to a signalfd.
    pub fn new() -> Result<Signals, Errno> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, initialised sigset_t owned by this frame; the calls only
        // write into it and into the thread's mask; `main` calls this before it starts any other
        // thread, and threads inherit the mask.
        let fd = unsafe {
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
                libc::sigaddset(&mut set, signal);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(Errno::from_raw_os_error(*libc::__errno_location()));
            }
            libc::sigdelset(&mut set, libc::SIGPIPE);
            libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO),
            ));
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        Ok(Signals { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The signals that arrived since the last call.
    pub fn drain(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        while let Ok(n) = rustix::io::read(&self.fd, &mut info) {
            if n != info.len() {
                break;
            }
            let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
            out.push(if signo == libc::SIGHUP { Signal::Reload } else { Signal::Stop });
        }
        out
    }
}
