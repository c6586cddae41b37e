//! Any bytes on the daemon's socket: a record decodes or is refused, never a panic; what
//! decodes encodes back to the same bytes.
#![no_main]

use fakenotify_proto::record::{Record, MAX_RECORD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let mut out = vec![0u8; MAX_RECORD_LEN];
        let n = record.encode(&mut out).expect("a decoded record fits the largest buffer");
        assert_eq!(&out[..n], data);
    }
});
