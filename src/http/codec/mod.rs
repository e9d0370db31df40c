//! The HTTP/1.1 codec: sans-IO, one type per role (Envoy's `Http1::ConnectionImpl`).
//!
//! - `ServerCodec` (downstream, Envoy's `ServerConnectionImpl`): decodes requests, encodes
//!   responses. Driven by the HTTP connection manager.
//! - `ClientCodec` (upstream, Envoy's `ClientConnectionImpl`): encodes requests, decodes
//!   responses. Driven by the router's `CodecClient`.
//!
//! Bytes in, events out: `decode(&mut BytesMut)` consumes what it can from the caller's read
//! buffer and returns one event, or `Ok(None)` when it needs more bytes (hyper's convention).
//! No socket, no clock: timeouts and flow control belong to the callers. Feeding a message one
//! byte at a time yields exactly the events of feeding it at once (tested below and fuzzed by
//! `fuzz/fuzz_targets/http1_split.rs`).
//!
//! Files: `head` (the decoded heads), `parse` (httparse + Envoy's validation rules),
//! `parse_fast` (the one-pass fast path for heads in the simple form), `decode`
//! (body framing: Content-Length, chunked, close-delimited), `encode` (serialization), `error`
//! (`CodecError`: status + Envoy's response-code-details), `server` and `client` (the two state
//! machines). The header map shared with the rest of the proxy is `http::HeaderMap`.

mod client;
mod decode;
mod encode;
mod error;
mod head;
mod parse;
mod parse_fast;
mod server;
#[cfg(test)]
mod tests;

pub use client::ClientCodec;
pub use error::CodecError;
pub use head::{reason_phrase, BodyLength, Method, RequestHead, ResponseHead, Scheme, Version};
pub use server::ServerCodec;

use super::header_map::HeaderMap;
use bytes::BytesMut;

/// What the server codec decoded (Envoy's `RequestDecoder` callbacks).
#[derive(Debug)]
pub enum RequestEvent {
    /// A request head (`decodeHeaders`); `head.body.is_empty()` is Envoy's `end_stream`.
    Headers(RequestHead),
    /// Body bytes, framing removed (`decodeData`), split off the worker's read buffer
    /// (`decode`'s module docs): consume them and drop them within the event, do not keep them.
    Data(BytesMut),
    /// The trailer section of a chunked body (`decodeTrailers`), when it has fields.
    Trailers(HeaderMap),
    /// The request is complete (`onMessageComplete`); always the last event of a request.
    MessageComplete,
}

/// What the client codec decoded (Envoy's `ResponseDecoder` callbacks).
#[derive(Debug)]
pub enum ResponseEvent {
    /// A 1xx head other than an accepted 101 (`decode1xxHeaders`); the final head follows.
    Informational(ResponseHead),
    /// The final response head (`decodeHeaders`).
    Headers(ResponseHead),
    /// Body bytes, framing removed (split off the worker's read buffer, as for requests).
    Data(BytesMut),
    /// The trailer section of a chunked body.
    Trailers(HeaderMap),
    /// The response is complete; always the last event of a response.
    MessageComplete,
}

/// Codec limits and HTTP/1 options (Envoy's `Http1Settings` plus the header limits of
/// `HttpConnectionManager` / `common_http_protocol_options`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http1Settings {
    /// `max_request_headers_kb`: limit on the raw bytes of a head (start line, fields, blank
    /// line), as Envoy 1.40 counts them. Default 60.
    pub max_request_headers_kb: u32,
    /// Limit on the raw bytes of a response head from upstream, in KiB. Envoy 1.40 accepts
    /// response heads up to 80 KiB by default (observed: 81920 bytes pass, one more is a 502
    /// `upstream_reset_before_response_started{protocol_error}`).
    pub max_response_headers_kb: u32,
    /// `common_http_protocol_options.max_headers_count`: limit on the number of fields
    /// (`host` included). Default 100.
    pub max_headers_count: u32,
    /// `http_protocol_options.accept_http_10`: serve HTTP/1.0 instead of answering 426.
    pub accept_http_10: bool,
    /// `http_protocol_options.default_host_for_http_10`: authority for HTTP/1.0 requests
    /// without `host`.
    pub default_host_for_http_10: Option<String>,
    /// `http_protocol_options.enable_trailers`: encode trailers. Off by default, as in Envoy,
    /// whose HTTP/1 encoder then ends a chunked body with an empty trailer section (received
    /// trailers are still decoded and reported).
    pub enable_trailers: bool,
}

impl Default for Http1Settings {
    fn default() -> Http1Settings {
        Http1Settings {
            max_request_headers_kb: 60,
            max_response_headers_kb: 80,
            max_headers_count: 100,
            accept_http_10: false,
            default_host_for_http_10: None,
            enable_trailers: false,
        }
    }
}

impl Http1Settings {
    /// The request head size limit in bytes.
    pub fn max_head_bytes(&self) -> usize {
        self.max_request_headers_kb as usize * 1024
    }

    /// The response head size limit in bytes.
    pub fn max_response_head_bytes(&self) -> usize {
        self.max_response_headers_kb as usize * 1024
    }
}
