//! Any configuration text: it parses or gives one line naming the cause, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../daemon/src/config.rs"]
mod config;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(error) = config::Config::parse(text) {
            assert!(!error.to_string().contains('\n'), "error on one line: {error}");
        }
    }
});
