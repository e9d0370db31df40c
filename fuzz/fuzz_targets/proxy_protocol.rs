//! PROXY protocol header parser: no panic on any input, and the answer is consistent across
//! byte splits: the first prefix that decides gives the whole input's header (or pass-through),
//! or an error when the whole input is an error too (which error may differ, as in Envoy: a bad
//! line shorter than 16 bytes is a v1 error, a longer one "not found"); a found header never
//! claims bytes past the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nuncio::network::proxy_protocol::{parse, ParseOptions, Parsed};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let options = ParseOptions {
        allow_requests_without_proxy_protocol: flags & 1 != 0,
        v1_disallowed: flags & 2 != 0,
        v2_disallowed: flags & 4 != 0,
    };
    let whole = parse(input, &options);
    if let Ok(Some(Parsed::Header(h))) = &whole {
        assert!(h.header_len <= input.len());
    }
    // Feeding a growing prefix (as successive peeks would) decides exactly once, and then as
    // the whole input does.
    for n in 0..=input.len() {
        match parse(&input[..n], &options) {
            Ok(None) => continue,
            Err(_) => {
                assert!(
                    whole.is_err(),
                    "prefix of {n} is an error, whole is {whole:?}"
                );
                break;
            }
            decided => {
                assert_eq!(decided, whole, "prefix of {n}");
                break;
            }
        }
    }
});
