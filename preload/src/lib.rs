//! `libfakenotify.so`, the LD_PRELOAD half of FakeNotify: it answers an application's
//! `inotify_init`, `inotify_init1`, `inotify_add_watch` and `inotify_rm_watch`, routing them to
//! fakenotifyd when it answers on its socket and to the kernel otherwise, so the application
//! runs exactly as without FakeNotify when no daemon is there. It hooks nothing else: the
//! application reads, polls and closes its fd as it would a real inotify fd. It is `no_std`,
//! allocates nothing, takes no lock, keeps no state but atomics, and makes its syscalls itself
//! through rustix. It links to no libc: the only symbols it takes from the process are
//! `__errno_location`, `environ` and the `mem*`/`strlen` routines the compiler calls, which glibc
//! and musl both export unversioned, so one build serves glibc and musl processes, and it is
//! safe after `fork()` and in signal handlers.
#![cfg_attr(not(test), no_std)]

mod daemon_link;
mod debug;
mod env;
mod errno;
mod instance;
mod instances;
mod peer_uid;
mod watch;

use core::ffi::{c_char, c_int, CStr};

use rustix::fd::{BorrowedFd, IntoRawFd};
use rustix::io::Errno;

/// `inotify_init()`: `inotify_init1(0)`.
#[no_mangle]
pub extern "C" fn inotify_init() -> c_int {
    errno::ret(instance::create(instance::Call::Init, 0).map(IntoRawFd::into_raw_fd))
}

/// `inotify_init1(flags)`. The fd returned is the caller's to close.
#[no_mangle]
pub extern "C" fn inotify_init1(flags: c_int) -> c_int {
    errno::ret(instance::create(instance::Call::Init1, flags as u32).map(IntoRawFd::into_raw_fd))
}

/// `inotify_add_watch(fd, path, mask)`.
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string, as inotify_add_watch(2) requires.
#[no_mangle]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    // The kernel checks the mask's bits before the fd.
    if !fakenotify_proto::inotify::watch_mask_bits_are_known(mask) {
        return errno::ret(Err(Errno::INVAL));
    }
    let Some(fd) = borrow(fd) else { return bad_fd("inotify_add_watch(", fd) };
    // SAFETY: the caller passes NULL or a NUL-terminated string that outlives this call.
    let path = (!path.is_null()).then(|| unsafe { CStr::from_ptr(path) });
    errno::ret(watch::add(fd, path, mask))
}

/// `inotify_rm_watch(fd, wd)`.
#[no_mangle]
pub extern "C" fn inotify_rm_watch(fd: c_int, wd: c_int) -> c_int {
    let Some(fd) = borrow(fd) else { return bad_fd("inotify_rm_watch(", fd) };
    errno::ret(watch::remove(fd, wd))
}

/// The caller's fd for the length of the call, or None for a negative one.
fn borrow<'a>(fd: c_int) -> Option<BorrowedFd<'a>> {
    // SAFETY: a non-negative fd is the caller's for the duration of the call; if it is not
    // open, the syscalls made on it fail with EBADF, as the real call would.
    (fd >= 0).then(|| unsafe { BorrowedFd::borrow_raw(fd) })
}

/// EBADF for a negative fd, as the kernel answers without looking further.
fn bad_fd(call: &str, fd: c_int) -> c_int {
    if debug::enabled() {
        debug::Line::new(call).int(fd.into()).text(", ...)").result("", Err(Errno::BADF)).emit();
    }
    errno::ret(Err(Errno::BADF))
}

/// There is no unwinding and nowhere to report: abort like a failed libc assertion would.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    use rustix::process::{getpid, kill_process, Signal};
    let _ = kill_process(getpid(), Signal::ABORT);
    // SIGABRT blocked or handled and returning: SIGKILL cannot be.
    let _ = kill_process(getpid(), Signal::KILL);
    loop {
        rustix::event::pause();
    }
}

/// Unoptimised builds keep the unwind tables of the precompiled `core`, which name this
/// personality routine; with panic=abort nothing ever unwinds through the preload, so it is
/// never called. Optimised (LTO) builds drop the reference and this definition.
#[cfg(all(not(test), debug_assertions))]
#[no_mangle]
extern "C" fn rust_eh_personality() {}
