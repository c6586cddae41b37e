//! One line of a feed (`fakenotify-ctl feed`'s output, version 1), parsed strictly: a feed is
//! untrusted input, so this accepts one flat JSON object of known keys and nothing else, and
//! gives paths back absolute and normalised, without `..`, NUL or empty names. No I/O; fuzzed
//! (`fuzz/fuzz_targets/feed_line.rs`). The writer is `fakenotify_ctl::feed`.

use std::fmt;

/// The longest line taken, newline excluded; a longer one is a bad line (and the reader skips
/// to its end without keeping it).
pub const MAX_LINE: usize = 4096;

/// The version this daemon reads.
pub const VERSION: u64 = 1;

/// What a line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedLine {
    /// Something changed in `dir`; `name` when the feed knew which name alone.
    Change { dir: String, name: Option<String> },
    /// The feed is alive; its count.
    Heartbeat(u64),
    /// Changes under `root` may have been missed.
    Overflow { root: String },
}

/// Why a line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    TooLong,
    NotUtf8,
    /// Not the JSON subset: what was expected, and the byte offset.
    Syntax {
        expected: &'static str,
        at: usize,
    },
    UnknownKey,
    DuplicateKey,
    /// `"v"` missing or not 1.
    Version,
    /// Not exactly one of `dir`, `heartbeat`, `overflow`, or `name` without `dir`.
    Kind,
    /// A path that is not absolute, or holds `..` or NUL.
    BadPath,
    /// A name that is empty, `.`, `..`, or holds `/` or NUL.
    BadName,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong => write!(f, "longer than {MAX_LINE} bytes"),
            LineError::NotUtf8 => f.write_str("not UTF-8"),
            LineError::Syntax { expected, at } => write!(f, "expected {expected} at byte {at}"),
            LineError::UnknownKey => f.write_str("unknown key"),
            LineError::DuplicateKey => f.write_str("a key twice"),
            LineError::Version => write!(f, "no \"v\":{VERSION}"),
            LineError::Kind => f.write_str("not one of dir, heartbeat, overflow"),
            LineError::BadPath => f.write_str("path not absolute, or with '..' or NUL"),
            LineError::BadName => f.write_str("name empty, '.', '..', or with '/' or NUL"),
        }
    }
}

/// A value in the subset: a string or an unsigned integer.
enum Value {
    Str(String),
    Num(u64),
}

/// Parses one line (without its newline; one trailing `\r` is allowed).
pub fn parse(line: &[u8]) -> Result<FeedLine, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let mut cursor = Cursor { bytes: text.as_bytes(), at: 0 };
    let mut v = None;
    let mut dir = None;
    let mut name = None;
    let mut heartbeat = None;
    let mut overflow = None;
    cursor.skip_space();
    cursor.expect(b'{', "'{'")?;
    cursor.skip_space();
    if !cursor.eat(b'}') {
        loop {
            cursor.skip_space();
            let key = cursor.string()?;
            cursor.skip_space();
            cursor.expect(b':', "':'")?;
            cursor.skip_space();
            let value = cursor.value()?;
            let slot_taken = match (key.as_str(), value) {
                ("v", Value::Num(n)) => v.replace(n).is_some(),
                ("heartbeat", Value::Num(n)) => heartbeat.replace(n).is_some(),
                ("dir", Value::Str(s)) => dir.replace(s).is_some(),
                ("name", Value::Str(s)) => name.replace(s).is_some(),
                ("overflow", Value::Str(s)) => overflow.replace(s).is_some(),
                ("v" | "heartbeat" | "dir" | "name" | "overflow", _) => {
                    return Err(LineError::Kind)
                }
                _ => return Err(LineError::UnknownKey),
            };
            if slot_taken {
                return Err(LineError::DuplicateKey);
            }
            cursor.skip_space();
            if cursor.eat(b'}') {
                break;
            }
            cursor.expect(b',', "',' or '}'")?;
        }
    }
    cursor.skip_space();
    if cursor.at != cursor.bytes.len() {
        return Err(LineError::Syntax { expected: "the end of the line", at: cursor.at });
    }
    if v != Some(VERSION) {
        return Err(LineError::Version);
    }
    match (dir, name, heartbeat, overflow) {
        (Some(dir), name, None, None) => {
            let dir = normal_path(&dir)?;
            let name = match name {
                Some(name) if valid_name(&name) => Some(name),
                Some(_) => return Err(LineError::BadName),
                None => None,
            };
            Ok(FeedLine::Change { dir, name })
        }
        (None, None, Some(n), None) => Ok(FeedLine::Heartbeat(n)),
        (None, None, None, Some(root)) => Ok(FeedLine::Overflow { root: normal_path(&root)? }),
        _ => Err(LineError::Kind),
    }
}

/// `path` absolute, without `.` components or doubled and trailing slashes; `..` and NUL
/// are refused rather than resolved.
pub fn normal_path(path: &str) -> Result<String, LineError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(LineError::BadPath);
    }
    let mut out = String::with_capacity(path.len());
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(LineError::BadPath),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), LineError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(LineError::Syntax { expected: what, at: self.at })
        }
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<Value, LineError> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'0'..=b'9') => self.number().map(Value::Num),
            _ => {
                Err(LineError::Syntax { expected: "a string or an unsigned integer", at: self.at })
            }
        }
    }

    /// An unsigned integer without sign, fraction, exponent or leading zero, within u64.
    fn number(&mut self) -> Result<u64, LineError> {
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            if self.at > start && self.bytes[start] == b'0' {
                return Err(LineError::Syntax { expected: "no leading zero", at: start });
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(digit - b'0')))
                .ok_or(LineError::Syntax { expected: "a number within 64 bits", at: start })?;
            self.at += 1;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(LineError::Syntax { expected: "an integer", at: self.at });
        }
        Ok(n)
    }

    /// A JSON string: escapes `\" \\ \/ \b \f \n \r \t \uXXXX` (surrogate pairs joined), no
    /// raw control characters.
    fn string(&mut self) -> Result<String, LineError> {
        self.expect(b'"', "'\"'")?;
        let mut out = String::new();
        loop {
            let start = self.at;
            // Runs of plain bytes are copied at once; the input is UTF-8 already.
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // The run ends at an ASCII byte or the end, both boundaries of a UTF-8 sequence.
            out.push_str(
                std::str::from_utf8(&self.bytes[start..self.at])
                    .map_err(|_| LineError::Syntax { expected: "UTF-8", at: start })?,
            );
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self.at;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 1;
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err(LineError::Syntax {
                                        expected: "a low surrogate",
                                        at: self.at,
                                    });
                                }
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(LineError::Syntax {
                                        expected: "a low surrogate",
                                        at: self.at,
                                    });
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            out.push(char::from_u32(code).ok_or(LineError::Syntax {
                                expected: "a Unicode scalar value",
                                at: escape,
                            })?);
                            continue;
                        }
                        _ => return Err(LineError::Syntax { expected: "an escape", at: escape }),
                    };
                    self.at += 1;
                    out.push(c);
                }
                _ => return Err(LineError::Syntax { expected: "'\"'", at: self.at }),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, LineError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or(LineError::Syntax { expected: "four hex digits", at: self.at })?;
        self.at += 4;
        Ok(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(dir: &str, name: Option<&str>) -> FeedLine {
        FeedLine::Change { dir: dir.into(), name: name.map(Into::into) }
    }

    #[test]
    fn reads_the_three_kinds_of_line() {
        assert_eq!(
            parse(br#"{"v":1,"dir":"/volume1/media/tv","name":"x.mkv"}"#),
            Ok(change("/volume1/media/tv", Some("x.mkv")))
        );
        assert_eq!(parse(br#"{"v":1,"dir":"/a"}"#), Ok(change("/a", None)));
        assert_eq!(parse(br#"{"v":1,"heartbeat":42}"#), Ok(FeedLine::Heartbeat(42)));
        assert_eq!(
            parse(br#"{"v":1,"overflow":"/volume1"}"#),
            Ok(FeedLine::Overflow { root: "/volume1".into() })
        );
        // Key order and spaces are free; a CR before the newline is allowed.
        assert_eq!(
            parse(b"  { \"name\" : \"n\" , \"dir\":\"/d\",\t\"v\": 1 } \r"),
            Ok(change("/d", Some("n")))
        );
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            parse(br#"{"v":1,"dir":"/a\"b\\c\/d\u00e9\ud83d\ude00","name":"\n"}"#),
            Ok(change("/a\"b\\c/dé😀", Some("\n")))
        );
    }

    #[test]
    fn normalises_paths_and_refuses_dot_dot() {
        assert_eq!(parse(br#"{"v":1,"dir":"//a/./b//"}"#), Ok(change("/a/b", None)));
        assert_eq!(parse(br#"{"v":1,"dir":"/"}"#), Ok(change("/", None)));
        for bad in [
            &br#"{"v":1,"dir":"/a/../etc"}"#[..],
            br#"{"v":1,"dir":".."}"#,
            br#"{"v":1,"dir":"a/b"}"#,
            br#"{"v":1,"dir":""}"#,
            br#"{"v":1,"dir":"/a\u0000b"}"#,
            br#"{"v":1,"overflow":"rel"}"#,
        ] {
            assert_eq!(parse(bad), Err(LineError::BadPath), "{}", String::from_utf8_lossy(bad));
        }
        for bad in ["", ".", "..", "a/b", "a\\u0000"] {
            let line = format!(r#"{{"v":1,"dir":"/d","name":"{bad}"}}"#);
            assert_eq!(parse(line.as_bytes()), Err(LineError::BadName), "{line}");
        }
    }

    #[test]
    fn rejects_what_is_outside_the_subset() {
        let cases: &[(&[u8], LineError)] = &[
            (br#"{"v":2,"dir":"/a"}"#, LineError::Version),
            (br#"{"dir":"/a"}"#, LineError::Version),
            (br#"{"v":1}"#, LineError::Kind),
            (br#"{"v":1,"name":"x"}"#, LineError::Kind),
            (br#"{"v":1,"dir":"/a","heartbeat":1}"#, LineError::Kind),
            (br#"{"v":1,"dir":5}"#, LineError::Kind),
            (br#"{"v":"1","dir":"/a"}"#, LineError::Kind),
            (br#"{"v":1,"dir":"/a","x":1}"#, LineError::UnknownKey),
            (br#"{"v":1,"v":1,"dir":"/a"}"#, LineError::DuplicateKey),
            (b"\xff", LineError::NotUtf8),
        ];
        for (line, error) in cases {
            assert_eq!(parse(line), Err(*error), "{}", String::from_utf8_lossy(line));
        }
        for line in [
            &br#"{"v":1,"dir":"/a"} x"#[..],
            br#"{"v":1,"dir":"/a""#,
            br#"{"v":1,"dir":"/a",}"#,
            br#"{"v":01,"dir":"/a"}"#,
            br#"{"v":1.0,"dir":"/a"}"#,
            br#"{"v":-1,"dir":"/a"}"#,
            br#"{"v":1,"heartbeat":99999999999999999999}"#,
            br#"{"v":1,"dir":"/a	b"}"#,
            br#"{"v":1,"dir":"/a\x"}"#,
            br#"{"v":1,"dir":"/a\ud800"}"#,
            br#"{"v":1,"dir":"/a\udc00"}"#,
            br#"{'v':1}"#,
            br#"[1]"#,
            b"",
            br#"{"v":1,"dir":{"a":1}}"#,
            br#"{"v":true}"#,
            br#"{"v":null}"#,
        ] {
            assert!(
                matches!(parse(line), Err(LineError::Syntax { .. })),
                "{} gave {:?}",
                String::from_utf8_lossy(line),
                parse(line)
            );
        }
    }

    #[test]
    fn bounds_the_length() {
        let long = format!(r#"{{"v":1,"dir":"/{}"}}"#, "a".repeat(MAX_LINE));
        assert_eq!(parse(long.as_bytes()), Err(LineError::TooLong));
        let fits = format!(r#"{{"v":1,"dir":"/{}"}}"#, "a".repeat(MAX_LINE - 20));
        assert!(parse(fits.as_bytes()).is_ok());
    }

    #[test]
    fn round_trips_what_the_feed_writes() {
        for name in ["plain", "quo\"te", "back\\slash", "tab\there", "ctl\u{1}x", "é 😀"] {
            let mut line = String::from(r#"{"v":1,"dir":"/d","name":"#);
            fakenotify_ctl::feed::push_json_string(&mut line, name);
            line.push('}');
            assert_eq!(parse(line.as_bytes()), Ok(change("/d", Some(name))), "{line}");
        }
    }
}
