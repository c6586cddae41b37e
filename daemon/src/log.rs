//! Leveled one-line logging to stderr, which systemd's journal and `docker logs` collect.
//!
//! The level is a global atomic set once at start (`--log-level`, then `$FAKENOTIFY_LOG`, then
//! the configuration); each line reads `fakenotifyd: LEVEL: message` so a grep for the level or
//! the path finds it. Control characters in a message (a file name with a newline or an escape
//! sequence) are written as `\xNN`: one event is one line, and nobody's file name drives the
//! reader's terminal. When stderr is the journal (`$JOURNAL_STREAM` names its device and
//! inode), each line starts with its syslog priority (`<3>` error, `<4>` warning, `<6>` info,
//! `<7>` debug), which journald takes off and records, so `journalctl -p warning` finds warnings.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::config::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static JOURNAL: AtomicBool = AtomicBool::new(false);

/// Whether `journal_stream` (`$JOURNAL_STREAM`, `DEV:INODE` in decimal) names the file that
/// `(dev, ino)` identify: systemd sets it for a unit whose stderr is the journal, and a child
/// whose stderr was redirected elsewhere must not prefix.
pub fn is_journal(journal_stream: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = journal_stream.split_once(':') else { return false };
    d.parse::<u64>().ok() == Some(dev) && i.parse::<u64>().ok() == Some(ino)
}

/// Looks once at `$JOURNAL_STREAM` and stderr; later lines carry priorities if they match.
pub fn detect_journal() {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return };
    let Ok(stat) = rustix::fs::fstat(std::io::stderr()) else { return };
    let journal = is_journal(&stream.to_string_lossy(), stat.st_dev, stat.st_ino);
    JOURNAL.store(journal, Ordering::Relaxed);
}

/// The syslog priority prefix for `level` when stderr is the journal, else nothing.
pub fn priority_prefix(level: LogLevel) -> &'static str {
    if !JOURNAL.load(Ordering::Relaxed) {
        return "";
    }
    match level {
        LogLevel::Error => "<3>",
        LogLevel::Warn => "<4>",
        LogLevel::Info => "<6>",
        LogLevel::Debug => "<7>",
    }
}

pub fn set_level(level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

pub fn write(level: LogLevel, args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let name = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    let text = args.to_string();
    let text = if text.chars().any(char::is_control) {
        fakenotify_ctl::render::escape(&text)
    } else {
        text
    };
    // A failed write to stderr leaves nowhere to report it.
    let prefix = priority_prefix(level);
    let _ = writeln!(std::io::stderr().lock(), "{prefix}fakenotifyd: {name}: {text}");
}

macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::write($level, format_args!($($arg)*));
        }
    };
}

macro_rules! error { ($($arg:tt)*) => { log_at!($crate::config::LogLevel::Error, $($arg)*) }; }
macro_rules! warn { ($($arg:tt)*) => { log_at!($crate::config::LogLevel::Warn, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { log_at!($crate::config::LogLevel::Info, $($arg)*) }; }
macro_rules! debug { ($($arg:tt)*) => { log_at!($crate::config::LogLevel::Debug, $($arg)*) }; }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        assert!(is_journal("8:1234", 8, 1234));
        assert!(!is_journal("8:1234", 8, 1235));
        assert!(!is_journal("9:1234", 8, 1234));
        assert!(!is_journal("", 8, 1234));
        assert!(!is_journal("8-1234", 8, 1234));
        assert!(!is_journal("8:1234:5", 8, 1234));
    }
}
