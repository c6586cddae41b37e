//! Any state record passed back by the fd store: it decodes or is refused with the line named,
//! and what decodes encodes back to a record that decodes the same.
#![no_main]

#[allow(dead_code)]
#[path = "../../daemon/src/saved_state.rs"]
mod saved_state;

use libfuzzer_sys::fuzz_target;
use saved_state::SavedState;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(state) = SavedState::decode(text) {
            assert_eq!(SavedState::decode(&state.encode()), Ok(state));
        }
    }
});
