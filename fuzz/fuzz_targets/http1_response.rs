//! Client-role parsing of arbitrary upstream bytes: no panic, errors are typed, and the
//! response framing follows the request it answers (HEAD, CONNECT, upgrade).
//!
//! `cargo +nightly fuzz run http1_response`. The first byte selects the request.

#![no_main]

mod http1_common;

use http1_common::{receive, request_for, Seen};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let request = request_for(selector);
    let seen = receive(&request, &[input]);
    // At most one final head per request, and nothing after an error.
    let errors = seen.iter().filter(|s| matches!(s, Seen::Error(_))).count();
    assert!(errors <= 1);
    if errors == 1 {
        assert!(matches!(seen.last(), Some(Seen::Error(_))));
    }
});
