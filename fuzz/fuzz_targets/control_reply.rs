//! Any ControlReply body: the client's reply decoder returns a response or an error.
#![no_main]

use fakenotify_ctl::message::Response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = Response::from_bytes(data) {
        assert_eq!(Response::from_bytes(&response.to_bytes()), Ok(response));
    }
});
