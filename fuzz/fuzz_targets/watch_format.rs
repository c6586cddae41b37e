//! `watch`'s text parsers: any `--exclude`/`--include` pattern compiles or is refused, and a
//! compiled one matches any path without panicking; any `--format` and `--timefmt` renders.
//! Input: the pattern or format text, a NUL, then a haystack.
#![no_main]

use fakenotify_ctl::event_format::{format_time, EventFormat, EventView, LocalTime};
use fakenotify_ctl::pattern::Pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, haystack) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &b"/mnt/nas/tv/show.mkv"[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else { return };
    for icase in [false, true] {
        if let Ok(pattern) = Pattern::new(text, icase) {
            let _ = pattern.is_match(haystack);
        }
    }
    let view = EventView { watched: haystack, name: b"name", mask: u32::MAX, cookie: 1 };
    let mut out = Vec::new();
    EventFormat::parse(text).render(&view, &|out| out.extend_from_slice(b"T"), &mut out);
    let mut time = String::new();
    format_time(text, &LocalTime { year: -5, month: 13, weekday: 9, ..Default::default() }, &mut time);
});
