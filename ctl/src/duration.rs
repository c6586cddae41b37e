//! Durations as people write them in the configuration and on the command line: `500ms`, `5s`,
//! `2m`, `1h`, `1.5s`, `1m30s`, `2 hours`. The unit is required, so a bare `5` is never silently taken as seconds
//! or milliseconds. Parsing is exact integer arithmetic down to the nanosecond (no float
//! rounding), and `format_duration` writes text that parses back to the same value.

use std::fmt;
use std::time::Duration;

const NANOS_PER_MS: u128 = 1_000_000;
const NANOS_PER_S: u128 = 1_000_000_000;
const NANOS_PER_M: u128 = 60 * NANOS_PER_S;
const NANOS_PER_H: u128 = 60 * NANOS_PER_M;

/// The units, largest first: `format_duration` picks the largest one that fits exactly.
const UNITS: [(&str, u128); 4] =
    [("h", NANOS_PER_H), ("m", NANOS_PER_M), ("s", NANOS_PER_S), ("ms", NANOS_PER_MS)];

/// Fractional digits taken into account: beyond 18, a digit is worth less than a nanosecond
/// even in hours, and 10^18 times an hour in nanoseconds still fits in a `u128`.
const MAX_FRACTION_DIGITS: u32 = 18;

/// Why a duration was rejected; its `Display` is one line that quotes the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    text: String,
    kind: ErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ErrorKind {
    Empty,
    Negative,
    NotANumber,
    MissingUnit,
    UnknownUnit(String),
    Zero,
    TooLarge,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = &self.text;
        match &self.kind {
            ErrorKind::Empty => {
                write!(f, "empty duration (write a number and a unit, e.g. \"5s\")")
            }
            ErrorKind::Negative => write!(f, "{text:?}: a duration cannot be negative"),
            ErrorKind::NotANumber => {
                write!(f, "{text:?}: expected a number and a unit, e.g. \"5s\" or \"1.5s\"")
            }
            ErrorKind::MissingUnit => {
                write!(f, "{text:?}: missing unit (use ms, s, m, h or d, e.g. \"1m30s\")")
            }
            ErrorKind::UnknownUnit(unit) => {
                write!(f, "{text:?}: unknown unit {unit:?} (use ms, s, m, h or d, e.g. \"1m30s\")")
            }
            ErrorKind::Zero => write!(f, "{text:?}: must be greater than zero"),
            ErrorKind::TooLarge => write!(f, "{text:?}: too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `500ms`, `5s`, `2m`, `1h`, `1.5s`, and as systemd does, a sum of such parts
/// (`1m30s`, `2h 30min`) with its longer unit names (`sec`, `min`, `hour`, `days`...); spaces
/// may separate the parts and each number from its unit.
///
/// Rejected: a bare number (the unit is required), zero, a negative value, an empty string, an
/// unknown unit, and anything beyond `Duration::MAX`. Digits finer than a nanosecond are
/// dropped.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |kind| DurationError { text: text.to_owned(), kind };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(fail(ErrorKind::Empty));
    }
    if rest.starts_with('-') {
        return Err(fail(ErrorKind::Negative));
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let (whole, fraction) = match number.split_once('.') {
            None => (number, ""),
            Some((whole, fraction)) if !fraction.is_empty() && !fraction.contains('.') => {
                (whole, fraction)
            }
            Some(_) => return Err(fail(ErrorKind::NotANumber)),
        };
        if whole.is_empty() {
            return Err(fail(ErrorKind::NotANumber));
        }
        let after = after.trim_start();
        let unit_len = after.find(|c: char| !c.is_alphabetic()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos = match unit {
            "" => return Err(fail(ErrorKind::MissingUnit)),
            unit => {
                unit_nanos(unit).ok_or_else(|| fail(ErrorKind::UnknownUnit(unit.to_owned())))?
            }
        };
        let part =
            to_nanos(whole, fraction, unit_nanos).ok_or_else(|| fail(ErrorKind::TooLarge))?;
        nanos = nanos.checked_add(part).ok_or_else(|| fail(ErrorKind::TooLarge))?;
        rest = after.trim_start();
    }
    if nanos == 0 {
        return Err(fail(ErrorKind::Zero));
    }
    let secs = u64::try_from(nanos / NANOS_PER_S).map_err(|_| fail(ErrorKind::TooLarge))?;
    // The remainder is below one billion, so it fits in a u32.
    let subsec = (nanos % NANOS_PER_S) as u32;
    Ok(Duration::new(secs, subsec))
}

/// A unit's size in nanoseconds, by the names systemd.time(7) accepts (months and years
/// aside: they are no fixed length).
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ms" | "msec" => NANOS_PER_MS,
        "s" | "sec" | "second" | "seconds" => NANOS_PER_S,
        "m" | "min" | "minute" | "minutes" => NANOS_PER_M,
        "h" | "hr" | "hour" | "hours" => NANOS_PER_H,
        "d" | "day" | "days" => 24 * NANOS_PER_H,
        "w" | "week" | "weeks" => 7 * 24 * NANOS_PER_H,
        _ => return None,
    })
}

/// `whole.fraction` units in nanoseconds (both all ASCII digits), or `None` on overflow.
fn to_nanos(whole: &str, fraction: &str, unit_nanos: u128) -> Option<u128> {
    let mut whole_value: u128 = 0;
    for digit in whole.bytes() {
        whole_value = whole_value.checked_mul(10)?.checked_add(u128::from(digit - b'0'))?;
    }
    let mut numerator: u128 = 0;
    let mut scale: u128 = 1;
    for digit in fraction.bytes().take(MAX_FRACTION_DIGITS as usize) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        scale *= 10;
    }
    whole_value.checked_mul(unit_nanos)?.checked_add(numerator * unit_nanos / scale)
}

/// Writes `d` in the largest unit that holds it exactly (`"200ms"`, `"5s"`, `"2m"`, `"1h"`), with
/// decimals only when it is not a whole number of milliseconds (`"1.5ms"`, `"1.000000001s"`).
/// `parse_duration` reads the result back to `d`, except for zero, written `"0s"`, which it
/// rejects.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (name, size) in UNITS {
        let (count, remainder) = (nanos / size, nanos % size);
        if remainder == 0 {
            return format!("{count}{name}");
        }
    }
    let (name, size, digits) =
        if nanos >= NANOS_PER_S { ("s", NANOS_PER_S, 9) } else { ("ms", NANOS_PER_MS, 6) };
    let fraction = format!("{:0digits$}", nanos % size);
    format!("{}.{}{name}", nanos / size, fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h"), Ok(ms(3_600_000)));
    }

    #[test]
    fn accepts_decimals() {
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration("0.5m"), Ok(ms(30_000)));
        assert_eq!(parse_duration("0.25h"), Ok(ms(900_000)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1_500)));
        assert_eq!(parse_duration("2.0s"), Ok(ms(2_000)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn decimals_are_exact_not_floating_point() {
        // 0.1 + 0.2 style errors would show here as 299999999ns.
        assert_eq!(parse_duration("0.3s"), Ok(ms(300)));
        assert_eq!(parse_duration("1.1h"), Ok(Duration::from_secs(3_960)));
        // Digits below a nanosecond are dropped, not rounded up.
        assert_eq!(parse_duration("1.0000000019s"), Ok(Duration::new(1, 1)));
    }

    #[test]
    fn accepts_whitespace_around_and_between() {
        assert_eq!(parse_duration("5 s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("500\tms"), Ok(ms(500)));
        assert_eq!(parse_duration("  2m  "), Ok(ms(120_000)));
    }

    #[test]
    fn rejects_with_one_line_causes() {
        let units = r#"(use ms, s, m, h or d, e.g. "1m30s")"#;
        let cases = [
            ("5x", format!(r#""5x": unknown unit "x" {units}"#)),
            ("5", format!(r#""5": missing unit {units}"#)),
            ("5 ", format!(r#""5 ": missing unit {units}"#)),
            ("1m30", format!(r#""1m30": missing unit {units}"#)),
            ("", r#"empty duration (write a number and a unit, e.g. "5s")"#.to_owned()),
            ("   ", r#"empty duration (write a number and a unit, e.g. "5s")"#.to_owned()),
            ("0s", r#""0s": must be greater than zero"#.to_owned()),
            ("0m0s", r#""0m0s": must be greater than zero"#.to_owned()),
            ("0.0ms", r#""0.0ms": must be greater than zero"#.to_owned()),
            ("0.0000000001s", r#""0.0000000001s": must be greater than zero"#.to_owned()),
            ("-5s", r#""-5s": a duration cannot be negative"#.to_owned()),
            ("s", r#""s": expected a number and a unit, e.g. "5s" or "1.5s""#.to_owned()),
            ("+5s", r#""+5s": expected a number and a unit, e.g. "5s" or "1.5s""#.to_owned()),
            (".5s", r#"".5s": expected a number and a unit, e.g. "5s" or "1.5s""#.to_owned()),
            ("5.s", r#""5.s": expected a number and a unit, e.g. "5s" or "1.5s""#.to_owned()),
            ("1.2.3s", r#""1.2.3s": expected a number and a unit, e.g. "5s" or "1.5s""#.to_owned()),
            ("1m-30s", r#""1m-30s": expected a number and a unit, e.g. "5s" or "1.5s""#.to_owned()),
            ("5S", format!(r#""5S": unknown unit "S" {units}"#)),
            ("5secs", format!(r#""5secs": unknown unit "secs" {units}"#)),
            ("1mo", format!(r#""1mo": unknown unit "mo" {units}"#)),
            ("5µs", format!(r#""5µs": unknown unit "µs" {units}"#)),
        ];
        for (text, expected) in cases {
            let message = parse_duration(text).expect_err(text).to_string();
            assert_eq!(message, expected, "for {text:?}");
        }
        // Whatever the input, the message stays on one line.
        let message = parse_duration("5\nx").expect_err("newline").to_string();
        assert_eq!(message, format!(r#""5\nx": unknown unit "x" {units}"#));
    }

    #[test]
    fn accepts_sums_and_systemd_unit_names() {
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("1min"), Ok(ms(60_000)));
        assert_eq!(parse_duration("2h 30min"), Ok(ms(9_000_000)));
        assert_eq!(parse_duration("1 hour 1 sec 5 msec"), Ok(ms(3_601_005)));
        assert_eq!(parse_duration("1.5min"), Ok(ms(90_000)));
        assert_eq!(parse_duration("2 seconds"), Ok(ms(2_000)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("5sec"), Ok(ms(5_000)));
    }

    #[test]
    fn rejects_overflow() {
        let too_large =
            |text: &str| parse_duration(text).expect_err(text).to_string().ends_with("too large");
        assert!(too_large("18446744073709551616s"));
        assert!(too_large("99999999999999999999999999999999999999999h"));
        assert!(too_large("5124095576030432h"));
        assert_eq!(parse_duration("18446744073709551615s"), Ok(Duration::from_secs(u64::MAX)));
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        assert_eq!(format_duration(ms(200)), "200ms");
        assert_eq!(format_duration(ms(5_000)), "5s");
        assert_eq!(format_duration(ms(120_000)), "2m");
        assert_eq!(format_duration(ms(90_000)), "90s");
        assert_eq!(format_duration(ms(7_200_000)), "2h");
        assert_eq!(format_duration(ms(1_500)), "1500ms");
        assert_eq!(format_duration(Duration::from_micros(1_500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_nanos(1)), "0.000001ms");
        assert_eq!(format_duration(Duration::new(1, 1)), "1.000000001s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn format_round_trips() {
        let samples = [
            Duration::from_nanos(1),
            Duration::from_nanos(999_999),
            Duration::from_micros(1),
            Duration::from_micros(1_500),
            ms(1),
            ms(200),
            ms(999),
            ms(1_500),
            Duration::from_secs(5),
            Duration::from_secs(59),
            Duration::from_secs(61),
            Duration::from_secs(120),
            Duration::from_secs(3_600),
            Duration::from_secs(86_400 * 365),
            Duration::new(1, 1),
            Duration::new(12_345, 678_901_234),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ];
        for d in samples {
            let text = format_duration(d);
            assert_eq!(parse_duration(&text), Ok(d), "{d:?} formatted as {text:?}");
        }
    }
}
