//! `CodecError`: why the HTTP/1 codec refused a message, and what to answer.
//!
//! Returned by `ServerCodec::decode` (a bad request from downstream) and `ClientCodec::decode`
//! (a bad response from upstream). Each variant carries the status the HTTP connection manager
//! answers (server role) and Envoy's response-code-details string, as observed from Envoy 1.40's
//! access log (`%RESPONSE_CODE_DETAILS%`), so access logs read the same under both proxies.
//! After any error the codec is closed: the connection must be closed once the reply (if any)
//! is written, because the framing of whatever follows is in doubt.

use std::fmt;

/// A protocol error found while decoding an HTTP/1 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// Malformed request line, status line, header line or chunk framing that does not fit a
    /// more specific variant (httparse rejected it, or our body framing did).
    Malformed(&'static str),
    /// A control character (NUL, CR, DEL, ...) in the target, a header name or a header value.
    InvalidCharacters,
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1: a smuggling signature).
    ContentLengthAndChunked,
    /// `Transfer-Encoding` other than a single final `chunked` (Envoy answers 501).
    InvalidTransferEncoding,
    /// A `Content-Length` that is not a plain decimal number, or that is repeated.
    InvalidContentLength,
    /// A chunk-size line that is not hex, overflows 64 bits, or misses its CRLF.
    InvalidChunk,
    /// An HTTP/1.1 request without `Host`.
    MissingHost,
    /// More than one `Host` field (RFC 9112 §3.2 says 400; Envoy 1.40 joins them: we differ).
    MultipleHost,
    /// A `Host` value (or absolute-form authority) with characters an authority cannot hold.
    InvalidAuthority,
    /// A request target that is neither origin-, absolute-, authority- (CONNECT) nor
    /// asterisk-form.
    InvalidUrl,
    /// The head exceeded `max_request_headers_kb` (raw bytes, request line included).
    HeadersTooLarge,
    /// More header fields than `max_headers_count`.
    TooManyHeaders,
    /// A protocol version other than HTTP/1.1 (HTTP/1.0 when `accept_http_10` is off; Envoy also
    /// answers 426 to any other well-formed `HTTP/x.y`).
    UnsupportedVersion,
    /// The peer closed the connection in the middle of a message.
    PrematureClose,
    /// An upstream `101 Switching Protocols` to a request that did not ask to upgrade.
    UnexpectedUpgrade,
}

impl CodecError {
    /// The status of the local reply the connection manager sends downstream for a request
    /// the server codec rejected. For errors of the client (upstream) role the router answers
    /// instead (Envoy: 502 for a protocol error, 503 for a reset before headers).
    pub fn status(&self) -> u16 {
        match self {
            CodecError::InvalidTransferEncoding => 501,
            CodecError::HeadersTooLarge | CodecError::TooManyHeaders => 431,
            CodecError::UnsupportedVersion => 426,
            CodecError::PrematureClose => 503,
            CodecError::UnexpectedUpgrade => 502,
            _ => 400,
        }
    }

    /// Envoy's response-code-details string for this error.
    pub fn details(&self) -> &'static str {
        match self {
            CodecError::Malformed(_)
            | CodecError::InvalidContentLength
            | CodecError::InvalidChunk
            | CodecError::InvalidUrl
            | CodecError::MultipleHost => "http1.codec_error",
            CodecError::InvalidCharacters => "http1.invalid_characters",
            CodecError::ContentLengthAndChunked => "http1.content_length_and_chunked_not_allowed",
            CodecError::InvalidTransferEncoding => "http1.invalid_transfer_encoding",
            CodecError::MissingHost => "missing_host_header",
            CodecError::InvalidAuthority => "http.invalid_authority",
            CodecError::HeadersTooLarge => "http1.headers_too_large",
            CodecError::TooManyHeaders => "http1.too_many_headers",
            CodecError::UnsupportedVersion => "low_version",
            CodecError::PrematureClose => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            CodecError::UnexpectedUpgrade => {
                "upstream_reset_before_response_started{protocol_error}"
            }
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            CodecError::Malformed(what) => what,
            CodecError::InvalidCharacters => "invalid characters in the request target or a header",
            CodecError::ContentLengthAndChunked => {
                "both content-length and transfer-encoding are present"
            }
            CodecError::InvalidTransferEncoding => "unsupported transfer-encoding",
            CodecError::InvalidContentLength => "invalid or repeated content-length",
            CodecError::InvalidChunk => "invalid chunk framing",
            CodecError::MissingHost => "HTTP/1.1 request without a host header",
            CodecError::MultipleHost => "more than one host header",
            CodecError::InvalidAuthority => "invalid host or authority",
            CodecError::InvalidUrl => "invalid request target",
            CodecError::HeadersTooLarge => "headers exceed the size limit",
            CodecError::TooManyHeaders => "too many headers",
            CodecError::UnsupportedVersion => "unsupported HTTP version",
            CodecError::PrematureClose => "connection closed in the middle of a message",
            CodecError::UnexpectedUpgrade => "101 switching protocols to a non-upgrade request",
        };
        write!(
            f,
            "http/1.1 protocol error: {what} ({} {})",
            self.status(),
            self.details()
        )
    }
}

impl std::error::Error for CodecError {}
