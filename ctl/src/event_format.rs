//! `watch --format` and `--timefmt`: inotifywait's printf-like event lines, so scripts written
//! for inotifywait read the same text. Pure: parsed once, rendered per event into bytes (paths
//! need not be UTF-8).
//!
//! `--format` conversions: `%w` watched path (directories end in `/`), `%f` name in it, `%e`
//! event names joined by `,`, `%Xe` joined by the character X, `%T` the time per `--timefmt`,
//! `%c` the cookie, `%0` NUL, `%n` newline, `%%`; anything else is printed as written, as
//! inotifywait does. `--timefmt` is a strftime(3) subset (see [`TIME_CONVERSIONS`]).

use fakenotify_proto::inotify::*;

/// inotifywait's default line: `%w %,e %f`.
pub const DEFAULT_FORMAT: &str = "%w %,e %f";

/// Event names in inotifytools' order (CLOSE after the close bits, ISDIR last).
const EVENT_NAMES: &[(u32, &str)] = &[
    (IN_ACCESS, "ACCESS"),
    (IN_MODIFY, "MODIFY"),
    (IN_ATTRIB, "ATTRIB"),
    (IN_CLOSE_WRITE, "CLOSE_WRITE"),
    (IN_CLOSE_NOWRITE, "CLOSE_NOWRITE"),
    (IN_OPEN, "OPEN"),
    (IN_MOVED_FROM, "MOVED_FROM"),
    (IN_MOVED_TO, "MOVED_TO"),
    (IN_CREATE, "CREATE"),
    (IN_DELETE, "DELETE"),
    (IN_DELETE_SELF, "DELETE_SELF"),
    (IN_UNMOUNT, "UNMOUNT"),
    (IN_Q_OVERFLOW, "Q_OVERFLOW"),
    (IN_IGNORED, "IGNORED"),
    (IN_CLOSE, "CLOSE"),
    (IN_MOVE_SELF, "MOVE_SELF"),
    (IN_ISDIR, "ISDIR"),
    (IN_ONESHOT, "ONESHOT"),
];

/// `mask`'s event names joined by `sep`, as inotifywait prints them (`CLOSE_WRITE,CLOSE`).
pub fn event_names(mask: u32, sep: char) -> String {
    let mut out = String::new();
    for (bit, name) in EVENT_NAMES {
        if mask & bit != 0 {
            if !out.is_empty() {
                out.push(sep);
            }
            out.push_str(name);
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Watched,
    File,
    Events(char),
    Time,
    Cookie,
}

/// A parsed `--format`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFormat {
    pieces: Vec<Piece>,
}

/// What one line shows of an event.
pub struct EventView<'a> {
    /// The watched path as given, with `/` after a directory.
    pub watched: &'a [u8],
    pub name: &'a [u8],
    pub mask: u32,
    pub cookie: u32,
}

impl EventFormat {
    /// Parses a `--format` string. Every string is valid, as in inotifywait.
    pub fn parse(format: &str) -> EventFormat {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                let mut buf = [0u8; 4];
                text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            let piece = match chars.peek().copied() {
                None => None,
                Some('%') => {
                    text.push(b'%');
                    chars.next();
                    continue;
                }
                Some('0') => Some(Piece::Text(vec![0])),
                Some('n') => Some(Piece::Text(vec![b'\n'])),
                Some('w') => Some(Piece::Watched),
                Some('f') => Some(Piece::File),
                Some('e') => Some(Piece::Events(',')),
                Some('T') => Some(Piece::Time),
                Some('c') => Some(Piece::Cookie),
                Some(sep) => {
                    let mut ahead = chars.clone();
                    ahead.next();
                    if ahead.peek() == Some(&'e') {
                        chars.next();
                        Some(Piece::Events(sep))
                    } else {
                        None
                    }
                }
            };
            match piece {
                Some(Piece::Text(bytes)) => {
                    chars.next();
                    text.extend_from_slice(&bytes);
                }
                Some(piece) => {
                    chars.next();
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
                // An unknown conversion is printed as written.
                None => text.push(b'%'),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        EventFormat { pieces }
    }

    /// Whether the format shows the time (`%T`), which then needs `--timefmt`.
    pub fn uses_time(&self) -> bool {
        self.pieces.contains(&Piece::Time)
    }

    /// Appends the line for `event` to `out`; `time` renders `%T`.
    pub fn render(&self, event: &EventView<'_>, time: &dyn Fn(&mut Vec<u8>), out: &mut Vec<u8>) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(bytes) => out.extend_from_slice(bytes),
                Piece::Watched => out.extend_from_slice(event.watched),
                Piece::File => out.extend_from_slice(event.name),
                Piece::Events(sep) => {
                    out.extend_from_slice(event_names(event.mask, *sep).as_bytes())
                }
                Piece::Time => time(out),
                Piece::Cookie => out.extend_from_slice(event.cookie.to_string().as_bytes()),
            }
        }
    }
}

/// A broken-down local time, what strftime(3) formats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalTime {
    pub epoch: i64,
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday
    pub weekday: u32,
    /// 0..=365
    pub yearday: u32,
    /// Seconds east of UTC.
    pub utc_offset: i64,
    pub zone: String,
}

/// The strftime conversions `--timefmt` knows; any other is printed as written, as glibc does.
pub const TIME_CONVERSIONS: &str =
    "%Y %C %y %m %d %e %j %H %k %I %l %M %S %p %s %a %A %b %h %B %u %w %z %Z %F %T %D %R %n %t %%";

const DAYS: [&str; 7] =
    ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Formats `t` per the strftime subset in [`TIME_CONVERSIONS`].
pub fn format_time(fmt: &str, t: &LocalTime, out: &mut String) {
    use std::fmt::Write;
    let day_name = DAYS.get(t.weekday as usize).copied().unwrap_or("?");
    let month_name = MONTHS.get((t.month as usize).wrapping_sub(1)).copied().unwrap_or("?");
    let hour12 = if t.hour % 12 == 0 { 12 } else { t.hour % 12 };
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(conv) = chars.next() else {
            out.push('%');
            break;
        };
        // Writing to a String cannot fail.
        let _ = match conv {
            'Y' => write!(out, "{}", t.year),
            'C' => write!(out, "{:02}", t.year.div_euclid(100)),
            'y' => write!(out, "{:02}", t.year.rem_euclid(100)),
            'm' => write!(out, "{:02}", t.month),
            'd' => write!(out, "{:02}", t.day),
            'e' => write!(out, "{:2}", t.day),
            'j' => write!(out, "{:03}", t.yearday + 1),
            'H' => write!(out, "{:02}", t.hour),
            'k' => write!(out, "{:2}", t.hour),
            'I' => write!(out, "{hour12:02}"),
            'l' => write!(out, "{hour12:2}"),
            'M' => write!(out, "{:02}", t.minute),
            'S' => write!(out, "{:02}", t.second),
            'p' => write!(out, "{}", if t.hour < 12 { "AM" } else { "PM" }),
            's' => write!(out, "{}", t.epoch),
            'a' => write!(out, "{}", &day_name[..day_name.len().min(3)]),
            'A' => write!(out, "{day_name}"),
            'b' | 'h' => write!(out, "{}", &month_name[..month_name.len().min(3)]),
            'B' => write!(out, "{month_name}"),
            'u' => write!(out, "{}", if t.weekday == 0 { 7 } else { t.weekday }),
            'w' => write!(out, "{}", t.weekday),
            'z' => {
                let sign = if t.utc_offset < 0 { '-' } else { '+' };
                let minutes = t.utc_offset.unsigned_abs() / 60;
                write!(out, "{sign}{:02}{:02}", minutes / 60, minutes % 60)
            }
            'Z' => write!(out, "{}", t.zone),
            'F' => write!(out, "{}-{:02}-{:02}", t.year, t.month, t.day),
            'T' => write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
            'D' => write!(out, "{:02}/{:02}/{:02}", t.month, t.day, t.year.rem_euclid(100)),
            'R' => write!(out, "{:02}:{:02}", t.hour, t.minute),
            'n' => out.write_char('\n'),
            't' => out.write_char('\t'),
            '%' => out.write_char('%'),
            other => write!(out, "%{other}"),
        };
    }
}

/// The local time now, through the C library's `localtime_r` (it reads `TZ` and the zone files).
pub fn local_now() -> LocalTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    local_time(now)
}

fn local_time(epoch: i64) -> LocalTime {
    let secs: libc::time_t = epoch as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r writes only `tm`.
    let ok = !unsafe { libc::localtime_r(&secs, &mut tm) }.is_null();
    if !ok {
        return LocalTime {
            epoch,
            year: 1970,
            month: 1,
            day: 1,
            zone: "UTC".into(),
            ..Default::default()
        };
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: localtime_r set tm_zone to a NUL-terminated string that lives as long as the
        // process's time zone data; it is copied at once.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }.to_string_lossy().into_owned()
    };
    let field = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
    LocalTime {
        epoch,
        year: i64::from(tm.tm_year) + 1900,
        month: field(tm.tm_mon) + 1,
        day: field(tm.tm_mday),
        hour: field(tm.tm_hour),
        minute: field(tm.tm_min),
        second: field(tm.tm_sec),
        weekday: field(tm.tm_wday),
        yearday: field(tm.tm_yday),
        #[allow(clippy::useless_conversion)] // c_long is i32 on 32-bit targets
        utc_offset: i64::from(tm.tm_gmtoff),
        zone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: &str, watched: &str, name: &str, mask: u32) -> String {
        let view =
            EventView { watched: watched.as_bytes(), name: name.as_bytes(), mask, cookie: 7 };
        let mut out = Vec::new();
        EventFormat::parse(format).render(&view, &|out| out.extend_from_slice(b"TIME"), &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn names_come_in_inotifywait_order() {
        assert_eq!(event_names(IN_CLOSE_WRITE, ','), "CLOSE_WRITE,CLOSE");
        assert_eq!(event_names(IN_CREATE | IN_ISDIR, ','), "CREATE,ISDIR");
        assert_eq!(event_names(IN_CLOSE_NOWRITE | IN_ISDIR, ':'), "CLOSE_NOWRITE:CLOSE:ISDIR");
        assert_eq!(event_names(IN_MOVED_FROM, ','), "MOVED_FROM");
    }

    #[test]
    fn conversions_render_as_inotifywait_does() {
        assert_eq!(line(DEFAULT_FORMAT, "/m/", "a", IN_MOVED_TO), "/m/ MOVED_TO a");
        assert_eq!(line(DEFAULT_FORMAT, "/m/f", "", IN_MODIFY), "/m/f MODIFY ");
        assert_eq!(line("A%wB%fC%eD", "w/", "f", IN_CREATE), "Aw/BfCCREATED");
        assert_eq!(line("%:e|% e", "", "", IN_CLOSE_WRITE), "CLOSE_WRITE:CLOSE|CLOSE_WRITE CLOSE");
        assert_eq!(line("%x %c %% end%", "", "", 0), "%x 7 % end%");
        assert_eq!(line("%T|%0|%n", "", "", 0), "TIME|\0|\n");
        assert_eq!(line("%we", "w/", "", IN_CREATE), "w/e");
        assert!(EventFormat::parse("%w %T").uses_time() && !EventFormat::parse("%%T").uses_time());
    }

    #[test]
    fn time_conversions_follow_strftime() {
        let t = LocalTime {
            epoch: 1_796_340_056,
            year: 2026,
            month: 12,
            day: 3,
            hour: 23,
            minute: 20,
            second: 56,
            weekday: 4,
            yearday: 336,
            utc_offset: -(5 * 3600 + 30 * 60),
            zone: "XYZ".into(),
        };
        let mut out = String::new();
        format_time(
            "%Y-%m-%d %H:%M:%S %s %j %a %b %e %% %Z %z %y %I %p %q %F %T %u %",
            &t,
            &mut out,
        );
        assert_eq!(
            out,
            "2026-12-03 23:20:56 1796340056 337 Thu Dec  3 % XYZ -0530 26 11 PM %q 2026-12-03 23:20:56 4 %"
        );
    }

    #[test]
    fn the_c_library_breaks_down_the_time() {
        let t = local_time(86_400 * 365 + 12 * 3600);
        assert!(t.year == 1971 && t.month == 1 && matches!(t.day, 1 | 2), "{t:?}");
    }
}
