//! Any duration text: parse or refuse; what parses formats back to the same duration.
#![no_main]

use fakenotify_ctl::duration::{format_duration, parse_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = parse_duration(text) {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
});
