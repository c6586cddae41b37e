//! Any Control record body: a request decodes or is refused, and re-encodes identically.
#![no_main]

use fakenotify_proto::control::ControlRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ControlRequest::decode(data) {
        let mut out = vec![0u8; data.len() + 16];
        let n = request.encode(&mut out).expect("a decoded request fits");
        assert_eq!(&out[..n], data);
    }
});
