//! Setting `errno` the way C callers read it. `__errno_location` is exported by both glibc and
//! musl, so going through it ties the preload to neither (no symbol version, no NEEDED entry).

use core::ffi::c_int;

use rustix::io::Errno;

extern "C" {
    fn __errno_location() -> *mut c_int;
}

/// Stores `errno` in the calling thread's `errno`.
pub fn set(errno: Errno) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, valid and aligned for
    // as long as the thread lives.
    unsafe { *__errno_location() = errno.raw_os_error() }
}

/// The C convention: the value on success; -1 and `errno` on failure. `errno` is left alone on
/// success, as libc's own wrappers do.
pub fn ret(result: Result<c_int, Errno>) -> c_int {
    match result {
        Ok(value) => value,
        Err(errno) => {
            set(errno);
            -1
        }
    }
}

/// A reply's errno as an `Errno`: anything outside the kernel's errno range is a protocol error.
pub fn from_reply(raw: i32) -> Errno {
    if (1..4096).contains(&raw) {
        Errno::from_raw_os_error(raw)
    } else {
        Errno::PROTO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ret_sets_errno_only_on_failure() {
        set(Errno::NOENT);
        assert_eq!(ret(Ok(7)), 7);
        // SAFETY: the calling thread's errno slot.
        assert_eq!(unsafe { *__errno_location() }, Errno::NOENT.raw_os_error());
        assert_eq!(ret(Err(Errno::NOSPC)), -1);
        // SAFETY: the calling thread's errno slot.
        assert_eq!(unsafe { *__errno_location() }, Errno::NOSPC.raw_os_error());
    }

    #[test]
    fn reply_errno_out_of_range_is_a_protocol_error() {
        assert_eq!(from_reply(2), Errno::NOENT);
        assert_eq!(from_reply(-2), Errno::PROTO);
        assert_eq!(from_reply(0), Errno::PROTO);
        assert_eq!(from_reply(5000), Errno::PROTO);
    }
}
