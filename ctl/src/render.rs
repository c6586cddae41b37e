//! Text and JSON renderings of status, policy lists and events. The JSON field names are a
//! stable interface for scripts (documented in the README); the text is for people, and prints
//! names and paths with control characters escaped ([`escape`]): a file name is anyone's to
//! choose, and must not drive the terminal.

use fakenotify_proto::inotify::*;
use nanoserde::SerJson;

use crate::duration::format_duration;
use crate::message::{PolicyInfo, Status};
use crate::watcher::WatchEvent;

const MASK_NAMES: &[(u32, &str)] = &[
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
    (IN_MOVE_SELF, "MOVE_SELF"),
    (IN_UNMOUNT, "UNMOUNT"),
    (IN_Q_OVERFLOW, "Q_OVERFLOW"),
    (IN_IGNORED, "IGNORED"),
    (IN_ISDIR, "ISDIR"),
];

/// `text` with control characters (C0, DEL, C1) and backslashes escaped as `\xNN` and `\\`,
/// so a name or path prints as one inert line.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                for unit in c.to_string().bytes() {
                    out.push_str(&format!("\\x{unit:02x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Like [`escape`], for bytes that may not be UTF-8 (invalid bytes print as `\xNN` too).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

/// The names of the bits set in an event mask, as inotifywait prints them.
pub fn mask_names(mask: u32) -> Vec<&'static str> {
    MASK_NAMES.iter().filter(|(bit, _)| mask & bit != 0).map(|(_, name)| *name).collect()
}

/// Parses `create,modify,...` (inotifywait's event names, any case) into a mask.
pub fn parse_events(list: &str) -> Result<u32, String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).try_fold(0u32, |mask, word| {
        let upper = word.to_ascii_uppercase();
        let bit = match upper.as_str() {
            "ALL" | "ALL_EVENTS" => IN_ALL_EVENTS,
            "MOVE" => IN_MOVE,
            "CLOSE" => IN_CLOSE,
            _ => MASK_NAMES
                .iter()
                .find(|(_, name)| *name == upper)
                .map(|(bit, _)| *bit)
                .filter(|bit| bit & IN_ALL_EVENTS != 0)
                .ok_or_else(|| format!("unknown event '{word}' (use create, delete, modify, attrib, close_write, moved_from, moved_to, move, delete_self, all)"))?,
        };
        Ok(mask | bit)
    })
}

#[derive(SerJson)]
struct EventJson {
    path: String,
    wd: i32,
    events: Vec<String>,
    mask: u32,
    cookie: u32,
    name: String,
}

/// One line per event: `PATH/ EVENTS name` like `inotifywait -m`, the cookie after renames.
pub fn event_text(event: &WatchEvent) -> String {
    let path = escape_bytes(std::os::unix::ffi::OsStrExt::as_bytes(event.path.as_os_str()));
    let mut line = format!("{path}/ {}", mask_names(event.mask).join(","));
    if !event.name.is_empty() {
        line.push(' ');
        line.push_str(&escape_bytes(&event.name));
    }
    if event.cookie != 0 {
        line.push_str(&format!(" (cookie {})", event.cookie));
    }
    line
}

pub fn event_json(event: &WatchEvent) -> String {
    json_text(
        EventJson {
            path: event.path.display().to_string(),
            wd: event.wd,
            events: mask_names(event.mask).into_iter().map(String::from).collect(),
            mask: event.mask,
            cookie: event.cookie,
            name: String::from_utf8_lossy(&event.name).into_owned(),
        }
        .serialize_json(),
    )
}

/// Bytes in the largest binary unit that keeps a whole number above 0.
fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    match bytes {
        b if b >= KIB * KIB && b % (KIB * KIB) == 0 => format!("{}MiB", b / (KIB * KIB)),
        b if b >= 10 * KIB * KIB => format!("{:.1}MiB", b as f64 / (KIB * KIB) as f64),
        b if b >= KIB => format!("{}KiB", b / KIB),
        b => format!("{b}B"),
    }
}

fn interval(ms: u64) -> String {
    format_duration(std::time::Duration::from_millis(ms))
}

fn micros(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1}s", us as f64 / 1e6)
    } else if us >= 10_000 {
        format!("{}ms", us / 1000)
    } else {
        format!("{us}us")
    }
}

pub fn policies_text(policies: &[PolicyInfo]) -> String {
    let mut out = format!(
        "{:<40} {:>9} {:>9} {:>7} {:>10} {:>10} {:>7}\n",
        "PATH", "INTERVAL", "RECURSIVE", "MODE", "ATTR_CACHE", "LISTING", "OBJECTS"
    );
    for p in policies {
        let path = if p.found { escape(&p.path) } else { format!("{} (missing)", escape(&p.path)) };
        out.push_str(&format!(
            "{:<40} {:>9} {:>9} {:>7} {:>10} {:>10} {:>7}\n",
            path,
            interval(p.interval_ms),
            if p.recursive { "yes" } else { "no" },
            p.mode,
            p.attr_cache,
            p.listing,
            p.objects
        ));
    }
    out
}

pub fn policies_json(policies: &[PolicyInfo]) -> String {
    json_text(policies.to_vec().serialize_json())
}

/// JSON as nanoserde writes it, with the C1 control characters (U+0080 to U+009F, which some
/// terminals obey as escapes) written `\u00XX` too; nanoserde escapes only the ASCII ones.
/// They can only stand inside strings, where the escape means the same character.
pub fn json_text(json: String) -> String {
    if !json.chars().any(|c| c.is_control() && !c.is_ascii()) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if c.is_control() && !c.is_ascii() {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

pub fn status_text(s: &Status) -> String {
    let up = std::time::Duration::from_secs(s.uptime_ms / 1000);
    let mut out = format!(
        "fakenotifyd {} (pid {}), up {}, socket {}\n",
        s.version,
        s.pid,
        format_duration(up.max(std::time::Duration::from_secs(1))),
        escape(&s.socket)
    );
    out.push_str(&format!(
        "instances: {}  watches: {}  objects: {} polled, {} kernel\n",
        s.instances_total, s.watches, s.objects_polled, s.objects_kernel
    ));
    out.push_str(&format!(
        "events delivered: {}  overflows: {}  polls: {}  syscalls: {} statx, {} getdents64\n",
        s.events_delivered, s.overflows, s.polls, s.syscalls_statx, s.syscalls_getdents
    ));
    out.push_str(&format!(
        "\n{:<40} {:>9} {:>7} {:>7} {:>8} {:>9} {:>9}\n",
        "POLICY", "INTERVAL", "MODE", "OBJECTS", "POLLS", "LAST", "WORST"
    ));
    for p in &s.policies {
        out.push_str(&format!(
            "{:<40} {:>9} {:>7} {:>7} {:>8} {:>9} {:>9}\n",
            escape(&p.path),
            interval(p.interval_ms),
            p.mode,
            p.objects,
            p.polls,
            micros(p.last_poll_us),
            micros(p.worst_poll_us)
        ));
    }
    out.push_str(&format!(
        "\n{:<40} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8} {:>10}\n",
        "POLICY", "POLLING", "STATX", "GETDENTS", "COMPARED", "EVENTS", "MAX_OPS", "NEEDS"
    ));
    for p in &s.policies {
        out.push_str(&format!(
            "{:<40} {:>9} {:>9} {:>10} {:>10} {:>8} {:>8} {:>8}/s\n",
            escape(&p.path),
            micros(p.poll_time_us),
            p.syscalls_statx,
            p.syscalls_getdents,
            p.entries_compared,
            p.events,
            p.max_ops,
            p.demand_ops
        ));
        if p.stretched {
            out.push_str(&format!(
                "  over budget: intervals stretched to {} ({} polls held back)\n",
                interval(p.effective_interval_ms),
                p.held_polls
            ));
        }
        if p.backed_off > 0 {
            out.push_str(&format!(
                "  idle backoff: {} objects polled less often (up to {})\n",
                p.backed_off,
                interval(p.max_poll_interval_ms)
            ));
        }
    }
    if !s.mounts.is_empty() {
        out.push_str(&format!(
            "\n{:<32} {:<14} {:>10} {:>10} {:>7}  WHY\n",
            "MOUNT", "TYPE", "LISTING", "ATTR_CACHE", "OBJECTS"
        ));
        for m in &s.mounts {
            let place = if m.mount_point.is_empty() {
                format!("(device {})", escape(&m.device))
            } else {
                escape(&m.mount_point)
            };
            out.push_str(&format!(
                "{:<32} {:<14} {:>10} {:>10} {:>7}  {}\n",
                place,
                escape(&m.fs_type),
                m.listing,
                m.attr_cache,
                m.objects,
                escape(&m.reason)
            ));
        }
    }
    if !s.instances.is_empty() {
        out.push_str(&format!(
            "\n{:>8} {:>6} {:>8} {:>7} {:>10} {:>9}\n",
            "PID", "UID", "WATCHES", "QUEUED", "DELIVERED", "OVERFLOWS"
        ));
        for i in &s.instances {
            out.push_str(&format!(
                "{:>8} {:>6} {:>8} {:>7} {:>10} {:>9}\n",
                i.pid, i.uid, i.watches, i.queued, i.delivered, i.overflows
            ));
        }
    }
    if !s.users.is_empty() {
        let b = &s.budgets;
        let who = if s.all_users { "per uid" } else { "yours (other uids are not shown)" };
        out.push_str(&format!(
            "\nuse {who}, against the budgets per uid; all queues {} of {}\n",
            size(b.queued_bytes),
            size(b.max_queued_bytes)
        ));
        out.push_str(&format!(
            "{:>6} {:>9} {:>13} {:>13} {:>17} {:>15} {:>19}\n",
            "UID", "INSTANCES", "WATCHES", "POLLED", "ENTRIES", "FDS", "QUEUED"
        ));
        for u in &s.users {
            out.push_str(&format!(
                "{:>6} {:>9} {:>13} {:>13} {:>17} {:>15} {:>19}\n",
                u.uid,
                format!("{}/{}", u.instances, b.max_user_instances),
                format!("{}/{}", u.watches, b.max_user_watches),
                format!("{}/{}", u.polled, b.max_user_polled),
                format!("{}/{}", u.entries, b.max_user_entries),
                format!("{}/{}", u.fds, b.max_user_fds),
                format!("{}/{}", size(u.queued_bytes), size(b.max_user_queued_bytes)),
            ));
        }
    }
    if !s.slow_scans.is_empty() {
        out.push_str("\nslow or hung mounts (work waiting on them):\n");
        for scan in &s.slow_scans {
            let since = format_duration(std::time::Duration::from_millis(scan.running_ms.max(1)));
            let (device, path, job) = (escape(&scan.device), escape(&scan.path), escape(&scan.job));
            let more = match scan.waiting {
                0 | 1 => String::new(),
                n => format!(" ({n} jobs waiting)"),
            };
            out.push_str(&format!("  device {device}: {job} {path} for {since}{more}\n"));
        }
    }
    if !s.feeds.is_empty() {
        out.push_str(&format!(
            "\n{:<28} {:<9} {:>8} {:>8} {:>6} {:>9} {:>7} {:>7}  COMMAND\n",
            "FEED (LOCAL)", "STATE", "PID", "LINES", "BAD", "HEARTBEAT", "POLLS", "LONG"
        ));
        for f in &s.feeds {
            let state = if f.healthy { format!("{}+", f.state) } else { f.state.clone() };
            let pid = if f.pid == 0 { "-".to_owned() } else { f.pid.to_string() };
            let beat = match f.last_heartbeat_ms {
                Some(ms) => format!("{}s ago", ms / 1000),
                None => "never".to_owned(),
            };
            out.push_str(&format!(
                "{:<28} {:<9} {:>8} {:>8} {:>6} {:>9} {:>7} {:>7}  {}\n",
                escape(&f.local),
                state,
                pid,
                f.lines,
                f.bad_lines,
                beat,
                f.polls_caused,
                f.long_interval,
                escape(&f.command)
            ));
        }
        for f in s.feeds.iter().filter(|f| !f.long_interval_paths.is_empty()) {
            let shown: Vec<String> =
                f.long_interval_paths.iter().take(3).map(|p| escape(p)).collect();
            let more = f.long_interval.saturating_sub(shown.len() as u64);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            out.push_str(&format!("  long interval: {}{more}\n", shown.join(", ")));
        }
        out.push_str(&format!(
            "  (+: healthy; LONG: objects polled only every safety interval, {})\n",
            s.feeds.iter().map(|f| interval(f.safety_interval_ms)).collect::<Vec<_>>().join(", ")
        ));
    }
    if !s.errors.is_empty() {
        out.push_str("\nerrors:\n");
        for e in &s.errors {
            out.push_str(&format!("  {}: {}\n", escape(&e.kind), e.count));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MountInfo;

    #[test]
    fn masks_name_their_bits() {
        assert_eq!(mask_names(IN_CREATE | IN_ISDIR), ["CREATE", "ISDIR"]);
        assert_eq!(mask_names(IN_IGNORED), ["IGNORED"]);
    }

    #[test]
    fn event_lists_parse_like_inotifywait() {
        assert_eq!(parse_events("create,Delete"), Ok(IN_CREATE | IN_DELETE));
        assert_eq!(parse_events("move"), Ok(IN_MOVE));
        assert_eq!(parse_events("all"), Ok(IN_ALL_EVENTS));
        assert!(parse_events("isdir").is_err(), "a flag is not an event");
        assert!(parse_events("bogus").unwrap_err().contains("bogus"));
    }

    #[test]
    fn status_shows_the_budget_and_the_backoff() {
        let status = Status {
            policies: vec![PolicyInfo {
                path: "/mnt/nas".into(),
                interval_ms: 1000,
                poll_time_us: 12_345_678,
                max_ops: 200,
                demand_ops: 1000,
                stretched: true,
                effective_interval_ms: 5000,
                held_polls: 7,
                backed_off: 3,
                max_poll_interval_ms: 60_000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = status_text(&status);
        assert!(text.contains("12.3s"), "{text}");
        assert!(text.contains("1000/s"), "{text}");
        assert!(text.contains("intervals stretched to 5s (7 polls held back)"), "{text}");
        assert!(text.contains("3 objects polled less often (up to 1m)"), "{text}");
    }

    #[test]
    fn status_shows_how_each_mount_is_listed() {
        let status = Status {
            mounts: vec![MountInfo {
                device: "2b".into(),
                fs_type: "fuse.rclone".into(),
                mount_point: "/mnt/cloud".into(),
                listing: "every-poll".into(),
                reason: "rclone keeps a directory's mtime".into(),
                attr_cache: "bypass".into(),
                objects: 4,
            }],
            ..Default::default()
        };
        let text = status_text(&status);
        let row = text.lines().find(|l| l.starts_with("/mnt/cloud")).expect("a mount row");
        for word in ["fuse.rclone", "every-poll", "bypass", " 4 ", "rclone keeps"] {
            assert!(row.contains(word), "{word} in {row}");
        }
    }

    #[test]
    fn names_and_paths_print_with_control_characters_escaped() {
        assert_eq!(escape("a\x1b[31mred"), "a\\x1b[31mred");
        assert_eq!(escape("tab\there\nline\u{7f}\u{9b}"), "tab\\x09here\\x0aline\\x7f\\xc2\\x9b");
        assert_eq!(escape("back\\slash é"), "back\\\\slash é");
        assert_eq!(escape_bytes(b"bad\xff\x1b"), "bad\\xff\\x1b");
        let e = WatchEvent {
            path: "/mnt/\x1b]0;title\x07".into(),
            wd: 1,
            mask: IN_CREATE,
            cookie: 0,
            name: b"\x1b[2Jx".to_vec(),
        };
        let line = event_text(&e);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert_eq!(line, "/mnt/\\x1b]0;title\\x07/ CREATE \\x1b[2Jx");
        let status = Status {
            slow_scans: vec![crate::message::SlowScan {
                device: "2a".into(),
                path: "/mnt/\x1bevil".into(),
                running_ms: 5000,
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = status_text(&status);
        assert!(text.contains("/mnt/\\x1bevil") && !text.contains('\x1b'), "{text}");
    }

    #[test]
    fn json_escapes_every_control_character() {
        let e = WatchEvent {
            path: "/m".into(),
            wd: 1,
            mask: IN_CREATE,
            cookie: 0,
            name: "a\x1bb\u{9b}c".as_bytes().to_vec(),
        };
        let json = event_json(&e);
        assert!(json.contains(r#""name":"a\u001bb\u009bc""#), "{json}");
        assert!(!json.chars().any(char::is_control), "{json}");
        assert_eq!(json_text("{\"a\":\"é\"}".into()), "{\"a\":\"é\"}");
    }

    #[test]
    fn status_shows_use_per_uid_against_the_budgets() {
        let status = Status {
            all_users: false,
            users: vec![crate::message::UserUse {
                uid: 1000,
                instances: 2,
                watches: 10,
                polled: 3,
                queued_bytes: 2048,
                ..Default::default()
            }],
            budgets: crate::message::Budgets {
                max_user_instances: 128,
                max_user_queued_bytes: 4 << 20,
                max_queued_bytes: 64 << 20,
                ..Default::default()
            },
            ..Default::default()
        };
        let text = status_text(&status);
        assert!(text.contains("yours (other uids are not shown)"), "{text}");
        assert!(text.contains("2KiB/4MiB") && text.contains("2/128"), "{text}");
        assert!(text.contains("all queues 0B of 64MiB"), "{text}");
    }

    #[test]
    fn event_lines() {
        let e = WatchEvent {
            path: "/mnt/m".into(),
            wd: 1,
            mask: IN_MOVED_TO,
            cookie: 9,
            name: b"new".to_vec(),
        };
        assert_eq!(event_text(&e), "/mnt/m/ MOVED_TO new (cookie 9)");
        let json = event_json(&e);
        assert!(
            json.contains("\"events\":[\"MOVED_TO\"]") && json.contains("\"name\":\"new\""),
            "{json}"
        );
    }
}
