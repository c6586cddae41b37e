//! inotify mask names, as the C test client and inotifywait print them.

use fakenotify_proto::inotify::*;

/// Every single-bit name a reader can see in an event mask, in inotify(7)'s order.
pub const EVENT_NAMES: &[(&str, u32)] = &[
    ("IN_ACCESS", IN_ACCESS),
    ("IN_MODIFY", IN_MODIFY),
    ("IN_ATTRIB", IN_ATTRIB),
    ("IN_CLOSE_WRITE", IN_CLOSE_WRITE),
    ("IN_CLOSE_NOWRITE", IN_CLOSE_NOWRITE),
    ("IN_OPEN", IN_OPEN),
    ("IN_MOVED_FROM", IN_MOVED_FROM),
    ("IN_MOVED_TO", IN_MOVED_TO),
    ("IN_CREATE", IN_CREATE),
    ("IN_DELETE", IN_DELETE),
    ("IN_DELETE_SELF", IN_DELETE_SELF),
    ("IN_MOVE_SELF", IN_MOVE_SELF),
    ("IN_UNMOUNT", IN_UNMOUNT),
    ("IN_Q_OVERFLOW", IN_Q_OVERFLOW),
    ("IN_IGNORED", IN_IGNORED),
    ("IN_ISDIR", IN_ISDIR),
];

/// Parses names joined by `|` or `,`, with or without the `IN_` prefix (`CREATE,ISDIR`,
/// `IN_CREATE|IN_ISDIR`). inotifywait adds the aliases `CLOSE` and `MOVE` beside the precise
/// bit (`CLOSE_WRITE,CLOSE`), so they add nothing. Hex numbers (`0x8000`) pass through. `None`
/// if a name is unknown.
pub fn mask_from_names(text: &str) -> Option<u32> {
    let mut mask = 0;
    for token in text.split(['|', ',']).filter(|t| !t.is_empty()) {
        let name = token.strip_prefix("IN_").unwrap_or(token);
        mask |= match name {
            "CLOSE" | "MOVE" => 0,
            _ => match EVENT_NAMES.iter().find(|(n, _)| &n[3..] == name) {
                Some(&(_, bit)) => bit,
                None => u32::from_str_radix(token.strip_prefix("0x")?, 16).ok()?,
            },
        };
    }
    Some(mask)
}

/// `IN_CREATE|IN_ISDIR` for a mask, for messages.
pub fn mask_names(mask: u32) -> String {
    let mut names: Vec<String> =
        EVENT_NAMES.iter().filter(|(_, bit)| mask & bit != 0).map(|(n, _)| n.to_string()).collect();
    let known = EVENT_NAMES.iter().fold(0, |acc, (_, bit)| acc | bit);
    if mask & !known != 0 || names.is_empty() {
        names.push(format!("{:#x}", mask & !known));
    }
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(mask_from_names("IN_CREATE|IN_ISDIR"), Some(IN_CREATE | IN_ISDIR));
        assert_eq!(mask_from_names("CREATE,ISDIR"), Some(IN_CREATE | IN_ISDIR));
        assert_eq!(mask_from_names("CLOSE_WRITE,CLOSE"), Some(IN_CLOSE_WRITE));
        assert_eq!(mask_from_names("IN_Q_OVERFLOW"), Some(IN_Q_OVERFLOW));
        assert_eq!(mask_from_names("0x10000"), Some(0x10000));
        assert_eq!(mask_from_names("BOGUS"), None);
        assert_eq!(mask_names(IN_MOVED_TO | IN_ISDIR), "IN_MOVED_TO|IN_ISDIR");
        assert_eq!(mask_names(0), "0x0");
    }
}
