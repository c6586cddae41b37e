//! Leveled one-line logging to stderr, which systemd's journal and `docker logs` collect.
//!
//! The level is a global atomic set once from the configuration; each line reads
//! `fakenotifyd: LEVEL: message` so a grep for the level or the path finds it. Control
//! characters in a message (a file name with a newline or an escape sequence) are written as
//! `\xNN`: one event is one line, and nobody's file name drives the reader's terminal.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::LogLevel;

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

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
    let _ = writeln!(std::io::stderr().lock(), "fakenotifyd: {name}: {text}");
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
