//! Any feed line: it parses to an absolute path without `..` or gives an error, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../daemon/src/feed_line.rs"]
mod feed_line;

use feed_line::FeedLine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let check = |path: &str| {
        assert!(path.starts_with('/'), "absolute: {path:?}");
        assert!(!path.split('/').any(|c| c == ".." || c == "."), "normal: {path:?}");
        assert!(!path.contains('\0'), "no NUL: {path:?}");
    };
    match feed_line::parse(data) {
        Ok(FeedLine::Change { dir, name }) => {
            check(&dir);
            if let Some(name) = name {
                assert!(!name.is_empty() && !name.contains('/') && name != "..", "{name:?}");
            }
        }
        Ok(FeedLine::Overflow { root }) => check(&root),
        Ok(FeedLine::Heartbeat(_)) => {}
        Err(error) => assert!(!error.to_string().contains('\n')),
    }
});
