//! `FAKENOTIFY_DEBUG=1`: one line per hook decision on stderr, e.g.
//! `fakenotify: inotify_add_watch(5, "/mnt/x", 0x100) -> wd 1 (daemon)`.
//! Lines are built by hand in a stack buffer and written with one raw `write(2)`, so logging
//! needs no allocation, no lock and no `core::fmt`; a line that does not fit is cut short.

use rustix::fd::BorrowedFd;
use rustix::io::Errno;

use crate::env;

const LINE_MAX: usize = 512;
/// Longest path shown; longer ones end in "...".
const PATH_SHOWN: usize = 200;

/// Whether hooks should log.
pub fn enabled() -> bool {
    env::debug()
}

/// A log line under construction. The last byte is kept for the newline.
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Line {
    /// `fakenotify: ` followed by `call`.
    pub fn new(call: &str) -> Line {
        let mut line = Line { buf: [0; LINE_MAX], len: 0 };
        line.text("fakenotify: ").text(call);
        line
    }

    pub fn text(&mut self, text: &str) -> &mut Line {
        self.bytes(text.as_bytes())
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Line {
        for &b in bytes {
            self.byte(b);
        }
        self
    }

    fn byte(&mut self, b: u8) {
        if self.len < LINE_MAX - 1 {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    /// A signed decimal integer.
    pub fn int(&mut self, value: i64) -> &mut Line {
        if value < 0 {
            self.byte(b'-');
        }
        let mut digits = [0u8; 20];
        let mut rest = value.unsigned_abs();
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.bytes(&digits[start..])
    }

    /// `0x` and lowercase hex digits without leading zeros.
    pub fn hex(&mut self, value: u32) -> &mut Line {
        self.text("0x");
        let mut shift = 28;
        while shift > 0 && (value >> shift) & 0xf == 0 {
            shift -= 4;
        }
        loop {
            self.byte(hex_digit((value >> shift) as u8));
            if shift == 0 {
                break;
            }
            shift -= 4;
        }
        self
    }

    /// A path in double quotes; bytes outside printable ASCII, `"` and `\` escaped as `\xNN`.
    pub fn quoted(&mut self, path: &[u8]) -> &mut Line {
        self.byte(b'"');
        for &b in path.iter().take(PATH_SHOWN) {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                self.byte(b);
            } else {
                self.bytes(&[b'\\', b'x', hex_digit(b >> 4), hex_digit(b & 0xf)]);
            }
        }
        self.byte(b'"');
        if path.len() > PATH_SHOWN {
            self.text("...");
        }
        self
    }

    /// The errno's symbolic name when it is one a hook meets, else `errno N`.
    pub fn errno(&mut self, errno: Errno) -> &mut Line {
        match errno_name(errno) {
            Some(name) => self.text(name),
            None => self.text("errno ").int(errno.raw_os_error().into()),
        }
    }

    /// ` -> ` and the result as C sees it: `what value` (`fd 5`, `wd 1`) or `-1 ERRNO`.
    pub fn result(&mut self, what: &str, result: Result<i64, Errno>) -> &mut Line {
        self.text(" -> ");
        match result {
            Ok(value) => self.text(what).int(value),
            Err(errno) => self.text("-1 ").errno(errno),
        }
    }

    /// Terminates the line and writes it to stderr in one `write`; failures are ignored (there
    /// is nowhere to report them).
    pub fn emit(&mut self) {
        self.buf[self.len] = b'\n';
        self.len += 1;
        // SAFETY: fd 2 is only written to; if it is closed or reused, write fails or writes a
        // log line there, as any stderr logging would.
        let stderr = unsafe { BorrowedFd::borrow_raw(2) };
        let _ = rustix::io::write(stderr, &self.buf[..self.len]);
    }

    #[cfg(test)]
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn hex_digit(nibble: u8) -> u8 {
    b"0123456789abcdef"[usize::from(nibble & 0xf)]
}

fn errno_name(errno: Errno) -> Option<&'static str> {
    const NAMES: [(Errno, &str); 22] = [
        (Errno::PERM, "EPERM"),
        (Errno::NOENT, "ENOENT"),
        (Errno::INTR, "EINTR"),
        (Errno::BADF, "EBADF"),
        (Errno::AGAIN, "EAGAIN"),
        (Errno::NOMEM, "ENOMEM"),
        (Errno::ACCESS, "EACCES"),
        (Errno::FAULT, "EFAULT"),
        (Errno::EXIST, "EEXIST"),
        (Errno::NOTDIR, "ENOTDIR"),
        (Errno::INVAL, "EINVAL"),
        (Errno::NFILE, "ENFILE"),
        (Errno::MFILE, "EMFILE"),
        (Errno::NOSPC, "ENOSPC"),
        (Errno::PIPE, "EPIPE"),
        (Errno::NAMETOOLONG, "ENAMETOOLONG"),
        (Errno::NOSYS, "ENOSYS"),
        (Errno::LOOP, "ELOOP"),
        (Errno::PROTO, "EPROTO"),
        (Errno::CONNREFUSED, "ECONNREFUSED"),
        (Errno::CONNRESET, "ECONNRESET"),
        (Errno::STALE, "ESTALE"),
    ];
    NAMES.iter().find(|(known, _)| *known == errno).map(|&(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(build: impl FnOnce(&mut Line) -> &mut Line) -> String {
        let mut line = Line::new("");
        build(&mut line);
        String::from_utf8(line.as_bytes()["fakenotify: ".len()..].to_vec()).unwrap()
    }

    #[test]
    fn integers() {
        for value in [0, 1, -1, 9, 10, 4096, i64::from(i32::MIN), i64::MAX, i64::MIN] {
            assert_eq!(shown(|l| l.int(value)), value.to_string());
        }
    }

    #[test]
    fn hex() {
        for value in [0, 1, 0xf, 0x10, 0x80800, 0x8000_0fff, u32::MAX] {
            assert_eq!(shown(|l| l.hex(value)), format!("{value:#x}"));
        }
    }

    #[test]
    fn quoting_escapes_and_cuts() {
        assert_eq!(shown(|l| l.quoted(b"/mnt/a b")), "\"/mnt/a b\"");
        assert_eq!(shown(|l| l.quoted(b"q\"\\\n\xff")), "\"q\\x22\\x5c\\x0a\\xff\"");
        let long = [b'a'; PATH_SHOWN + 1];
        let out = shown(|l| l.quoted(&long));
        assert_eq!(out.len(), PATH_SHOWN + 2 + 3);
        assert!(out.ends_with("\"..."));
    }

    #[test]
    fn errno_names() {
        assert_eq!(shown(|l| l.errno(Errno::NOENT)), "ENOENT");
        assert_eq!(shown(|l| l.errno(Errno::from_raw_os_error(200))), "errno 200");
    }

    #[test]
    fn a_full_line_keeps_room_for_the_newline() {
        let mut line = Line::new("x");
        for _ in 0..LINE_MAX {
            line.text("yy");
        }
        assert_eq!(line.as_bytes().len(), LINE_MAX - 1);
        line.buf[line.len] = b'\n';
        line.len += 1;
        assert_eq!(line.as_bytes().last(), Some(&b'\n'));
    }

    #[test]
    fn results() {
        assert_eq!(shown(|l| l.result("wd ", Ok(1))), " -> wd 1");
        assert_eq!(shown(|l| l.result("", Err(Errno::NOSPC))), " -> -1 ENOSPC");
    }

    #[test]
    fn a_whole_line() {
        let mut line = Line::new("inotify_add_watch(");
        line.int(5).text(", ").quoted(b"/mnt/x").text(", ").hex(0x100).text(") -> wd ").int(1);
        assert_eq!(line.as_bytes(), b"fakenotify: inotify_add_watch(5, \"/mnt/x\", 0x100) -> wd 1");
    }
}
