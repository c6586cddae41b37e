//! The preload's settings, read straight from `environ` without allocation: `getenv` would do,
//! but `environ` is a plain data symbol that glibc and musl both export under that name, and
//! scanning it needs nothing else from libc. Strings are borrowed from the environment block
//! under the same contract as `getenv(3)`: valid until the program changes that variable.

use core::ffi::{c_char, CStr};

use fakenotify_proto::{DEFAULT_SOCKET, LEGACY_SOCKET, SOCKET_ENV};

extern "C" {
    static environ: *const *const c_char;
}

const DEBUG_ENV: &[u8] = b"FAKENOTIFY_DEBUG";
/// A uid besides root and the process's own whose daemon the preload trusts (a daemon run by
/// the host's root shows as the overflow uid inside a user namespace).
pub const DAEMON_UID_ENV: &[u8] = b"FAKENOTIFY_DAEMON_UID";

/// `path` with its terminating NUL, for a compile-time `CStr`.
const fn nul_terminated<const N: usize>(path: &str) -> [u8; N] {
    let mut bytes = [0u8; N];
    let src = path.as_bytes();
    let mut i = 0;
    while i < src.len() {
        bytes[i] = src[i];
        i += 1;
    }
    bytes
}

const DEFAULT_SOCKET_BYTES: [u8; DEFAULT_SOCKET.len() + 1] = nul_terminated(DEFAULT_SOCKET);
/// `proto::DEFAULT_SOCKET` with its terminating NUL, built at compile time.
const DEFAULT_SOCKET_C: &CStr = match CStr::from_bytes_with_nul(&DEFAULT_SOCKET_BYTES) {
    Ok(path) => path,
    Err(_) => panic!("DEFAULT_SOCKET holds no NUL byte"),
};
const LEGACY_SOCKET_BYTES: [u8; LEGACY_SOCKET.len() + 1] = nul_terminated(LEGACY_SOCKET);
/// `proto::LEGACY_SOCKET` with its terminating NUL, built at compile time.
const LEGACY_SOCKET_C: &CStr = match CStr::from_bytes_with_nul(&LEGACY_SOCKET_BYTES) {
    Ok(path) => path,
    Err(_) => panic!("LEGACY_SOCKET holds no NUL byte"),
};

/// Where the daemon's socket is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketChoice {
    /// `$FAKENOTIFY_SOCKET`, set and not empty: that path and no other.
    Named(&'static CStr),
    /// The default path, then, if nothing is there, the original FakeNotify's path.
    Default { primary: &'static CStr, legacy: &'static CStr },
}

/// The daemon's socket: `$FAKENOTIFY_SOCKET` if set and not empty, else the defaults.
pub fn socket_choice() -> SocketChoice {
    match var(SOCKET_ENV.as_bytes()) {
        Some(path) if !path.is_empty() => SocketChoice::Named(path),
        _ => SocketChoice::Default { primary: DEFAULT_SOCKET_C, legacy: LEGACY_SOCKET_C },
    }
}

/// Whether `FAKENOTIFY_DEBUG=1`.
pub fn debug() -> bool {
    var(DEBUG_ENV).is_some_and(|value| value.to_bytes() == b"1")
}

/// `$FAKENOTIFY_DAEMON_UID`, if set to a decimal uid.
pub fn daemon_uid() -> Option<u32> {
    parse_uid(var(DAEMON_UID_ENV)?.to_bytes())
}

/// A decimal uid, nothing else.
fn parse_uid(text: &[u8]) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u32, |uid, &c| {
        if c.is_ascii_digit() {
            uid.checked_mul(10)?.checked_add(u32::from(c - b'0'))
        } else {
            None
        }
    })
}

/// The value of `name` in the process environment.
fn var(name: &[u8]) -> Option<&'static CStr> {
    // SAFETY: reading the pointer itself; libc sets it before any constructor or hook can run.
    let mut next = unsafe { environ };
    if next.is_null() {
        return None;
    }
    let entries = core::iter::from_fn(move || {
        // SAFETY: `next` points into environ's NULL-terminated array, at or before the NULL.
        let entry = unsafe { *next };
        if entry.is_null() {
            return None;
        }
        // SAFETY: `entry` was not the terminator, so the slot after it exists.
        next = unsafe { next.add(1) };
        // SAFETY: every environ entry is a NUL-terminated string that outlives this call.
        Some(unsafe { CStr::from_ptr(entry) })
    });
    lookup(entries, name)
}

/// The value of the first `name=value` among `entries`.
fn lookup<'a>(entries: impl IntoIterator<Item = &'a CStr>, name: &[u8]) -> Option<&'a CStr> {
    entries.into_iter().find_map(|entry| value_of(entry, name))
}

/// `value` if `entry` is `name=value`.
fn value_of<'a>(entry: &'a CStr, name: &[u8]) -> Option<&'a CStr> {
    let bytes = entry.to_bytes_with_nul();
    let rest = bytes.strip_prefix(name)?.strip_prefix(b"=")?;
    CStr::from_bytes_with_nul(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_exact_name() {
        let env = [
            c"FAKENOTIFY_SOCKETX=/wrong",
            c"FAKENOTIFY_SOCKE=/wrong",
            c"FAKENOTIFY_SOCKET=/tmp/a.sock",
            c"FAKENOTIFY_SOCKET=/tmp/b.sock",
        ];
        assert_eq!(lookup(env, b"FAKENOTIFY_SOCKET"), Some(c"/tmp/a.sock"));
        assert_eq!(lookup(env, b"FAKENOTIFY_DEBUG"), None);
        assert_eq!(lookup([c"A=", c"B"], b"A"), Some(c""));
        assert_eq!(lookup([c"B"], b"B"), None);
        assert_eq!(lookup([c"X==1"], b"X"), Some(c"=1"));
    }

    #[test]
    fn uids_are_plain_decimal() {
        assert_eq!(parse_uid(b"65534"), Some(65534));
        assert_eq!(parse_uid(b"0"), Some(0));
        assert_eq!(parse_uid(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_uid(b"4294967296"), None);
        assert_eq!(parse_uid(b""), None);
        assert_eq!(parse_uid(b"-1"), None);
        assert_eq!(parse_uid(b"12a"), None);
        assert_eq!(parse_uid(b" 1"), None);
    }

    #[test]
    fn default_socket_matches_proto() {
        assert_eq!(DEFAULT_SOCKET_C.to_bytes(), DEFAULT_SOCKET.as_bytes());
        assert_eq!(LEGACY_SOCKET_C.to_bytes(), LEGACY_SOCKET.as_bytes());
    }

    #[test]
    fn reads_the_real_environment() {
        // PATH is set wherever cargo runs tests.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(var(b"PATH").map(CStr::to_bytes), Some(path.as_bytes()));
    }
}
