//! Differential: a message fed whole and fed in fuzzer-chosen pieces must produce the same
//! events and the same error (body bytes compared after merging). Both roles.
//!
//! `cargo +nightly fuzz run http1_split`. Input: one flags byte (bit 0: role, bit 1:
//! accept_http_10, bits 4..: request selector for the client role), four split points (one
//! byte each, as offsets into the rest, scaled), then the message.

#![no_main]

mod http1_common;

use http1_common::{receive, request_for, serve, settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let (header, input) = data.split_at(5);
    let flags = header[0];
    let mut cuts: Vec<usize> = header[1..]
        .iter()
        .map(|&b| (b as usize * input.len()) / 255)
        .collect();
    cuts.sort_unstable();
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut at = 0;
    for cut in cuts {
        pieces.push(&input[at..cut]);
        at = cut;
    }
    pieces.push(&input[at..]);
    // Also a byte-at-a-time run for short inputs.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();

    if flags & 1 == 0 {
        let s = settings(flags & 2 != 0);
        let whole = serve(s.clone(), &[input], |_| {});
        assert_eq!(
            whole,
            serve(s.clone(), &pieces, |_| {}),
            "split at {pieces:?}"
        );
        if input.len() <= 512 {
            assert_eq!(whole, serve(s, &bytes, |_| {}), "byte at a time");
        }
    } else {
        let request = request_for(flags >> 4);
        let whole = receive(&request, &[input]);
        assert_eq!(whole, receive(&request, &pieces), "split at {pieces:?}");
        if input.len() <= 512 {
            assert_eq!(whole, receive(&request, &bytes), "byte at a time");
        }
    }
});
