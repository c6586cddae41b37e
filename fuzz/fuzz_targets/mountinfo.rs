//! Any `/proc/self/mountinfo` text: a device's mount, or a mount by its id, is found or not,
//! never a panic.
#![no_main]

#[path = "../../daemon/src/mountinfo.rs"]
mod mountinfo;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for (major, minor) in [(0, 40), (8, 1)] {
            if let Some(entry) = mountinfo::find(text, major, minor) {
                assert!(!entry.fs_type.is_empty(), "a mount has a type");
            }
        }
        for id in [1, 22, 45] {
            if let Some((_, entry)) = mountinfo::find_id(text, id) {
                assert!(!entry.fs_type.is_empty(), "a mount has a type");
            }
        }
    }
});
