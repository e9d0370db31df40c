//! Server-role parsing of arbitrary bytes: no panic, and every request head the codec accepts
//! re-encodes (as the router would forward it) into bytes the codec parses back to the same
//! head: what we forward can never be read differently from what we judged.
//!
//! `cargo +nightly fuzz run http1_request`. The first byte selects `accept_http_10`.

#![no_main]

mod http1_common;

use bytes::BytesMut;
use http1_common::{request_summary, serve, settings};
use libfuzzer_sys::fuzz_target;
use nuncio::http::codec::{ClientCodec, Http1Settings, RequestEvent, ServerCodec};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let accept_http_10 = flags & 1 == 1;
    serve(settings(accept_http_10), &[input], |head| {
        // Forward as the connection manager would: framing and hop-by-hop headers removed,
        // headers only.
        let mut forwarded = head.clone();
        for name in [
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
        ] {
            forwarded.headers.remove(name);
        }
        forwarded.upgrade = false;
        let mut wire = BytesMut::new();
        ClientCodec::new(settings(false)).encode_headers(&forwarded, true, &mut wire);
        // The forwarded head may be a little larger than the received one (framing added,
        // `host` spelled out), so the judge has room above the limits the proxy enforced.
        let mut again = ServerCodec::new(Arc::new(Http1Settings {
            max_headers_count: 200,
            max_request_headers_kb: 128,
            ..Http1Settings::default()
        }));
        match again.decode(&mut wire) {
            Ok(Some(RequestEvent::Headers(mut parsed))) => {
                // The encoder adds its own framing (`content-length: 0` on a bodiless POST).
                parsed.headers.remove("content-length");
                let mut expected = forwarded.clone();
                expected.version = parsed.version;
                expected.scheme = None;
                expected.keep_alive = parsed.keep_alive;
                expected.expect_continue = parsed.expect_continue;
                expected.body = parsed.body;
                assert_eq!(request_summary(&parsed), request_summary(&expected));
                assert!(wire.is_empty(), "forwarded head left bytes behind");
            }
            other => panic!(
                "forwarded head did not parse back: {other:?}\n{}",
                request_summary(&forwarded)
            ),
        }
    });
});
